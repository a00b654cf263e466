"""Look at the faces a model misreads: a montage per true class, each face captioned with the model's answer.

For one held-out set of a dataset version (`expw_test` by default), writes `fer_core.plots.misread`'s montages
(`fer evaluate --misread` makes the same for any labelled set) into `--out` and prints the
set's confusion matrix, per-class recall, top-2 accuracy and the model's median confidence on the faces it reads
right and wrong as JSON; for `expw_test`, also its accuracy by the side of the labelled box in the source image.

Usage: python experiments/misread_faces.py --dataset DATASET_DIR --out DIR [--model FILE.keras] [--set expw_test]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import evaluate, plots  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402
from fer_core.data import dataset, expw  # noqa: E402
from fer_core.labels import EMOTIONS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder")
    ap.add_argument("--out", required=True, help="folder for the montages")
    ap.add_argument("--model", default=str(ROOT / "fer_core" / "assets" / "baseline.keras"))
    ap.add_argument("--set", default="expw_test", help="one of the dataset's held-out sets")
    ap.add_argument("--limit", type=int, default=40)
    args = ap.parse_args()
    sets = dataset.load(args.dataset).eval_sets()
    if args.set not in sets:
        ap.error(f"--set must be one of {', '.join(sets)}")
    x, y = sets[args.set]
    probs = Classifier.from_file(args.model).predict(x)
    answer = probs.argmax(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (png, _) in plots.misread(x, y, probs, args.limit).items():
        (out / f"misread_{name}.png").write_bytes(png)
    m = evaluate.metrics(y, probs)
    right, confidence = answer == y, probs.max(1)
    print(json.dumps({"set": args.set, "n": m["n"], "accuracy": m["accuracy"], "labels": list(EMOTIONS),
                      "confusion": m["confusion"],
                      "recall": {k: round(v["recall"], 4) for k, v in m["per_class"].items()},
                      "top2_accuracy": round(float((np.argsort(-probs, 1)[:, :2] == y[:, None]).any(1).mean()), 4),
                      "median_confidence": {"right": round(float(np.median(confidence[right])), 3),
                                            "wrong": round(float(np.median(confidence[~right])), 3)}}))
    if args.set == "expw_test":
        side = box_sides(args.dataset)
        edges = [0, 32, 48, 64, 10_000]
        print(json.dumps({"accuracy by the labelled box's side (pixels)": {
            f"{lo}-{hi}" if hi < 10_000 else f"{lo}+": {"faces": int(s.sum()), "accuracy": round(float(right[s].mean()), 4)}
            for lo, hi in zip(edges, edges[1:], strict=False) if (s := (side >= lo) & (side < hi)).any()}}))


def box_sides(dataset_dir: str) -> np.ndarray:
    """The shorter side of each test-split ExpW face's labelled box in its source image, in the set's order."""
    stats = json.loads((Path(dataset_dir) / "stats.json").read_text())
    boxes, _ = expw.read_boxes(stats["sources"]["expw"])
    by_key = {(b.image, b.face_id): b for b in boxes}
    chosen = [by_key[key] for key in dataset.expw_faces(dataset_dir, "test")]
    return np.array([min(b.right - b.left, b.bottom - b.top) for b in chosen])


if __name__ == "__main__":
    main()
