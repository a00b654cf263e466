"""Horizontal-flip averaging at test time: the same network with and without it, on FER2013 PublicTest.

Prints one JSON line per form (plain, flip-averaged): accuracy, macro-F1, calibration error and TFLite speed.
A model saved with `train.flip_average` is unwrapped first, so both forms share the same weights.

Usage: python experiments/flip_average.py --model MODEL.keras [--data ../shared/data/fer2013/fer2013.csv.gz]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import evaluate, models  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"))
    ap.add_argument("--usage", default="PublicTest")
    args = ap.parse_args()
    plain = models.unwrap(models.load(args.model))
    x, y, _ = evaluate.load_eval_data(args.data, usage=args.usage)
    for name, model in (("plain", plain), ("flip_average", models.with_flip_average(plain))):
        clf = Classifier.from_keras(model)
        r = evaluate.metrics(y, clf.predict(x))
        print(json.dumps({"experiment": "flip_average", "form": name, "model": args.model, "set": args.usage,
                          "n": r["n"], "accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "ece": r["ece"],
                          **evaluate.speed(clf)}), flush=True)


if __name__ == "__main__":
    main()
