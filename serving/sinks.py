"""Where results go: the overlay, an annotated video, the emotion timeline, the live preview state."""

from __future__ import annotations

import collections
import csv
import io
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
        for (x, y, w, h), p in zip(result.detections.boxes, result.detections.probs, strict=True):
            order = np.argsort(-p)[: self.top]
            color = _COLORS[EMOTIONS[order[0]]]
            cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), color, 2)
            for rank, k in enumerate(order):
                text = f"{EMOTIONS[k]} {p[k]:.0%}"
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


class Timeline:
    """Per face per frame rows, and per-second aggregates (faces, mean probability per emotion, dominant).

    Rows are buffered and flushed atomically (temp file + rename) on `flush`/`close`; `gs://` targets are
    uploaded on close.
    """

    FACE_FIELDS = ["frame", "time_s", "face", "x", "y", "w", "h", "emotion", *EMOTIONS]
    SECOND_FIELDS = ["second", "frames", "faces", "dominant", *[f"mean_{e}" for e in EMOTIONS]]

    def __init__(self, path: str):
        self.path = path
        self.rows: list[list] = []
        self.seconds: dict[int, dict] = {}
        self._lock = threading.Lock()

    def add(self, result: FrameResult) -> None:
        with self._lock:
            sec = int(result.timestamp)
            agg = self.seconds.setdefault(sec, {"frames": 0, "faces": 0, "sum": np.zeros(len(EMOTIONS))})
            agg["frames"] += 1
            for i, ((x, y, w, h), p) in enumerate(zip(result.detections.boxes, result.detections.probs, strict=True)):
                self.rows.append([result.index, round(result.timestamp, 3), i, int(x), int(y), int(w), int(h),
                                  EMOTIONS[int(np.argmax(p))], *[round(float(v), 5) for v in p]])
                agg["faces"] += 1
                agg["sum"] += p

    def per_second(self) -> list[dict]:
        out = []
        with self._lock:
            for sec in sorted(self.seconds):
                a = self.seconds[sec]
                mean = a["sum"] / a["faces"] if a["faces"] else np.zeros(len(EMOTIONS))
                out.append({"second": sec, "frames": a["frames"], "faces": a["faces"],
                            "dominant": EMOTIONS[int(np.argmax(mean))] if a["faces"] else "",
                            **{f"mean_{e}": round(float(m), 5) for e, m in zip(EMOTIONS, mean, strict=True)}})
        return out

    def _csv(self, fields: list[str], rows: list) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(fields)
        for row in rows:
            writer.writerow([row[f] for f in fields] if isinstance(row, dict) else row)
        return buf.getvalue()

    def seconds_path(self) -> str:
        base = self.path[:-4] if self.path.endswith(".csv") else self.path
        return f"{base}.seconds.csv"

    def flush(self) -> None:
        with self._lock:
            faces = self._csv(self.FACE_FIELDS, list(self.rows))
        storage.write_text(self.path, faces)
        storage.write_text(self.seconds_path(), self._csv(self.SECOND_FIELDS, self.per_second()))

    close = flush


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
