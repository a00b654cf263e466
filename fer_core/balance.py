"""Undersampling, the identity-hashed group split, SMOTE, and source weighting on the training split only."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from fer_core.data.table import FACE, FaceTable
from fer_core.labels import EMOTIONS, label_index


def undersample(table: FaceTable, drop: dict[str, float], seed: int) -> FaceTable:
    """Drop the given fraction of each named class, at random (seeded)."""
    rng = np.random.default_rng(seed)
    keep = np.ones(len(table), bool)
    labels = table.labels
    for name, fraction in drop.items():
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"undersample fraction for {name} must be in [0, 1], got {fraction}")
        idx = np.flatnonzero(labels == label_index(name))
        n_drop = int(round(len(idx) * fraction))
        keep[rng.choice(idx, size=n_drop, replace=False)] = False
    return table.where(keep)


def group_keys(meta: pd.DataFrame) -> np.ndarray:
    """Faces that must stay together: all faces of one ExpW image; otherwise each face alone."""
    if "group" in meta.columns:
        groups = meta["group"].where(meta["group"].notna() & (meta["group"] != ""), meta["image"])
        return (meta["source"] + ":" + groups.astype(str)).to_numpy()
    return meta["image"].to_numpy()


def unit_hash(keys: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per key, a pure function of the key and the seed."""
    out = np.empty(len(keys), np.float64)
    for i, key in enumerate(keys):
        digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def split(table: FaceTable, val: float, test: float, seed: int) -> dict[str, FaceTable]:
    """Train/val/test split in which a face's split is a function of its identity (its group: the ExpW
    image, or the FER2013 row) and the seed alone: the same face lands in the same split in every dataset
    version, whatever else changed (balancing, other inputs), so a model is never scored on a face another
    version trained on. Independent of the label, the draw keeps each class's share of every split close
    to its share overall (a binomial spread: about half a point on the test split of the real data).
    An ExpW image's faces stay together."""
    if val < 0 or test < 0 or val + test >= 1:
        raise ValueError(f"val ({val}) and test ({test}) fractions must be >= 0 and sum below 1")
    u = unit_hash(group_keys(table.meta), seed)
    which = np.where(u < test, "test", np.where(u < test + val, "val", "train"))
    return {name: table.where(which == name) for name in ("train", "val", "test")}


def smote(train: FaceTable, k: int, seed: int) -> FaceTable:
    """Oversample minority classes with SMOTE on uint8 faces; synthetic rows are marked in the metadata."""
    from imblearn.over_sampling import SMOTE

    labels = train.labels
    counts = np.bincount(labels, minlength=len(EMOTIONS))
    present = counts[counts > 0]
    if len(present) < 2 or present.min() == present.max():
        return train
    k = max(1, min(k, int(present.min()) - 1))
    if k < 1 or present.min() < 2:
        raise ValueError(f"SMOTE needs at least 2 faces per class in the training split, got {counts.tolist()}")
    flat = train.pixels.reshape(len(train), -1)
    x_res, y_res = SMOTE(k_neighbors=k, random_state=seed).fit_resample(flat, labels)
    n_new = len(y_res) - len(train)
    if n_new <= 0:
        return train
    new_y = np.asarray(y_res[len(train):], dtype=np.int64)
    new_pixels = np.clip(np.asarray(x_res[len(train):]), 0, 255).astype(np.uint8).reshape(-1, FACE, FACE)
    synthetic = pd.DataFrame({
        "image": [f"smote/{EMOTIONS[y]}/{i:06d}" for i, y in enumerate(new_y)],
        "source": "smote", "face_id": 0, "label": new_y, "usage": "", "confidence": np.nan,
    })
    meta = train.meta.copy()
    meta["synthetic"] = False
    synthetic["synthetic"] = True
    return FaceTable(pd.concat([meta, synthetic], ignore_index=True), np.concatenate([train.pixels, new_pixels]))


def weight_sources(x: np.ndarray, y: np.ndarray, sources: np.ndarray, weights: dict[str, float],
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Show each source's training faces `weight` times per epoch: whole repeats, plus a seeded random share
    for the fraction (1.5 = every face once and half of them twice). Repeats are augmented apart like any
    face. Why: ExpW's in-the-wild faces are what the worker sees, and they are a seventh of the training set.
    """
    if len(sources) != len(x):
        raise ValueError(f"{len(sources)} face sources for {len(x)} training faces")
    rng = np.random.default_rng(seed)
    parts = [np.arange(len(x))]
    for source, weight in sorted(weights.items()):
        if weight < 1.0:
            raise ValueError(f"train.source_weights.{source} must be >= 1 (a weight repeats faces), got {weight}")
        idx = np.flatnonzero(sources == source)
        extra = weight - 1.0
        parts += [idx] * int(extra)
        share = extra - int(extra)
        if share > 0 and len(idx):
            parts.append(np.sort(rng.choice(idx, size=int(round(share * len(idx))), replace=False)))
    take = np.concatenate(parts)
    return x[take], y[take]
