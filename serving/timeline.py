"""The emotion timeline, streamed to disk: one row per face per frame, and one row per second.

Built to run for weeks and to survive a crash:
- rows are appended to the files and flushed (and fsynced) at least every `flush_s` seconds, so a worker
  killed with SIGKILL loses at most that much; nothing accumulates in memory beyond the unflushed rows and
  the second being aggregated;
- a restarted worker appends to the same files (the header is written only into an empty file);
- segments rotate by age and size: the live file `NAME.csv` is renamed to `NAME.<UTC start>.csv` (its
  per-second twin `NAME.seconds.csv` to `NAME.<UTC start>.seconds.csv`, where the start is the UTC time the
  segment was opened, `YYYYmmddTHHMMSSZ`, then `-1`, `-2`... for more in one second), and a closed segment is uploaded to `upload` (a `gs://` prefix)
  in the background; a `gs://` timeline path writes locally under `local_dir` and uploads every segment;
- `face` is the face's id (`serving.tracks`), the same while that face is followed from frame to frame;
- every row says which clock its time is on: `media` (seconds into a file) or `utc` (UNIX seconds of the
  wall clock, for live sources, so timelines of workers and restarts line up), the wall-clock time as
  ISO-8601 UTC, the model version that produced it and the worker's id.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from fer_core import storage
from fer_core.labels import EMOTIONS
from serving.pipeline import FrameResult

log = logging.getLogger(__name__)

FACE_FIELDS = ["frame", "time_s", "clock", "utc", "face", "x", "y", "w", "h", "emotion", *EMOTIONS,
               "model_version", "worker_id"]
SECOND_FIELDS = ["second", "clock", "utc", "frames", "faces", "dominant", *[f"mean_{e}" for e in EMOTIONS],
                 "model_version", "worker_id"]


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def seconds_path(path: str) -> str:
    """Where the per-second rows of the timeline `path` go."""
    base = path[:-4] if path.endswith(".csv") else path
    return f"{base}.seconds.csv"


def read_per_second(path: str) -> list[dict]:
    """The per-second rows of a timeline (the live segment), as dicts with numbers."""
    with open(seconds_path(path), newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["second"], r["frames"], r["faces"] = int(float(r["second"])), int(r["frames"]), int(r["faces"])
        for e in EMOTIONS:
            r[f"mean_{e}"] = float(r[f"mean_{e}"])
    return rows


def _drop_torn_tail(path: Path) -> None:
    """A process killed mid-write can leave half a row at the end: cut it, so appended rows stay rows."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        data_end = fh.seek(0, os.SEEK_END)
        block = min(data_end, 1 << 16)
        fh.seek(data_end - block)
        tail = fh.read(block)
        cut = tail.rfind(b"\n")
        fh.truncate(data_end - block + cut + 1 if cut >= 0 else 0)
        log.warning("timeline %s ended in a torn row (a crash mid-write): cut it", path)


class _Csv:
    """One append-only CSV file: header once, rows buffered until `flush` (write + fsync)."""

    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        self._fh = open(self.path, "a", newline="")  # noqa: SIM115 - owned until close
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf)
        if self._fh.tell() == 0:
            self._writer.writerow(fields)

    def write(self, row: list) -> None:
        self._writer.writerow(row)

    def flush(self) -> None:
        data = self._buf.getvalue()
        if data:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._buf.seek(0)
            self._buf.truncate()

    def size(self) -> int:
        return self._fh.tell() + self._buf.tell()

    def close(self) -> None:
        self.flush()
        self._fh.close()


