"""Distillation: a stronger model's answers as part of the training targets.

The analysis ensemble is right more often than the realtime champion but runs at a quarter of its speed.
Training the realtime network towards the ensemble's probabilities (knowledge distillation, Hinton et al.
2015) passes on which emotions a face is close to, at no cost when serving.

Offline: the teacher answers once for each training face before training (unaugmented), not at every step, so
on a CPU it adds minutes, not hours. The targets are `alpha * one-hot label + (1 - alpha) * teacher's
probabilities`; cross-entropy against them is `alpha * CE(label) + (1 - alpha) * CE(teacher)`, which is the
distillation loss at temperature 1 (the teacher's calibrated probabilities are soft already).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import keras
import numpy as np

from fer_core import models
from fer_core.classify import file_digest
from fer_core.labels import NUM_CLASSES

log = logging.getLogger(__name__)


def teacher_probabilities(teacher: keras.Model, faces: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The teacher's probabilities for each (N, 48, 48) uint8 face, as float32 (N, 7)."""
    probs = teacher.predict(faces, batch_size=batch_size, verbose=0)
    if probs.shape != (len(faces), NUM_CLASSES):
        raise ValueError(f"train.teacher answers with shape {probs.shape}, expected ({len(faces)}, {NUM_CLASSES})")
    return probs.astype(np.float32)


def cached_teacher_probabilities(teacher_path: str, faces: np.ndarray, cache: Path) -> np.ndarray:
    """`teacher_probabilities` of the model at `teacher_path`, kept in `cache` (an .npz in the run folder) for
    the same teacher file and faces: a long run resumed after a stop does not ask the teacher again."""
    key = f"{file_digest(teacher_path)}-{hashlib.sha256(np.ascontiguousarray(faces).tobytes()).hexdigest()[:16]}"
    if cache.is_file():
        with np.load(cache) as saved:
            if str(saved["key"]) == key:
                log.info("teacher's answers reused from %s", cache)
                return saved["probs"]
    probs = teacher_probabilities(models.load(teacher_path), faces)
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, key=key, probs=probs)
    partial.replace(cache)
    return probs


def soft_targets(labels: np.ndarray, teacher_probs: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * one-hot(labels) + (1 - alpha) * teacher_probs: each row sums to 1."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"train.distill_alpha must be within [0, 1], got {alpha}")
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    return alpha * one_hot + (1.0 - alpha) * teacher_probs


def teacher_summary(labels: np.ndarray, teacher_probs: np.ndarray) -> dict[str, float]:
    """How the teacher does on the faces it teaches: agreement with the labels and mean confidence. A teacher
    that trained on these faces and memorised them (agreement near 1, confidence near 1) teaches little more
    than the labels do."""
    return {"teacher_train_accuracy": float(np.mean(teacher_probs.argmax(1) == labels)),
            "teacher_train_confidence": float(np.mean(teacher_probs.max(1)))}
