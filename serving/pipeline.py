"""Per-frame processing as small composable pieces: a face finder, a detections type, classification.

The face finder runs OpenCV's Haar cascade on every frame. In `full` mode it scans the whole frame
(the reference). In `track` mode it re-detects known faces in windows around their last boxes (one
cascade call per frame) and finds new faces with a full scan every `scan_every` frames on a second
thread, whose result seeds tracks `scan_every` frames later (deterministic for a given setting).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from fer_core import detect
from fer_core.labels import EMOTIONS


@dataclass
class Detections:
    """Faces of one frame: (x, y, w, h) boxes and their emotion probabilities."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int32))
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, len(EMOTIONS)), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def labels(self) -> list[str]:
        return [EMOTIONS[i] for i in self.probs.argmax(axis=1)] if len(self) else []


@dataclass
class FrameResult:
    index: int
    timestamp: float
    detections: Detections
    timings_ms: dict[str, float]


class FaceFinder:
    """Haar on every frame, full-frame or tracked (see the module docstring)."""

    def __init__(self, mode: str = "full", scan_every: int = 6, coast: int = 2, min_size: int = 48):
        if mode not in ("full", "track"):
            raise ValueError(f"detector mode must be full or track, got {mode!r}")
        self.mode, self.scan_every, self.coast = mode, max(1, scan_every), coast
        self.reference = detect.HaarDetector(1.1, 5, min_size, 0)
        self._tracks = np.zeros((0, 4), np.int32)
        self._misses: list[int] = []
        self._pending: Future | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fer-scan") if mode == "track" else None
        self._n = 0

    def find(self, gray: np.ndarray) -> np.ndarray:
        if self.mode == "full":
            return self.reference.detect(gray)
        seeds = self._tracks
        if self._n == 0:
            seeds = self.reference.detect(gray)  # the first frame has nothing to track yet
        elif self._n % self.scan_every == 0:
            if self._pending is not None:
                seeds = np.concatenate([seeds, self._pending.result()])
            self._pending = self._pool.submit(self.reference.detect, gray.copy())
        self._n += 1
        found = detect.redetect_near(self.reference, gray, seeds, face_px=64)
        kept, misses = [], []
        for box, miss in zip(self._tracks, self._misses, strict=True):
            if (not len(found) or detect.iou(box[None], found).max() < 0.3) and miss < self.coast:
                kept.append(box)
                misses.append(miss + 1)
        self._tracks = np.concatenate([found, np.asarray(kept, np.int32).reshape(-1, 4)])
        self._misses = [0] * len(found) + misses
        return self._tracks

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class FramePipeline:
    """gray -> faces -> crops -> one batched classification per frame."""

    def __init__(self, finder: FaceFinder, model_holder):
        self.finder = finder
        self.model_holder = model_holder

    def process(self, index: int, timestamp: float, image: np.ndarray) -> FrameResult:
        t0 = time.perf_counter()
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes = self.finder.find(gray)
        t1 = time.perf_counter()
        probs = np.zeros((0, len(EMOTIONS)), np.float32)
        if len(boxes):
            probs = self.model_holder.classifier.predict(detect.crop_faces(gray, boxes))
        t2 = time.perf_counter()
        return FrameResult(index, timestamp, Detections(np.asarray(boxes, np.int32), probs),
                           {"detect": (t1 - t0) * 1000, "classify": (t2 - t1) * 1000})
