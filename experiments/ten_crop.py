"""Ten-crop averaging at test time (Khaireddin and Chen's recipe): does it add to the champion's flip averaging?

Each face is cut into five square crops of `side` pixels (the four corners and the centre), each enlarged back
to 48 (as the crop enlarges a small face), and the model's answers on them are averaged. The shipped champion
already averages each face with its mirror inside the saved model, so five crops are its ten views. Scored on a
dataset version's validation split and held-out sets, beside the model on the whole face; one JSON line a
variant. (Khaireddin and Chen train on random 40-pixel crops and test on ten of them; the networks here train on
whole faces with shifts of 10% and zoom of 10%, so a crop's enlargement is within or near what they saw.)

Usage: python experiments/ten_crop.py --dataset DATASET_DIR [--model FILE.keras] [--sides 44,40]
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

from fer_core import evaluate  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402
from fer_core.data import dataset  # noqa: E402
from fer_core.data.table import FACE  # noqa: E402


def five_crops(faces: np.ndarray, side: int) -> list[np.ndarray]:
    """The four corner crops and the centre crop of `side` pixels, each enlarged back to FACE (INTER_LINEAR)."""
    far, mid = FACE - side, (FACE - side) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]
    return [np.stack([cv2.resize(f[y:y + side, x:x + side], (FACE, FACE), interpolation=cv2.INTER_LINEAR)
                      for f in faces]) for y, x in corners]


def centre_crop(faces: np.ndarray, side: int, enlarge: int) -> np.ndarray:
    start = (FACE - side) // 2
    return np.stack([cv2.resize(f[start:start + side, start:start + side], (FACE, FACE), interpolation=enlarge)
                     for f in faces])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder")
    ap.add_argument("--model", default=str(ROOT / "fer_core" / "assets" / "baseline.keras"))
    ap.add_argument("--sides", default="44,40")
    args = ap.parse_args()
    data = dataset.load(args.dataset)
    sets = {"val": data.splits["val"], **data.eval_sets()}
    clf = Classifier.from_file(args.model)
    whole = {name: clf.predict(x) for name, (x, _) in sets.items()}
    _print("whole face (the shipped model: face and mirror)", sets, whole)
    for side in (int(s) for s in args.sides.split(",")):
        crops = {name: [clf.predict(c) for c in five_crops(x, side)] for name, (x, _) in sets.items()}
        _print(f"five {side}-pixel crops and mirrors (ten views)", sets,
               {name: np.mean(p, axis=0) for name, p in crops.items()})
        _print(f"whole face and five {side}-pixel crops, each mirrored (twelve views)", sets,
               {name: np.mean([whole[name], *p], axis=0) for name, p in crops.items()})
        # what costs: the enlargement's softening (the same pixels enlarged without it; softening alone)
        _print(f"the centre {side}-pixel crop alone, enlarged by repeating pixels (no softening)", sets,
               {name: clf.predict(centre_crop(x, side, cv2.INTER_NEAREST)) for name, (x, _) in sets.items()})
        _print(f"the whole face shrunk to {side} pixels and enlarged back (softening alone)", sets,
               {name: clf.predict(np.stack([cv2.resize(cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA),
                                                       (FACE, FACE), interpolation=cv2.INTER_LINEAR) for f in x]))
                for name, (x, _) in sets.items()})


def _print(variant: str, sets: dict, probs: dict) -> None:
    scores = {}
    for name, (_, y) in sets.items():
        m = evaluate.metrics(y, probs[name])
        scores[name] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
    print(json.dumps({"variant": variant, **scores}), flush=True)


if __name__ == "__main__":
    main()
