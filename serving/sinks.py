"""Where results go: the overlay, an annotated video, the live preview state (the timeline: serving.timeline)."""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from fer_core import storage
from fer_core.labels import EMOTIONS
from serving.pipeline import FrameResult

_COLORS = {"angry": (40, 40, 220), "disgust": (40, 140, 40), "fear": (160, 60, 160), "happy": (40, 200, 240),
           "sad": (200, 120, 40), "surprise": (40, 160, 250), "neutral": (200, 200, 200)}


class Annotator:
    """The box and the top-3 emotions with probabilities, the first highlighted (as the seed drew it)."""

    def __init__(self, top: int = 3):
        self.top = top

    def draw(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        det = result.detections
        for face, (x, y, w, h), p in zip(det.face_ids(), det.boxes, det.probs, strict=True):
            order = np.argsort(-p)[: self.top]
            color = _COLORS[EMOTIONS[order[0]]]
            cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), color, 2)
            for rank, k in enumerate(order):
                text = f"#{face} {EMOTIONS[k]} {p[k]:.0%}" if rank == 0 else f"{EMOTIONS[k]} {p[k]:.0%}"
                scale, thick = (0.55, 2) if rank == 0 else (0.45, 1)
                ty = int(y) - 8 - 18 * (self.top - 1 - rank) if y > 60 else int(y + h) + 18 + 18 * rank
                cv2.putText(image, text, (int(x), ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2,
                            cv2.LINE_AA)
                cv2.putText(image, text, (int(x), ty), cv2.FONT_HERSHEY_SIMPLEX, scale,
                            color if rank == 0 else (235, 235, 235), thick, cv2.LINE_AA)
        return image


class VideoRecorder:
    """An annotated video file (only written when asked: raw frames are never stored otherwise)."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), fps or 25.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            h, w = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


class PreviewState:
    """What the preview page shows: the latest annotated JPEG and the last minute's emotion counts."""

    def __init__(self, window_s: float = 60.0, jpeg_quality: int = 75):
        self.window_s, self.quality = window_s, jpeg_quality
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._events: collections.deque[tuple[float, str]] = collections.deque()

    def update(self, annotated: np.ndarray, result: FrameResult) -> None:
        ok, buf = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        now = time.monotonic()
        with self._cond:
            if ok:
                self._jpeg = buf.tobytes()
                self._seq += 1
            for label in result.detections.labels:
                self._events.append((now, label))
            while self._events and self._events[0][0] < now - self.window_s:
                self._events.popleft()
            self._cond.notify_all()

    def next_jpeg(self, after: int, timeout: float = 2.0) -> tuple[int, bytes | None]:
        with self._cond:
            if self._seq <= after:
                self._cond.wait(timeout)
            return self._seq, self._jpeg

    def distribution(self) -> dict[str, int]:
        with self._cond:
            counts = collections.Counter(label for _, label in self._events)
        return {e: counts.get(e, 0) for e in EMOTIONS}


def write_json(path: str, payload) -> None:
    storage.write_text(path, json.dumps(payload, indent=2, default=str))
