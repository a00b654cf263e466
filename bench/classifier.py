"""Faces/s batched and single-face latency of each zoo model through the TFLite runtime, as JSON lines.

Usage: python bench/classifier.py [--models compact,mobilenetv2,...] [--input-size 96] [--flip] [--equalize]
                                  [--keras FILE] [--beside FILE] [--buckets 1,2,4,8] [--threads N]
Transfer models are built with weights=None (speed does not depend on the weights). --flip: each built model
averaged with its mirror image, as training saves it; --beside FILE: each built model also as one more member
of an ensemble with FILE's networks (e.g. the champion), flip-averaged as a whole: an analysis candidate's speed.
--equalize: each built model equalises its faces first (`train.equalize`; each is also measured without, to
compare in one sitting). --buckets: the classifier's batch sizes (`fer_core.classify.BUCKETS`) for this run; --threads: TFLite's threads
(default: the classifier's, up to 2), to see how far the runtime uses the cores. Each line also gives the
number of operations in the TFLite graph (`tflite_ops`), which is what one face's latency is mostly made of.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_core import card, classify, evaluate, models  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402


def operations(tflite: bytes) -> int:
    """The number of operations in a TFLite graph."""
    import tensorflow as tf

    return len(tf.lite.Interpreter(model_content=tflite)._get_ops_details())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(models.ZOO))
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--flip", action="store_true", help="flip-average the built models")
    ap.add_argument("--equalize", action="store_true", help="also measure each built model equalising its faces")
    ap.add_argument("--keras", help="also measure this saved model")
    ap.add_argument("--beside", help="also measure each built model as a member beside this saved model's networks")
    ap.add_argument("--buckets", help="comma-separated batch sizes, e.g. 1,2,4,8,16 (default: the classifier's)")
    ap.add_argument("--threads", type=int, default=0, help="TFLite threads (default: the classifier's)")
    args = ap.parse_args()
    if args.buckets:
        classify.BUCKETS = tuple(sorted(int(b) for b in args.buckets.split(",")))
    built = [(name, models.build(name, weights=None, input_size=args.input_size)) for name in args.models.split(",")]
    if args.equalize:
        built += [(f"{name}+equalize", models.build(name, weights=None, input_size=args.input_size, equalize=True))
                  for name in args.models.split(",")]
    todo = [(f"{name}{'+flip' if args.flip else ''}", models.with_flip_average(m) if args.flip else m)
            for name, m in built]
    if args.beside:
        beside = models.load(args.beside)
        todo += [(f"{args.beside}+{name}", models.with_flip_average(models.ensemble([beside, m]))) for name, m in built]
    if args.keras:
        todo.append((args.keras, models.load(args.keras)))
    for name, model in todo:
        clf = Classifier.from_keras(model, threads=args.threads)
        speed = evaluate.speed(clf)
        print(json.dumps({"bench": "classifier", "model": name, "params": model.count_params(),
                          "tflite_bytes": len(clf.tflite), "tflite_ops": operations(clf.tflite),
                          "buckets": list(classify.BUCKETS), "threads": clf.threads, **speed,
                          "hardware": card.hardware()}), flush=True)


if __name__ == "__main__":
    main()
