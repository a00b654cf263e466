"""Long work shows a progress bar (rate and ETA) on a terminal, and nothing on a pipe or with -q."""

import os
import pty
import subprocess
import threading

import pytest

from tests import helpers


def _build(small_data, home, *flags: str, tty: bool) -> tuple[int, str]:
    args = [*flags, "data", "build", "--set", f"home={home}", "--set", f"data.fer2013={small_data['fer2013']}",
            "--set", f"data.expw={small_data['expw']}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FER_")}
    if not tty:
        proc = subprocess.run(helpers.fer_cmd(*args), env=env, capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stderr
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run(helpers.fer_cmd(*args), env=env, stdout=subprocess.PIPE, stderr=slave, timeout=300)
    os.close(slave)
    reader.join(10)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_progress_bar_on_a_terminal_only(small_data, tmp_path):
    rc, tty_err = _build(small_data, tmp_path / "a", tty=True)
    assert rc == 0, tty_err[-2000:]
    assert "ExpW images" in tty_err and "image/s" in tty_err and "FER2013 rows" in tty_err
    rc, piped = _build(small_data, tmp_path / "b", tty=False)
    assert rc == 0 and "ExpW images" not in piped and "image/s" not in piped
    rc, quiet = _build(small_data, tmp_path / "c", "-q", tty=True)
    assert rc == 0 and "ExpW images" not in quiet, quiet[-2000:]


def test_results_on_stdout_are_strict_json():
    """A metric that does not exist (no validation epochs: NaN) is null, not the NaN strict parsers refuse."""
    import io
    import json
    import sys

    from fer_cli import output

    out = io.StringIO()
    output.bind(out)
    try:
        output.emit({"best_val_accuracy": float("nan"), "speed": [1.5, float("inf")], "n": 3})
    finally:
        output.bind(sys.stdout)
    assert json.loads(out.getvalue(), parse_constant=lambda c: pytest.fail(f"{c} in the output")) == {
        "best_val_accuracy": None, "speed": [1.5, None], "n": 3}
