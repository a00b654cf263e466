"""Training throughput of a zoo model in each `train.precision`: images a second through `model.fit`.

The real training step: the tf.data pipeline with the default augmentation (fer_core.train.make_dataset), Adam,
label smoothing, batch `--batch`; random faces (the arithmetic does not depend on them). One warm-up pass,
then `--batches` timed ones, `--repeats` times with the precisions taking turns (this machine's speed drifts
between two modes), the median reported, one JSON line a precision. A precision the CPU cannot compute in is
reported as refused (fer_core.train.check_precision), not timed.

Usage: python bench/train_speed.py [--model compact] [--width 28] [--frozen-base] [--precisions float32 mixed_bfloat16]
       [--batch 128] [--batches 60] [--repeats 3] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import card, models, train  # noqa: E402
from fer_core.augment import build_augmenter  # noqa: E402
from fer_core.config import AugmentSettings, TrainSettings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="compact", choices=models.ZOO)
    ap.add_argument("--width", type=int, default=28)
    ap.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"], choices=models.PRECISIONS)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--batches", type=int, default=60, help="timed batches a repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frozen-base", action="store_true",
                    help="transfer models: train the head alone (the first phase with pretrained weights); "
                         "default: the whole network (fine-tuning, or training without pretrained weights)")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: its default)")
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (args.batch * args.batches, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, len(faces))
    t = TrainSettings()
    rows: dict[str, dict] = {}
    runs: dict[str, tuple] = {}
    for precision in args.precisions:
        rows[precision] = {"model": args.model, "precision": precision, "batch": args.batch, "hardware": card.hardware(),
                           **({"width": args.width} if args.model == "compact" else
                              {"input_size": t.input_size, "base": "frozen" if args.frozen_base else "trained"})}
        try:
            train.check_precision(precision)
        except ValueError as e:
            rows[precision]["refused"] = str(e)
            continue
        keras.utils.set_random_seed(0)
        model = models.build(args.model, width=args.width, weights=None, input_size=t.input_size, precision=precision)
        if models.is_transfer(model) and not args.frozen_base:
            models.set_base_trainable(model, True, pretrained=False)
        train.compile_for_training(model, train.make_optimizer(t, 1e-3), t.label_smoothing)
        data = train.make_dataset(faces, labels, args.batch, training=True,
                                  augmenter=build_augmenter(AugmentSettings(), seed=0))
        model.fit(data.take(5), epochs=1, verbose=0)  # tracing and oneDNN's first primitives
        runs[precision] = (model, data, [])
    for _ in range(args.repeats):  # the precisions alternate, so that a slower spell of the machine hits both
        for model, data, rates in runs.values():
            started = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            rates.append(len(faces) / (time.perf_counter() - started))
    for precision, row in rows.items():
        if precision in runs:
            model, _, rates = runs[precision]
            row.update(params=model.count_params(), images_per_s=round(statistics.median(rates), 1),
                       runs=[round(r, 1) for r in rates])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
