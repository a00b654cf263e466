"""What a `fer` command starts for itself ends with it: a SIGKILLed `fer pipeline run` leaves no process."""

import os
import signal
import subprocess
import time

import psutil
import pytest

from tests import helpers

pytestmark = pytest.mark.slow


def test_sigkilled_pipeline_run_leaves_no_process_behind(small_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    args = ["pipeline", "run", "--set", f"home={tmp_path / 'home'}", "--set", f"data.fer2013={small_data['fer2013']}",
            "--set", f"data.expw={small_data['expw']}", "--set", "train.epochs=30", "--set", "train.width=16"]
    proc = subprocess.Popen(helpers.fer_cmd(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fer = psutil.Process(proc.pid)
    try:
        seen: set[int] = set()
        deadline = time.time() + 240
        # Wait until the flow is under way: its API server answers and training has written a checkpoint.
        while time.time() < deadline and not list((tmp_path / "home").rglob("progress.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            seen.update(p.pid for p in fer.children(recursive=True))
            time.sleep(0.2)
        seen.update(p.pid for p in fer.children(recursive=True))
        assert seen, "fer pipeline run started no helper process: nothing to check"
        assert any("prefect.server.api.server:create_app" in " ".join(psutil.Process(p).cmdline())
                   for p in seen if psutil.pid_exists(p))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    deadline = time.time() + 20
    alive = [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    leftovers = [" ".join(psutil.Process(p).cmdline())[:200] for p in alive if psutil.pid_exists(p)]
    for p in alive:  # do not leave them to the rest of the suite either
        with __import__("contextlib").suppress(psutil.NoSuchProcess):
            psutil.Process(p).kill()
    assert not leftovers, f"left behind after SIGKILL: {leftovers}"
