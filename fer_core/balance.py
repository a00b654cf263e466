"""Undersampling, the stratified group split, and SMOTE on the training split only."""

from __future__ import annotations

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


def split(table: FaceTable, val: float, test: float, seed: int) -> dict[str, FaceTable]:
    """Stratified train/val/test split by group: no ExpW image has faces in two splits."""
    if val < 0 or test < 0 or val + test >= 1:
        raise ValueError(f"val ({val}) and test ({test}) fractions must be >= 0 and sum below 1")
    rng = np.random.default_rng(seed)
    keys = group_keys(table.meta)
    frame = pd.DataFrame({"key": keys, "label": table.labels})
    # A group is stratified by its most common label.
    group_label = frame.groupby("key", sort=True)["label"].agg(lambda s: s.value_counts().index[0])
    assignment: dict[str, str] = {}
    for _label, groups in group_label.groupby(group_label):
        names = groups.index.to_numpy()
        rng.shuffle(names)
        n_test = int(round(len(names) * test))
        n_val = int(round(len(names) * val))
        for i, name in enumerate(names):
            assignment[name] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    which = np.array([assignment[k] for k in keys])
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
