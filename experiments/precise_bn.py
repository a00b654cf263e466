"""What re-estimating batch-norm statistics on clean training faces (`fer_core.batchnorm.refresh`) does to
trained networks: each network as saved, then refreshed on the training split's faces alone, on the faces and
their mirrors (what `fer train` does), and on a seeded sample of `--sample` faces and mirrors (the default
cap, `train.bn_refresh_faces`); with `--by-source`, also on each source's training faces alone (statistics of
the in-the-wild domain only, "AdaBN", and of FER2013 only). Scored flip-averaged on the validation split and the held-out sets; prints one
JSON line a variant. `--save-dir DIR` writes each network refreshed as `fer train` would (DIR/NAME.keras), for
`experiments/ensemble_screen.py`.

Usage: python experiments/precise_bn.py --dataset DATASET_DIR [--sample 16384] [--by-source] [--save-dir DIR]
       NAME=FILE.keras ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import batchnorm, evaluate, models  # noqa: E402
from fer_core.classify import Classifier, keras_to_tflite  # noqa: E402
from fer_core.data import dataset  # noqa: E402


def score(net, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    classifier = Classifier(keras_to_tflite(models.with_flip_average(net)))
    out = {}
    for name, (x, y) in sets.items():
        m = evaluate.metrics(y, classifier.predict(x))
        out[name] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
    return out


def network(path: str):
    """The bare network of a saved model, without training state (a fresh copy each call)."""
    return models.for_serving(models.ensemble_members(models.load(path))[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder (its training split refreshes)")
    ap.add_argument("--sample", type=int, default=16384, help="faces drawn (seeded) for the sampled variant")
    ap.add_argument("--save-dir", help="write each network refreshed on the sample (faces and mirrors) here")
    ap.add_argument("--by-source", action="store_true", help="also refresh on each source's faces alone")
    ap.add_argument("networks", nargs="+", help="NAME=FILE.keras")
    args = ap.parse_args()
    data = dataset.load(args.dataset)
    sets = {"val": data.splits["val"], **data.eval_sets()}
    train = data.splits["train"][0]
    sample = train[np.sort(np.random.default_rng(0).permutation(len(train))[:args.sample])]
    variants = {"faces": (train, False), "faces+mirrors": (train, True), f"sample{len(sample)}+mirrors": (sample, True)}
    if args.by_source:
        sources = data.sources["train"]
        variants |= {f"{source} only+mirrors": (train[sources == source], True) for source in np.unique(sources)}
    for item in args.networks:
        name, path = item.split("=", 1)
        print(json.dumps({"network": name, "bn": "as saved", **score(network(path), sets)}), flush=True)
        for variant, (faces, mirrors) in variants.items():
            net = network(path)
            batchnorm.refresh(net, faces, mirrors=mirrors)
            print(json.dumps({"network": name, "bn": variant, **score(net, sets)}), flush=True)
            if args.save_dir and variant.startswith("sample"):
                Path(args.save_dir).mkdir(parents=True, exist_ok=True)
                net.save(Path(args.save_dir) / f"{name}.keras")


if __name__ == "__main__":
    main()