class Timeline:
    def __init__(self, path: str, *, live: bool = False, worker_id: str = "", flush_s: float = 5.0,
                 rotate_s: float = 0.0, rotate_mb: float = 0.0, upload: str = "", local_dir: str | Path = ""):
        self.target = path
        self.live, self.worker_id, self.flush_s = live, worker_id, flush_s
        self.rotate_s, self.rotate_bytes = rotate_s, int(rotate_mb * 1024 * 1024)
        self.upload = upload.rstrip("/")
        if storage.is_gcs(path):  # written locally, every segment uploaded beside `path`
            self.path = Path(local_dir or ".") / Path(path.split("/", 3)[-1]).name
            self.upload = self.upload or path.rsplit("/", 1)[0]
        else:
            self.path = Path(path)
        self._lock = threading.Lock()
        self._uploads: list[threading.Thread] = []
        self._second: dict | None = None
        self.rows_written = 0
        self.rows_flushed = 0  # rows this process has on disk (fsynced)
        self._open()

    # --- segments -----------------------------------------------------------------------------------------
    def _open(self) -> None:
        self._faces = _Csv(self.path, FACE_FIELDS)
        self._seconds = _Csv(Path(seconds_path(str(self.path))), SECOND_FIELDS)
        self._opened = time.time()
        self._last_flush = time.monotonic()

    def _rotate(self) -> None:
        """Close the live segment under its dated name and start a new one; upload the closed one."""
        self._close_files()
        stamp = datetime.fromtimestamp(self._opened, UTC).strftime("%Y%m%dT%H%M%SZ")
        base = str(self.path)[:-4] if str(self.path).endswith(".csv") else str(self.path)
        n, suffix = 0, ""
        while Path(f"{base}.{stamp}{suffix}.csv").exists():  # two segments opened within one second
            n += 1
            suffix = f"-{n}"
        closed = [Path(f"{base}.{stamp}{suffix}.csv"), Path(f"{base}.{stamp}{suffix}.seconds.csv")]
        os.replace(self.path, closed[0])
        os.replace(seconds_path(str(self.path)), closed[1])
        log.info("timeline segment closed: %s", closed[0])
        self._upload(closed)
        self._open()

    def _upload(self, files: list[Path]) -> None:
        if not self.upload:
            return

        def run():
            for f in files:
                try:
                    storage.upload_file(f, f"{self.upload}/{f.name}")
                except OSError as exc:  # kept locally; the next close retries nothing, the operator sees it
                    log.error("timeline upload of %s failed: %s", f, exc)

        t = threading.Thread(target=run, name="fer-timeline-upload", daemon=True)
        t.start()
        self._uploads.append(t)

    # --- rows -----------------------------------------------------------------------------------------------
    def add(self, result: FrameResult, model_version: str = "") -> None:
        now = time.time()
        ts = now if self.live else result.timestamp
        clock, utc = ("utc" if self.live else "media"), _utc(now)
        with self._lock:
            sec = int(ts)
            if self._second is not None and self._second["second"] != sec:
                self._write_second()
            if self._second is None:
                self._second = {"second": sec, "utc": _utc(sec) if self.live else utc, "frames": 0, "faces": 0,
                                "sum": np.zeros(len(EMOTIONS)), "model_version": model_version}
            agg = self._second
            agg["frames"] += 1
            det = result.detections
            for face, (x, y, w, h), p in zip(det.face_ids(), det.boxes, det.probs, strict=True):
                self._faces.write([result.index, round(ts, 3), clock, utc, face, int(x), int(y), int(w), int(h),
                                   EMOTIONS[int(np.argmax(p))], *[round(float(v), 5) for v in p], model_version,
                                   self.worker_id])
                self.rows_written += 1
                agg["faces"] += 1
                agg["sum"] += p
            if time.monotonic() - self._last_flush >= self.flush_s:
                self._flush()
            if (self.rotate_s and now - self._opened >= self.rotate_s) or \
                    (self.rotate_bytes and self._faces.size() >= self.rotate_bytes):
                self._write_second()
                self._rotate()

    def _write_second(self) -> None:
        a = self._second
        if a is None:
            return
        mean = a["sum"] / a["faces"] if a["faces"] else np.zeros(len(EMOTIONS))
        self._seconds.write([a["second"], "utc" if self.live else "media", a["utc"], a["frames"], a["faces"],
                             EMOTIONS[int(np.argmax(mean))] if a["faces"] else "",
                             *[round(float(m), 5) for m in mean], a["model_version"], self.worker_id])
        self._second = None

    def _flush(self) -> None:
        self._faces.flush()
        self._seconds.flush()
        self.rows_flushed = self.rows_written
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _close_files(self) -> None:
        self._faces.close()
        self._seconds.close()

    def close(self) -> None:
        """Write the last second, flush, and upload the live segment when uploading."""
        with self._lock:
            self._write_second()
            self._close_files()
            self.rows_flushed = self.rows_written
        if self.upload:
            self._upload([self.path, Path(seconds_path(str(self.path)))])
        for t in self._uploads:
            t.join(60)

    def per_second(self) -> list[dict]:
        """The per-second rows written so far (read back from disk: nothing is kept in memory)."""
        self.flush()
        return read_per_second(str(self.path))
