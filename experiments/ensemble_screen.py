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

`--refresh` first re-estimates each network's batch-norm statistics as the pipeline does before it averages
(`fer_core.train.finish`: the same seeded sample of clean training faces and their mirrors), for networks
trained elsewhere (tools/accelerator_train.py) or before the refresh existed; a refreshed network is unchanged
by it. `val` (the validation split) is scored beside the held-out sets, and so are its faces of each source alone
(`val_fer2013`, `val_expw`), so a pick can be made on validation alone and the held-out sets and the gate left to
judge the pick; `--sizes 1,2` limits the combinations (all by default).

Usage: python experiments/ensemble_screen.py --dataset DATASET_DIR [--against A+B] [--refresh] [--sizes 1,2]
       NAME=FILE.keras NAME=FILE.keras [...]
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
from fer_core.train import refresh_statistics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder (its held-out sets are scored)")
    ap.add_argument("--against", default="", help="NAME+NAME: the average the gate would compare with (the champion)")
    ap.add_argument("--refresh", action="store_true", help="re-estimate batch-norm statistics as the pipeline does")
    ap.add_argument("--sizes", default="", help="combination sizes to score, e.g. 1,2 (default: all)")
    ap.add_argument("networks", nargs="+", help="NAME=FILE.keras; an ensemble file counts as its first network")
    args = ap.parse_args()
    bad = [item for item in args.networks if "=" not in item]
    if bad:
        ap.error(f"networks are NAME=FILE.keras, got {', '.join(bad)}")
    named = dict(item.split("=", 1) for item in args.networks)
    reference = [name for name in args.against.split("+") if name]
    if set(reference) - set(named):
        ap.error(f"--against names networks not given: {', '.join(sorted(set(reference) - set(named)))}")
    data = dataset.load(args.dataset)
    sets = {"val": data.splits["val"], **validation_by_source(data), **data.eval_sets()}
    settings = load_settings(None, [], environ={})
    probs: dict[str, dict[str, np.ndarray]] = {}
    for name, path in named.items():
        network = models.for_serving(models.ensemble_members(models.load(path))[0])
        if args.refresh:
            refresh_statistics(network, data.splits["train"][0], settings.train)
        classifier = Classifier(keras_to_tflite(models.with_flip_average(network)))
        probs[name] = {set_name: classifier.predict(x) for set_name, (x, _) in sets.items()}
    average = lambda combo, set_name: np.mean([probs[name][set_name] for name in combo], axis=0)  # noqa: E731
    cfg = settings.gate
    benchmarks = [name for name in cfg.benchmarks if name in sets]
    sizes = [int(k) for k in args.sizes.split(",") if k] or range(1, len(named) + 1)
    for size in sizes:
        for combo in itertools.combinations(named, size):
            scores = {}
            for set_name, (_, y) in sets.items():
                m = evaluate.metrics(y, average(combo, set_name))
                scores[set_name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
            line = {"models": list(combo), **scores}
            if reference and set(combo) != set(reference):
                line["gate"] = gate_against(combo, reference, benchmarks, sets, average, cfg)
            print(json.dumps(line), flush=True)


def validation_by_source(data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The validation split's faces of each source alone (`val_fer2013`, `val_expw`), so that a pick can weigh
    the in-the-wild faces without looking at a held-out set."""
    x, y = data.splits["val"]
    src = data.sources.get("val")
    if src is None or len(src) != len(y):
        return {}
    return {f"val_{name}": (x[src == name], y[src == name]) for name in sorted(set(src))}


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
