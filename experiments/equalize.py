"""Equalised faces: FER2013's faces come histogram-equalised, ExpW's crops (and the worker's) do not.

Four steps, each a subcommand (docs/EXPERIMENTS.md, "Equalised faces", has the runs):

    python experiments/equalize.py stats --dataset DIR         # per source and split: how equalised the faces are
    python experiments/equalize.py champion --dataset DIR [--model FILE]
        # a trained model on each held-out set's faces as given, equalised, standardised, CLAHE'd (no retraining)
    python experiments/equalize.py arrays --dataset DIR --out faces_eq.npz
        # the version's faces.npz with every face equalised, for tools/accelerator_train.py (a controlled pair:
        # the same command on the version's own faces.npz)
    python experiments/equalize.py wrap IN.keras OUT.keras
        # a network trained on equalised arrays, with fer_core.equalize's layer in front: it then takes faces as
        # they come, like every model, and experiments/ensemble_screen.py scores it as any other

A face "is equalised" when equalising it again moves its pixels little: the median of mean |eq(f) - f| is
reported, with each source's mean and standard deviation of a face's levels (an equalised face: about 128, 74).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import evaluate  # noqa: E402
from fer_core.data import dataset  # noqa: E402
from fer_core.equalize import equalise  # noqa: E402


def stats(args) -> None:
    folder = Path(args.dataset)
    arrays = np.load(folder / "faces.npz")
    manifest = pd.read_csv(folder / "manifest.csv")
    for split in ("train", "val", "test", "fer2013_publictest"):
        faces = arrays[f"x_{split}"]
        sources = manifest.loc[manifest.split == split, "source"].to_numpy()
        for source in sorted(set(sources)):
            f = faces[sources == source]
            moved = np.abs(equalise(f).astype(np.int16) - f).reshape(len(f), -1).mean(axis=1)
            flat = f.reshape(len(f), -1).astype(np.float32)
            print(json.dumps({
                "split": split, "source": source, "faces": int(len(f)),
                "moved_by_equalising_p10_p50_p90": np.percentile(moved, [10, 50, 90]).round(2).tolist(),
                "share_moved_under_3_levels": round(float((moved < 3).mean()), 3),
                "face_mean_p10_p50_p90": np.percentile(flat.mean(axis=1), [10, 50, 90]).round(1).tolist(),
                "face_std_p10_p50_p90": np.percentile(flat.std(axis=1), [10, 50, 90]).round(1).tolist()}))


def champion(args) -> None:
    from fer_core.classify import Classifier

    data = dataset.load(args.dataset)
    sets = {"val": data.splits["val"], **data.eval_sets()}
    train = data.splits["train"][0].reshape(len(data.splits["train"][0]), -1).astype(np.float32)
    target_mean, target_std = float(np.median(train.mean(axis=1))), float(np.median(train.std(axis=1)))
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))

    def standardised(faces: np.ndarray) -> np.ndarray:
        flat = faces.reshape(len(faces), -1).astype(np.float32)
        z = (flat - flat.mean(axis=1, keepdims=True)) / (flat.std(axis=1, keepdims=True) + 1e-3)
        return np.clip(z * target_std + target_mean, 0, 255).round().astype(np.uint8).reshape(faces.shape)

    variants = {"as given": lambda f: f, "equalised": equalise,
                "standardised to the training faces' median mean and spread": standardised,
                "CLAHE (clip 2, 4x4 tiles)": lambda f: np.stack([clahe.apply(x) for x in f])}
    clf = Classifier.from_file(args.model)
    for variant, transform in variants.items():
        scores = {}
        for name, (x, y) in sets.items():
            m = evaluate.metrics(y, clf.predict(transform(x)))
            scores[name] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
        print(json.dumps({"variant": variant, **scores}), flush=True)


def arrays(args) -> None:
    with np.load(Path(args.dataset) / "faces.npz") as z:
        out = {k: equalise(z[k]) if k.startswith("x_") else z[k] for k in z.files}
    np.savez(args.out, **out)
    print(json.dumps({"out": args.out, **{k: int(len(v)) for k, v in out.items() if k.startswith("x_")}}))


def wrap(args) -> None:
    import keras

    from fer_core import models
    from fer_core.data.table import FACE
    from fer_core.equalize import EqualizeHistogram

    network = models.load(args.model)
    inputs = keras.Input(shape=(FACE, FACE), dtype="uint8", name="face")
    wrapped = keras.Model(inputs, network(EqualizeHistogram(name="equalize")(inputs)), name=network.name)
    wrapped.save(args.out)
    print(json.dumps({"in": args.model, "out": args.out}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    s = sub.add_parser("stats")
    s.add_argument("--dataset", required=True, help="a dataset version folder")
    s = sub.add_parser("champion")
    s.add_argument("--dataset", required=True)
    s.add_argument("--model", default=str(ROOT / "fer_core" / "assets" / "baseline.keras"))
    s = sub.add_parser("arrays")
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("wrap")
    s.add_argument("model")
    s.add_argument("out")
    args = ap.parse_args()
    {"stats": stats, "champion": champion, "arrays": arrays, "wrap": wrap}[args.step](args)


if __name__ == "__main__":
    main()
