"""How sharp each held-out set's faces are, and how a model reads faces made softer.

ExpW's faces come from downscaled web photos; FER2013's are sharp 48-pixel crops. Sharpness here is the
variance of each face's Laplacian (its median per set). The model is then scored on FER2013 PublicTest with
every face shrunk to a smaller side (OpenCV's area average, as `fer_core.crop` shrinks) and enlarged back
(bilinear): how much of its accuracy a soft face costs, and how soft ExpW's faces are in those terms. ExpW's
test faces are also scored by quartile of their own sharpness. One JSON line each. (`fer_core.crop.as_seen_at`
with a bilinear enlargement; the pipeline's `<set>_at_<N>px` sets keep the crop's own, what the worker makes of a
small face, a little blockier, so their figures differ from these.)

Usage: python experiments/sharpness.py --dataset DATASET_DIR [--model FILE.keras] [--sizes 40,32,24,16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import crop, evaluate  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402
from fer_core.data import dataset  # noqa: E402
from fer_core.data.table import FACE  # noqa: E402


def sharpness(faces: np.ndarray) -> np.ndarray:
    """Variance of each face's Laplacian: high for sharp edges, low for soft ones."""
    return np.array([cv2.Laplacian(f.astype(np.float32), cv2.CV_32F).var() for f in faces])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder (its held-out sets)")
    ap.add_argument("--model", default=str(ROOT / "fer_core/assets/baseline.keras"))
    ap.add_argument("--sizes", default="40,32,24,16", help="sides to shrink PublicTest's faces to")
    args = ap.parse_args()
    held = dataset.load(args.dataset).eval_sets()
    classifier = Classifier.from_file(args.model)
    for name, (x, _) in held.items():
        print(json.dumps({"set": name, "n": len(x), "sharpness_median": round(float(np.median(sharpness(x))), 1)}))
    x, y = held["fer2013_publictest"]
    for side in [FACE] + [int(s) for s in args.sizes.split(",") if s]:
        faces = x if side == FACE else crop.as_seen_at(x, side, enlarge=cv2.INTER_LINEAR)
        m = evaluate.metrics(y, classifier.predict(faces))
        print(json.dumps({"set": "fer2013_publictest", "model": args.model, "side": side, "accuracy": m["accuracy"],
                          "macro_f1": m["macro_f1"], "sharpness_median": round(float(np.median(sharpness(faces))), 1)}),
              flush=True)
    if "expw_test" in held:
        x, y = held["expw_test"]
        sharp, right = sharpness(x), classifier.predict(x).argmax(axis=1) == y
        edges = np.quantile(sharp, [0, 0.25, 0.5, 0.75, 1.0])
        for q in range(4):
            inside = (sharp >= edges[q]) & ((sharp < edges[q + 1]) if q < 3 else (sharp <= edges[q + 1]))
            print(json.dumps({"set": "expw_test", "model": args.model, "sharpness_quartile": q + 1,
                              "sharpness": [round(float(edges[q]), 1), round(float(edges[q + 1]), 1)],
                              "n": int(inside.sum()), "accuracy": round(float(right[inside].mean()), 4)}))


if __name__ == "__main__":
    main()
