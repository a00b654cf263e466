"""The worker through the faults a camera worker meets in weeks of running, in turn, on one live loopback
stream (bench/mjpeg_stream.py, real frames) and a real `mlflow server`:

1. the stream goes away and comes back: /readyz false, then true; fer_source_reconnects_total goes up;
2. the stream stalls (connected, silent): the read timeout reopens it; fer_fps decays to 0 meanwhile;
3. the MLflow server goes down and comes back, with the champion moved meanwhile: it keeps serving, then
   serves the new champion;
4. a broken version is promoted: it keeps serving the old one and backs off (visible in its log);
5. SIGKILL, then a restart: every row it reported flushed is on disk, the restart appends, and (the champion
   being still broken) it serves the version that last loaded on this machine.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.mjpeg_stream import MjpegStream, read_jpegs
from fer_core import promotion
from fer_core.config import load_settings
from tests import helpers

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAME = "fer-faults"


def _wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _metric(base: str, name: str) -> float:
    families = text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=5).text)
    return sum(s.value for f in families for s in f.samples if s.name == name)


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_worker_rides_out_stream_registry_and_crash_faults(tiny_model_path, tmp_path):
    helpers.require_shared(helpers.VIDEO)
    server = helpers.MlflowServer(tmp_path / "mlflow").start()
    s = load_settings(None, [f'home="{tmp_path / "pipeline-home"}"', f'mlflow.tracking_uri="{server.uri}"',
                             f'registry.model_name="{NAME}"'], environ={})
    *versions, broken = helpers.register_copies(s, tiny_model_path, 2, broken=True)
    promotion.promote_manual(s, versions[0])

    stream = MjpegStream(read_jpegs(helpers.VIDEO), fps=25).start()
    port = helpers.free_port()
    base = f"http://127.0.0.1:{port}"
    timeline = tmp_path / "timeline.csv"
    log_path = tmp_path / "worker.log"
    cmd = helpers.fer_cmd("serve", "--source", stream.url, "--http", f"127.0.0.1:{port}", "--timeline", str(timeline),
                          "--set", f"home={tmp_path / 'worker-home'}", "--set", f"mlflow.tracking_uri={server.uri}",
                          "--set", f"registry.model_name={NAME}", "--set", "serve.poll_s=0.5",
                          "--set", "serve.stall_s=2", "--set", "serve.read_timeout_s=2",
                          "--set", "serve.timeline_flush_s=0.5", "--set", "serve.worker_id=cam-7")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FER_")}

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "a"))  # noqa: SIM115

    proc = start_worker()
    try:
        ready = lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200  # noqa: E731
        _wait(ready, 120, "the worker to be ready")
        assert httpx.get(f"{base}/api/status").json()["model_version"] == versions[0]

        # 1. the stream goes away and comes back on the same port
        stream.stop()
        _wait(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 503, 20, "/readyz to go false")
        reconnects = _metric(base, "fer_source_reconnects_total")
        stream.start()
        _wait(ready, 60, "/readyz to come back after the stream returned")
        _wait(lambda: _metric(base, "fer_source_reconnects_total") > reconnects, 5, "the reconnect counted")

        # 2. the stream stalls: connected and silent
        before = _metric(base, "fer_source_reconnects_total")
        stream.pause()
        _wait(lambda: _metric(base, "fer_fps") == 0 and _metric(base, "fer_ready") == 0, 20, "fps 0 and not ready")
        _wait(lambda: _metric(base, "fer_source_reconnects_total") > before, 30, "the read timeout to reopen it")
        stream.pause(False)
        _wait(ready, 60, "/readyz after the stall")
        assert time.time() - _metric(base, "fer_last_frame_timestamp_seconds") < 5

        # 3. the registry goes down; the champion moves meanwhile (in its store); it comes back
        server.stop()
        frames = httpx.get(f"{base}/api/status").json()["frames"]
        _wait(lambda: httpx.get(f"{base}/api/status").json()["frames"] > frames + 25, 20, "frames while MLflow is down")
        assert ready()
        store = helpers.mlflow_client(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
        store.set_registered_model_alias(NAME, "champion", versions[1])
        server.start()
        _wait(lambda: httpx.get(f"{base}/api/status").json()["model_version"] == versions[1], 60,
              "the champion moved while MLflow was down")

        # 4. a broken version is promoted: the old one keeps serving, with a backoff
        promotion.promote_manual(s, broken)
        _wait(lambda: httpx.get(f"{base}/api/status").json()["reload_failures"] >= 1, 30, "a failed reload")
        frames = httpx.get(f"{base}/api/status").json()["frames"]
        time.sleep(2)
        status = httpx.get(f"{base}/api/status").json()
        assert status["model_version"] == versions[1] and status["frames"] > frames + 10 and ready()
        assert f"version {broken} has failed 1 time(s), next try in" in log_path.read_text()

        # 5. SIGKILL: what it reported flushed is on disk; a restart appends
        _wait(lambda: httpx.get(f"{base}/api/status").json()["timeline_rows_flushed"] > 50, 30, "flushed rows")
        flushed = httpx.get(f"{base}/api/status").json()["timeline_rows_flushed"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = _rows(timeline)
        assert len(killed) >= flushed
        assert {r["clock"] for r in killed} == {"utc"} and {r["worker_id"] for r in killed} == {"cam-7"}
        assert {versions[0], versions[1]} <= {r["model_version"] for r in killed}
        proc = start_worker()
        _wait(ready, 120, "the restarted worker to be ready")
        # the champion is still the broken version: the restart serves the version that last loaded here
        assert httpx.get(f"{base}/api/status").json()["model_version"] == versions[1]
        assert "serving the last good version" in log_path.read_text()
        _wait(lambda: len(_rows(timeline)) > len(killed) + 25, 30, "rows appended after the restart")
        after = _rows(timeline)
        assert after[: len(killed)] == killed  # nothing overwritten
        assert timeline.read_text().count("frame,time_s") == 1  # one header: appended, not restarted
        times = [float(r["time_s"]) for r in after]
        assert times[len(killed)] > times[len(killed) - 1]  # wall-clock time lines up across the restart
    finally:
        proc.kill()
        proc.wait(10)
        stream.stop()
        server.stop()
