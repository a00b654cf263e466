"""What the champion's trained features still give without retraining them: fewer views, or a refitted head.

Each network of the champion ends in global average pooling and one dense layer (`gap`, `emotion`). The pooled
features of every face and of its mirror image are computed once; from them:
- `views`: the champion's answer from a subset of its four passes (each network on the face and on its mirror).
  Fewer passes are what would make it faster (docs/BENCHMARKS.md: the batched speed is the passes' arithmetic).
- `head`: each network's dense layer refitted as a multinomial logistic regression on its training faces'
  features (face and mirror), ExpW's faces weighted `w` times, L2 strength `1/C`, and the four passes averaged
  as served. Whether the in-the-wild faces are limited by the decision layer or by the features under it.
  Every setting prints the validation split beside the held-out sets, so a pick can be made on validation alone.

Prints one JSON line per model: accuracy and macro-F1 on each set (`fer_core.evaluate.metrics`), and ExpW's
test faces alone (`expw_test`). Usage: python experiments/fixed_features.py --dataset DATASET_DIR [--model FILE]
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
from fer_core.data import dataset  # noqa: E402

WEIGHTS = (1.0, 2.0, 4.0)  # how many times an ExpW face counts in the head's fit
STRENGTHS = (0.01, 0.1, 1.0)  # scikit-learn's C: inverse L2 strength


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def features(model_path: str, sets: dict[str, np.ndarray]) -> list[dict]:
    """Per network: its dense layer's weights and the pooled features of each set's faces and their mirrors."""
    import keras

    out = []
    for net in models.ensemble_members(models.load(model_path)):
        pooled = keras.Model(net.inputs, net.get_layer("gap").output)
        weights, bias = net.get_layer("emotion").get_weights()
        out.append({"W": weights, "b": bias, **{
            (name, mirrored): pooled.predict(x[:, :, ::-1] if mirrored else x, batch_size=512, verbose=0)
            for name, x in sets.items() for mirrored in (False, True)}})
    return out


def report(tag: str, probs_of, scored: dict[str, np.ndarray], **extra) -> dict:
    """One JSON line: accuracy and macro-F1 of `probs_of(set)` on each scored set."""
    row = {"model": tag, **extra}
    for name, y in scored.items():
        m = evaluate.metrics(y, probs_of(name))
        row[name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder (its splits and held-out sets)")
    ap.add_argument("--model", default=str(ROOT / "fer_core/assets/baseline.keras"))
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression

    data = dataset.load(args.dataset)
    held = data.eval_sets()
    sets = {"train": data.splits["train"][0], "val": data.splits["val"][0], **{k: x for k, (x, _) in held.items()}}
    scored = {"val": data.splits["val"][1], **{k: y for k, (_, y) in held.items()}}
    nets = features(args.model, sets)
    passes = [(i, mirrored) for i in range(len(nets)) for mirrored in (False, True)]

    for k in range(len(passes), 0, -1):
        for subset in itertools.combinations(passes, k):
            report("views", lambda s, v=subset: np.mean(
                [softmax(nets[i][(s, m)] @ nets[i]["W"] + nets[i]["b"]) for i, m in v], axis=0), scored,
                views=[f"net{i}{' mirrored' if m else ''}" for i, m in subset])

    y_train, expw = data.splits["train"][1], data.sources.get("train", np.array([])) == "expw"
    for w, c in itertools.product(WEIGHTS, STRENGTHS):
        heads = []
        for net in nets:
            x = np.concatenate([net[("train", False)], net[("train", True)]])
            weight = np.tile(np.where(expw, w, 1.0), 2) if len(expw) == len(y_train) else None
            heads.append(LogisticRegression(C=c, max_iter=300).fit(x, np.tile(y_train, 2), sample_weight=weight))
        report("head", lambda s, h=heads: np.mean(
            [head.predict_proba(net[(s, m)]) for head, net in zip(h, nets, strict=True) for m in (False, True)],
            axis=0), scored, expw_weight=w, C=c)


if __name__ == "__main__":
    main()
