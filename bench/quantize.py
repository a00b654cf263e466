"""Post-training quantization of the classifier's TFLite form: accuracy kept against speed gained.

For each form (float: what ships today; float16: half-size weights; dynamic: int8 weights, float activations; int8: weights and
activations, calibrated on FER2013 Training faces, never on a test set), one JSON line: accuracy and
macro-F1 on FER2013 PublicTest and on the dataset version's ExpW test faces, agreement with the float
form, faces/s batched and ms for one face (fer_core.evaluate.speed), and the model's size.

Usage: python bench/quantize.py --model MODEL.keras --dataset DATASET_DIR [--forms float float16 dynamic int8]
       [--fer2013 ../shared/data/fer2013/fer2013.csv.gz] [--calibration 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import evaluate, models  # noqa: E402
from fer_core.classify import Classifier, keras_to_tflite  # noqa: E402
from fer_core.data import dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help=".keras file")
    ap.add_argument("--dataset", required=True, help="a dataset version folder (its ExpW test faces are scored)")
    ap.add_argument("--fer2013", default=str(ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"))
    ap.add_argument("--forms", nargs="+", default=["float", "float16", "dynamic", "int8"])
    ap.add_argument("--calibration", type=int, default=1000, help="FER2013 Training faces for int8 ranges")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model = models.load(args.model)
    public_x, public_y, _ = evaluate.load_eval_data(args.fer2013, "fer2013", "PublicTest")
    train_x, _, _ = evaluate.load_eval_data(args.fer2013, "fer2013", "Training")
    pick = np.random.default_rng(args.seed).choice(len(train_x), args.calibration, replace=False)
    calibration = train_x[pick]
    sets = {"fer2013_publictest": (public_x, public_y)}
    expw = dataset.load(args.dataset).eval_sets().get("expw_test")
    if expw is not None:
        sets["expw_test"] = expw
    reference: dict[str, np.ndarray] = {}
    for form in args.forms:
        content = keras_to_tflite(model, quantize=form, representative=calibration)
        clf = Classifier(content)
        row = {"form": form, "bytes": len(content), "speed": evaluate.speed(clf)}
        for name, (x, y) in sets.items():
            probs = clf.predict(x)
            m = evaluate.metrics(y, probs)
            row[name] = {"n": m["n"], "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
            if form == args.forms[0]:
                reference[name] = probs.argmax(1)
            else:
                row[name]["agrees_with_" + args.forms[0]] = round(float((probs.argmax(1) == reference[name]).mean()), 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
