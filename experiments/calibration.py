"""Temperature scaling and shift averaging, measured on a model's uncalibrated probabilities.

For each way of fitting the temperature on the validation split (all faces alike, each source weighing the
same: `train.calibrate`'s way, FER2013's faces only, ExpW's only), the calibration error (ECE) and log
loss on every held-out set; then the same model averaged over its face shifted by 2 pixels in four
directions (test-time shift averaging, 5x the compute) against the plain one. Every figure in
docs/EXPERIMENTS.md's calibration section comes from this script.

Usage: python experiments/calibration.py --model MODEL.keras --dataset DATASET_PATH [--shifts 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_core import calibrate, evaluate, models  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402
from fer_core.data import dataset  # noqa: E402


def shifted(faces: np.ndarray, dy: int, dx: int, pad: int) -> np.ndarray:
    """Faces moved by (dy, dx) pixels, the border repeated into the gap."""
    padded = np.pad(faces, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    return padded[:, pad + dy:pad + dy + faces.shape[1], pad + dx:pad + dx + faces.shape[2]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a saved model; its temperature, if any, is taken off first")
    ap.add_argument("--dataset", required=True, help="a dataset version's folder (its validation and test splits)")
    ap.add_argument("--shifts", type=int, default=2, help="pixels for shift averaging (0: skip it)")
    args = ap.parse_args()
    model = models.without_temperature(models.load(args.model))
    clf = Classifier.from_keras(model)
    ds = dataset.load(args.dataset)
    sets = {"val": ds.splits["val"], **ds.eval_sets()}
    probs = {name: clf.predict(x) for name, (x, _) in sets.items()}
    y_val, src = sets["val"][1], ds.sources["val"]
    every, weighted = np.ones(len(y_val), bool), calibrate.group_weights(src)
    fits = {  # name: (faces the temperature is fitted on, their weights); None: no temperature
        "uncalibrated": None, "all validation faces alike": (every, None),
        "each source weighing the same (train.calibrate)": (every, weighted),
        "FER2013's validation faces only": (src == "fer2013", None), "ExpW's validation faces only": (src == "expw", None)}
    for how, fit in fits.items():
        t = 1.0 if fit is None else calibrate.fit_temperature(probs["val"][fit[0]], y_val[fit[0]], fit[1])
        row = {"experiment": "temperature", "fit": how, "temperature": round(t, 4)}
        for name, (_, y) in sets.items():
            p = calibrate.tempered(probs[name], t)
            row[name] = {"ece": round(evaluate.expected_calibration_error(y, p), 4),
                         "nll": round(calibrate.nll(p, y), 4), "mean_confidence": round(float(p.max(1).mean()), 4),
                         "accuracy": round(float((p.argmax(1) == y).mean()), 4)}
        print(json.dumps(row), flush=True)
    if args.shifts:
        s = args.shifts
        for name, (x, y) in sets.items():
            views = [(0, 0), (-s, 0), (s, 0), (0, -s), (0, s)]
            averaged = np.mean([clf.predict(shifted(x, dy, dx, s)) for dy, dx in views], axis=0)
            plain, shift = evaluate.metrics(y, probs[name]), evaluate.metrics(y, averaged)
            print(json.dumps({"experiment": "shift_average", "set": name, "pixels": s, "n": plain["n"],
                              "plain": {k: plain[k] for k in ("accuracy", "macro_f1")},
                              "shift_averaged": {k: shift[k] for k in ("accuracy", "macro_f1")}}), flush=True)


if __name__ == "__main__":
    main()
