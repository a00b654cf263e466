"""Which averages of trained networks are worth a pipeline run: every network alone and every combination of
two or more, each flip-averaged, scored on a dataset version's held-out sets (the test split, FER2013's
PublicTest, the test split's ExpW faces).

A cheap screen before `fer pipeline run --set train.model=ensemble --set 'train.members=[...]'`, which does
the same averaging (`fer_core.models.ensemble`), calibrates, runs the end-to-end figure and asks the gate.
Temperature changes no answer, so accuracy and macro-F1 here are the pipeline's. Prints one JSON line a model.

Usage: python experiments/ensemble_screen.py --dataset DATASET_DIR NAME=FILE.keras NAME=FILE.keras [...]
"""

from __future__ import annotations

import argparse
import itertools
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
    ap.add_argument("--dataset", required=True, help="a dataset version folder (its held-out sets are scored)")
    ap.add_argument("networks", nargs="+", help="NAME=FILE.keras; an ensemble file counts as its first network")
    args = ap.parse_args()
    bad = [item for item in args.networks if "=" not in item]
    if bad:
        ap.error(f"networks are NAME=FILE.keras, got {', '.join(bad)}")
    named = dict(item.split("=", 1) for item in args.networks)
    sets = dataset.load(args.dataset).eval_sets()
    probs: dict[str, dict[str, np.ndarray]] = {}
    for name, path in named.items():
        network = models.ensemble_members(models.load(path))[0]
        classifier = Classifier(keras_to_tflite(models.with_flip_average(network)))
        probs[name] = {set_name: classifier.predict(x) for set_name, (x, _) in sets.items()}
    for size in range(1, len(named) + 1):
        for combo in itertools.combinations(named, size):
            scores = {}
            for set_name, (_, y) in sets.items():
                m = evaluate.metrics(y, np.mean([probs[name][set_name] for name in combo], axis=0))
                scores[set_name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
            print(json.dumps({"models": list(combo), **scores}), flush=True)


if __name__ == "__main__":
    main()
