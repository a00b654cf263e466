"""Every subcommand, on an empty home or with a wrong argument, fails with one line that says what is
wrong, exits 1 (2 is argparse's usage error), and prints a traceback only with -v."""

import os
import socket
import subprocess

import pytest

from tests import helpers

UNREACHABLE = "mlflow.tracking_uri=http://127.0.0.1:9"  # port 9 (discard): nothing listens there

CASES = {
    "data build, no inputs": ["data", "build"],
    "data build, missing CSV": ["data", "build", "--set", "data.fer2013={tmp}/missing.csv"],
    "data stats, no such version": ["data", "stats", "ds-nope"],
    "evaluate, missing data": ["evaluate", "--data", "{tmp}/missing"],
    "evaluate, not a CSV": ["evaluate", "--data", "{tmp}/not-an-image.txt", "--format", "fer2013"],
    "predict, not an image": ["predict", "{tmp}/not-an-image.txt"],
    "predict, missing model": ["predict", "{tmp}/not-an-image.txt", "--model", "{tmp}/missing.keras"],
    "train, missing CSV": ["train", "--set", "data.fer2013={tmp}/missing.csv"],
    "pipeline run, missing CSV": ["pipeline", "run", "--set", "data.fer2013={tmp}/missing.csv"],
    "pipeline serve, missing config": ["pipeline", "serve", "--config", "{tmp}/missing.toml"],
    "models list, unreachable registry": ["models", "list", "--set", UNREACHABLE],
    "models promote, no such version": ["models", "promote", "99"],
    "models rollback, empty registry": ["models", "rollback"],
    "models bootstrap, unreachable registry": ["models", "bootstrap", "--set", UNREACHABLE],
    "serve, missing video": ["serve", "--source", "{tmp}/missing.mp4"],
    "serve, not a video": ["serve", "--source", "{tmp}/not-an-image.txt"],
    "serve, port in use": ["serve", "--source", "{video}", "--http", "127.0.0.1:{busy}"],
    "serve, bad setting": ["serve", "--source", "{video}", "--set", "serve.poll_s=often"],
    "analyze, missing video": ["analyze", "{tmp}/missing.mp4", "--out", "{tmp}/out"],
    "bench realtime, missing video": ["bench", "realtime", "{tmp}/missing.mp4"],
    "bench realtime, not a video": ["bench", "realtime", "{tmp}/not-an-image.txt"],
    "demo, bad config": ["demo", "--config", "{tmp}/missing.toml"],
}


@pytest.fixture(scope="module")
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _run(args: list[str], tmp_path, busy: int, *flags: str) -> subprocess.CompletedProcess:
    (tmp_path / "not-an-image.txt").write_text("plain text, not an image or a video\n")
    video = tmp_path / "clip.mp4"
    if not video.exists():
        from fer_cli.demo import write_clip

        write_clip(video, seconds=0.5)
    fields = {"tmp": tmp_path, "video": video, "busy": busy}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FER_", "PREFECT_API"))},
           "FER_HOME": str(tmp_path / "home")}
    return subprocess.run(helpers.fer_cmd(*flags, *[a.format(**fields) for a in args]), env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args", CASES.values(), ids=CASES.keys())
def test_one_line_error_and_exit_1(args, tmp_path, busy_port):
    proc = _run(args, tmp_path, busy_port)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fer: error:")]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) >= 1 and len(errors[-1]) > len("fer: error: ") + 10, proc.stderr[-2000:]


INPUT_ERRORS = ["predict, not an image", "serve, missing video", "serve, not a video", "serve, port in use",
                "bench realtime, not a video", "analyze, missing video", "train, missing CSV",
                "pipeline run, missing CSV"]


@pytest.mark.parametrize("case", INPUT_ERRORS)
def test_bad_input_fails_before_any_model_or_registry(case, tmp_path, busy_port, monkeypatch):
    """A typo in a path or a taken port is reported before the registry is created or bootstrapped (which
    took 30-40 s on an empty home), before Prefect starts and before TensorFlow is imported."""
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # every import, one line each on stderr
    proc = _run(CASES[case], tmp_path, busy_port)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert proc.returncode == 1 and "fer: error:" in proc.stderr, proc.stderr[-2000:]
    assert "json" in imported  # the import log is there to read
    assert not (tmp_path / "home" / "mlflow").exists()
    assert not {"tensorflow", "prefect", "mlflow"} & imported


def test_verbose_shows_the_traceback(tmp_path, busy_port):
    proc = _run(CASES["serve, missing video"], tmp_path, busy_port, "-v")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "video not found" in proc.stderr


def test_version():
    proc = subprocess.run(helpers.fer_cmd("--version"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("fer 0.")
