"""The timeline on disk: appended across restarts, torn rows cut, clocks labelled, segments rotated by
size under dated names and uploaded to a (real, emulated) GCS bucket; nothing kept in memory."""

import csv
import re

import numpy as np

from fer_core import storage
from fer_core.labels import EMOTIONS
from serving.pipeline import Detections, FrameResult
from serving.timeline import Timeline, seconds_path


def _result(i: int, t: float, faces: int = 1) -> FrameResult:
    probs = np.tile(np.eye(len(EMOTIONS), dtype=np.float32)[i % len(EMOTIONS)], (faces, 1))
    boxes = np.tile(np.array([[10, 20, 30, 30]], np.int32), (faces, 1))
    return FrameResult(i, t, Detections(boxes, probs), {})


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_restart_appends_and_cuts_a_torn_row(tmp_path):
    path = tmp_path / "t.csv"
    tl = Timeline(str(path), worker_id="w1", flush_s=0)
    for i in range(30):
        tl.add(_result(i, i / 10), "3")
    tl.close()
    first = _rows(path)
    assert len(first) == 30 and first[0]["clock"] == "media" and first[0]["model_version"] == "3"
    assert [r["second"] for r in _rows(seconds_path(str(path)))] == ["0", "1", "2"]
    with open(path, "a") as fh:  # a crash in the middle of a row
        fh.write("30,3.0,media,2026-")
    tl = Timeline(str(path), worker_id="w1", flush_s=0)
    tl.add(_result(31, 3.1), "4")
    tl.close()
    rows = _rows(path)
    assert rows[:30] == first and len(rows) == 31 and rows[-1]["model_version"] == "4"
    assert path.read_text().count("frame,time_s") == 1


def test_live_rows_carry_utc_time_and_flush_on_time(tmp_path):
    path = tmp_path / "live.csv"
    tl = Timeline(str(path), live=True, worker_id="cam", flush_s=3600)
    tl.add(_result(0, 0.0), "1")
    assert _rows(path) == []  # not yet flushed (flush_s is an hour)
    tl.flush()
    row = _rows(path)[0]
    assert row["clock"] == "utc" and float(row["time_s"]) > 1.7e9 and re.match(r"\d{4}-\d\d-\d\dT.*Z$", row["utc"])
    assert tl.rows_flushed == 1
    tl.close()


def test_segments_rotate_by_size_and_upload(tmp_path, gcs_bucket):
    path = tmp_path / "cam.csv"
    tl = Timeline(str(path), live=True, worker_id="cam", flush_s=0, rotate_mb=0.002, upload=f"{gcs_bucket}/tl")
    for i in range(60):
        tl.add(_result(i, 0.0, faces=2), "1")
    tl.close()
    closed = sorted(p.name for p in tmp_path.glob("cam.2*.csv") if not p.name.endswith(".seconds.csv"))
    assert closed and all(re.fullmatch(r"cam\.\d{8}T\d{6}Z(-\d+)?\.csv", n) for n in closed)
    total = sum(len(_rows(tmp_path / n)) for n in closed) + len(_rows(path))
    assert total == 120  # every row, in one segment or another
    uploaded = {name for name, _, _ in storage.list_files(f"{gcs_bucket}/tl")}
    assert set(closed) <= uploaded and "cam.csv" in uploaded
