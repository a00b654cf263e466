"""Frame sources: a file (every frame, in order), or a live camera/stream (latest frame wins).

Live sources read on their own thread and keep only the newest frame, so a slow consumer drops frames
instead of falling behind. A lost stream is reopened with exponential backoff; empty or corrupt frames
are skipped and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Frame:
    index: int
    timestamp: float  # seconds: position in a file, or wall time since start for live sources
    image: np.ndarray  # BGR


class SourceError(RuntimeError):
    """A source that cannot be opened."""


def undecodable(video: str, corrupt_frames: int) -> SourceError:
    """The error for a file FFmpeg opens but cannot decode one frame of (a text file named .jpg, a damaged
    video): offline commands refuse it rather than report an analysis of nothing."""
    return SourceError(f"no frame of {video} could be decoded ({corrupt_frames} unreadable): not a video, or corrupt")


def is_live(spec: str) -> bool:
    """A camera index or a stream URL (as opposed to a video file)."""
    return spec.isdigit() or "://" in spec


def _valid(image) -> bool:
    return image is not None and getattr(image, "size", 0) > 0 and image.ndim == 3


class FileSource:
    """Every frame of a video file, in order; timestamps from the file's frame rate."""

    live = False

    def __init__(self, path: str, stats=None):
        self.path = path
        if not Path(path).is_file():
            raise SourceError(f"video not found: {path} (a source is a camera index, a video file, or an rtsp:// "
                              "or http:// URL)")
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise SourceError(f"cannot read {path} as a video: FFmpeg cannot open it (is it a video file?)")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.stats = stats
        self._index = 0
        self.opened = True

    def read(self) -> Frame | None:
        """The next frame, or None at the end. Corrupt frames are skipped and counted."""
        while True:
            ok, image = self.cap.read()
            index = self._index
            self._index += 1
            if not ok and (not self.frame_count or index >= self.frame_count):
                return None  # the end of the file
            if not ok or not _valid(image):
                if self.stats:
                    self.stats.corrupt_frames += 1
                continue
            return Frame(index, index / self.fps, image)

    def close(self) -> None:
        self.opened = False
        self.cap.release()


class LiveSource:
    """A camera index or an RTSP/HTTP URL, read on a background thread; latest frame wins."""

    live = True

    def __init__(self, spec: str, stats=None, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 10.0):
        self.spec = spec
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.stats = stats
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.fps = 0.0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._index = 0
        self._stop = threading.Event()
        self.opened = False
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="fer-source", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + open_timeout_s
        with self._cond:
            while not self.opened and time.monotonic() < deadline and not self._stop.is_set():
                self._cond.wait(0.1)

    def _open(self):
        if self.spec.isdigit():
            cap = cv2.VideoCapture(int(self.spec))
        else:  # FFmpeg gives up on a stream that sends nothing for read_timeout_s: then it is reopened
            cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)])
        return cap if cap.isOpened() else None

    def _run(self) -> None:
        delay = self.backoff_s
        attempts = 0
        while not self._stop.is_set():
            if attempts and self.stats:
                self.stats.reconnects += 1  # every try after the first is a reconnect
            attempts += 1
            cap = self._open()
            if cap is None:
                log.warning("source %s unavailable; retrying in %.1fs", self.spec, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            with self._cond:
                self.opened = True
                self._cond.notify_all()
            delay = self.backoff_s
            failures = 0
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok:
                    failures += 1
                    if failures >= 3:  # the stream ended or broke: reopen it
                        break
                    continue
                failures = 0
                if not _valid(image):
                    if self.stats:
                        self.stats.corrupt_frames += 1
                    continue
                with self._cond:
                    if self._latest is not None and self.stats:
                        self.stats.dropped_frames += 1  # the consumer never saw the previous one
                    self._latest = Frame(self._index, time.monotonic() - self._t0, image)
                    self._index += 1
                    self._cond.notify_all()
            cap.release()
            with self._cond:
                self.opened = False
            if not self._stop.is_set():
                log.warning("source %s lost or silent for %.0f s; reconnecting", self.spec, self.read_timeout_s)

    def read(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not yet returned; None when none came within `timeout`."""
        with self._cond:
            if self._latest is None:
                self._cond.wait(timeout)
            frame, self._latest = self._latest, None
            return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def open_source(spec: str, stats=None, read_timeout_s: float = 10.0):
    """A camera index ("0"), a URL (rtsp://, http://) or a video file path."""
    if is_live(spec):
        return LiveSource(spec, stats, read_timeout_s=read_timeout_s)
    return FileSource(spec, stats)
