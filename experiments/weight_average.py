"""Does averaging a run's last checkpoints' weights (stochastic weight averaging, after the fact) beat its last
checkpoint, at no cost per face? An ensemble of two networks costs twice the arithmetic; an average of one
network's weights costs nothing at inference, so it is the lever a realtime model can afford.

Each checkpoint is a `checkpoint_train.keras` saved after one epoch (copy it per epoch while `fer train` runs).
Every weight is averaged, batch-norm statistics included; `--recompute-bn` then estimates the statistics afresh
on the training split's faces and their mirrors (`fer_core.batchnorm.refresh`, as `fer train` now does).
Scored flip-averaged, as `fer train` saves a network, on the validation split and the held-out sets
(`Dataset.eval_sets`). Prints one JSON line a model: the last checkpoint, then the average of the last k for
each `--last` k.

Usage: python experiments/weight_average.py --dataset DATASET_DIR [--last 5,10,20] [--recompute-bn] EPOCH_FILES...
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from precise_bn import score  # noqa: E402  (experiments/, this script's folder)

from fer_core import batchnorm, models  # noqa: E402
from fer_core.data import dataset  # noqa: E402


def epoch_of(path: str) -> int:
    found = re.findall(r"\d+", Path(path).stem)
    if not found:
        raise SystemExit(f"cannot tell the epoch of {path}: name the files e<epoch>.keras")
    return int(found[-1])


def average_weights(paths: list[str]):
    """A network with the element-wise mean of the networks' weights (the first one's architecture)."""
    nets = [models.ensemble_members(models.load(p))[0] for p in paths]
    net = nets[0]
    net.set_weights([np.mean(ws, axis=0) for ws in zip(*(n.get_weights() for n in nets), strict=True)])
    return net


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="the dataset version folder the run trained on")
    ap.add_argument("--last", default="5,10,20", help="comma-separated counts of last checkpoints to average")
    ap.add_argument("--recompute-bn", action="store_true", help="re-estimate batch-norm statistics on train")
    ap.add_argument("checkpoints", nargs="+", help="one checkpoint per epoch, named e<epoch>.keras")
    args = ap.parse_args()
    paths = sorted(args.checkpoints, key=epoch_of)
    data = dataset.load(args.dataset)
    sets = {"val": data.splits["val"], **data.eval_sets()}
    print(json.dumps({"checkpoint": epoch_of(paths[-1]), **score(average_weights(paths[-1:]), sets)}), flush=True)
    for k in (int(v) for v in args.last.split(",")):
        if k > len(paths):
            continue
        net = average_weights(paths[-k:])
        if args.recompute_bn:
            batchnorm.refresh(net, data.splits["train"][0])
        print(json.dumps({"average_of": [epoch_of(p) for p in paths[-k:]], "recompute_bn": args.recompute_bn,
                          **score(net, sets)}), flush=True)


if __name__ == "__main__":
    main()
