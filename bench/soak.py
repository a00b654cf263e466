"""Soak: the worker on a live MJPEG-over-HTTP stream (bench/mjpeg_stream.py, real frames of the face video,
looped) for a long time, watching its memory, file descriptors and threads, and its timeline on disk.

    python bench/soak.py [--minutes 10] [--fps 25] [--warmup-s 60] [--model FILE]

Prints JSON: frames, fps, RSS at start (after warm-up) and end and its least-squares slope in MB per hour,
open file descriptors and threads at start and end, timeline rows on disk. Target: slope < 5 MB/hour.
`--fps 0` sends frames as fast as the worker takes them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mjpeg_stream import MjpegStream, read_jpegs  # noqa: E402

VIDEO = ROOT.parent / "shared" / "data" / "videos" / "faces_596x336.mp4"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--warmup-s", type=float, default=60.0)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--video", default=str(VIDEO))
    ap.add_argument("--model", default=str(ROOT / "fer_core" / "assets" / "baseline.keras"))
    a = ap.parse_args()
    stream = MjpegStream(read_jpegs(a.video), fps=a.fps).start()
    with tempfile.TemporaryDirectory() as home:
        port = psutil.Process().pid % 20000 + 30000
        timeline = Path(home) / "timeline.csv"
        cmd = [sys.executable, "-m", "fer_cli", "-q", "serve", "--source", stream.url, "--model", a.model,
               "--http", f"127.0.0.1:{port}", "--timeline", str(timeline), "--set", f"home={home}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        worker = psutil.Process(proc.pid)
        samples: list[tuple[float, float, int, int]] = []
        started = time.monotonic()
        try:
            while time.monotonic() - started < a.minutes * 60:
                time.sleep(a.sample_s)
                t = time.monotonic() - started
                if proc.poll() is not None:
                    raise SystemExit(f"the worker exited with {proc.returncode}")
                samples.append((t, worker.memory_info().rss / 2**20, worker.num_fds(), worker.num_threads()))
            status = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=5).json()
        finally:
            proc.terminate()
            proc.wait(30)
            stream.stop()
        rows = sum(1 for _ in timeline.open()) - 1 if timeline.exists() else 0
    steady = [s for s in samples if s[0] >= a.warmup_s] or samples
    t = np.array([s[0] for s in steady]) / 3600
    rss = np.array([s[1] for s in steady])
    slope = float(np.polyfit(t, rss, 1)[0]) if len(steady) > 2 else float("nan")
    seconds = samples[-1][0] if samples else 0.0
    print(json.dumps({
        "bench": "soak", "minutes": a.minutes, "stream_fps": a.fps or "max", "frames": status["frames"],
        "fps": round(status["frames"] / seconds, 1) if seconds else 0.0, "faces": status["faces"],
        "rss_start_mb": round(steady[0][1], 1), "rss_end_mb": round(steady[-1][1], 1),
        "rss_max_mb": round(max(s[1] for s in samples), 1), "rss_slope_mb_per_hour": round(slope, 2),
        "target_slope_mb_per_hour": 5.0, "fds_start": steady[0][2], "fds_end": steady[-1][2],
        "threads_start": steady[0][3], "threads_end": steady[-1][3], "timeline_rows": rows,
        "warmup_s": a.warmup_s, "samples": len(samples)}))


if __name__ == "__main__":
    main()
