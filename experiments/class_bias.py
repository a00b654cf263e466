"""Per-class decision offsets: does moving the decision towards rare emotions buy macro-F1, and at what accuracy?

A model trained on FER2013's class frequencies answers "happy" and "neutral" readily and "disgust" and "fear"
rarely. Adding one offset per class to the log-probabilities (a prior correction) moves the decision without
retraining. The offsets are fitted on the validation split only (coordinate ascent on macro-F1, a grid of
offsets per class, a few sweeps), then every held-out set is scored with and without them. Prints one JSON
line per held-out set and one with the offsets.

Usage: python experiments/class_bias.py --dataset DATASET_DIR [--model FILE.keras]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import evaluate  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402
from fer_core.data import dataset  # noqa: E402
from fer_core.labels import EMOTIONS, NUM_CLASSES  # noqa: E402

GRID = np.round(np.arange(-1.0, 1.0001, 0.05), 2)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """The project's macro-F1 (fer_core.evaluate.metrics) of hard predictions."""
    return evaluate.metrics(y, np.eye(NUM_CLASSES)[pred])["macro_f1"]


def fit_offsets(y: np.ndarray, log_probs: np.ndarray, sweeps: int = 4) -> np.ndarray:
    """Offsets (one per class, the first held at 0) that maximise macro-F1 of argmax(log p + offsets) on (y, p)."""
    offsets = np.zeros(NUM_CLASSES)
    best = macro_f1(y, log_probs.argmax(axis=1))
    for _ in range(sweeps):
        moved = False
        for c in range(1, NUM_CLASSES):
            for value in GRID:
                trial = offsets.copy()
                trial[c] = value
                score = macro_f1(y, (log_probs + trial).argmax(axis=1))
                if score > best + 1e-9:
                    best, offsets, moved = score, trial, True
        if not moved:
            break
    return offsets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder (fit on its val split)")
    ap.add_argument("--model", default=str(ROOT / "fer_core/assets/baseline.keras"))
    args = ap.parse_args()
    data = dataset.load(args.dataset)
    classifier = Classifier.from_file(args.model)
    x_val, y_val = data.splits["val"]
    offsets = fit_offsets(y_val, np.log(np.clip(classifier.predict(x_val), 1e-7, 1.0)))
    print(json.dumps({"offsets": dict(zip(EMOTIONS, offsets.round(2).tolist(), strict=True))}), flush=True)
    for name, (x, y) in {"val": (x_val, y_val), **data.eval_sets()}.items():
        probs = classifier.predict(x)
        shifted = np.exp(np.log(np.clip(probs, 1e-7, 1.0)) + offsets)
        shifted /= shifted.sum(axis=1, keepdims=True)
        row = {"set": name, "n": len(y)}
        for label, p in (("plain", probs), ("offsets", shifted)):
            m = evaluate.metrics(y, p)
            row[label] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                          "min_recall": min(c["recall"] for c in m["per_class"].values())}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
