"""Which averages of trained networks are worth a pipeline run: every network alone and every combination of
two or more, each flip-averaged, scored on a dataset version's held-out sets (the test split, FER2013's
PublicTest, the test split's ExpW faces).

A cheap screen before `fer pipeline run --set train.model=ensemble --set 'train.members=[...]'`, which does
the same averaging (`fer_core.models.ensemble`), calibrates, runs the end-to-end figure and asks the gate.
Temperature changes no answer, so accuracy and macro-F1 here are the pipeline's. Prints one JSON line a model.
With `--against NAME+NAME` (the champion's networks), each line also carries the gate's rules against that
average on the gate's benchmark sets (`gate.benchmarks`, default settings; `fer_core.gate.decide` itself):
`gate` says whether it `passes` and each of its `rules`, PASS or FAIL. Only the latency budget is left to the
pipeline, which measures it.

Usage: python experiments/ensemble_screen.py --dataset DATASET_DIR [--against A+B] NAME=FILE.keras NAME=FILE.keras [...]
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

from fer_core import evaluate, gate, models  # noqa: E402
from fer_core.classify import Classifier, keras_to_tflite  # noqa: E402
from fer_core.config import load_settings  # noqa: E402
from fer_core.data import dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder (its held-out sets are scored)")
    ap.add_argument("--against", default="", help="NAME+NAME: the average the gate would compare with (the champion)")
    ap.add_argument("networks", nargs="+", help="NAME=FILE.keras; an ensemble file counts as its first network")
    args = ap.parse_args()
    bad = [item for item in args.networks if "=" not in item]
    if bad:
        ap.error(f"networks are NAME=FILE.keras, got {', '.join(bad)}")
    named = dict(item.split("=", 1) for item in args.networks)
    reference = [name for name in args.against.split("+") if name]
    if set(reference) - set(named):
        ap.error(f"--against names networks not given: {', '.join(sorted(set(reference) - set(named)))}")
    sets = dataset.load(args.dataset).eval_sets()
    probs: dict[str, dict[str, np.ndarray]] = {}
    for name, path in named.items():
        network = models.ensemble_members(models.load(path))[0]
        classifier = Classifier(keras_to_tflite(models.with_flip_average(network)))
        probs[name] = {set_name: classifier.predict(x) for set_name, (x, _) in sets.items()}
    average = lambda combo, set_name: np.mean([probs[name][set_name] for name in combo], axis=0)  # noqa: E731
    cfg = load_settings(None, [], environ={}).gate
    benchmarks = [name for name in cfg.benchmarks if name in sets]
    for size in range(1, len(named) + 1):
        for combo in itertools.combinations(named, size):
            scores = {}
            for set_name, (_, y) in sets.items():
                m = evaluate.metrics(y, average(combo, set_name))
                scores[set_name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
            line = {"models": list(combo), **scores}
            if reference and set(combo) != set(reference):
                line["gate"] = gate_against(combo, reference, benchmarks, sets, average, cfg)
            print(json.dumps(line), flush=True)


def gate_against(combo, reference, benchmarks, sets, average, cfg) -> dict:
    """The gate's rules but latency for `combo` against `reference`, in fer_core.gate's words."""
    candidate, champion, paired = {}, {}, {}
    for set_name in benchmarks:
        y = sets[set_name][1]
        cand, ref = average(combo, set_name), average(reference, set_name)
        candidate[set_name], champion[set_name] = evaluate.metrics(y, cand), evaluate.metrics(y, ref)
        paired[set_name] = gate.mcnemar(y, cand.argmax(1), ref.argmax(1))
    no_latency = cfg.model_copy(update={"max_latency_ms": 0.0})
    decision = gate.decide(candidate, champion, 0.0, no_latency, paired=paired)
    return {"passes": decision.promote, "rules": decision.reasons}


if __name__ == "__main__":
    main()
