"""The preview page in headless Chromium (Debian's package): a frame, the model version and a chart."""

import shutil
import subprocess

import cv2
import numpy as np
import pytest

from fer_core.config import load_settings
from serving.worker import Worker, WorkerOptions
from tests import helpers

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it)")
@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"], ids=["loopback-mjpeg", "token-in-fragment"])
def test_preview_page_renders_frame_version_and_chart(tiny_model_path, tmp_path, bind):
    """On loopback the page shows the MJPEG stream; bound beyond it, the page opened as /#token=... sends the
    token as a header (never in a URL) and polls frames."""
    helpers.require_shared(helpers.VIDEO)
    port = helpers.free_port()
    s = load_settings(None, [f'home="{tmp_path / "home"}"', 'serve.token="s3cret"'], environ={})
    worker = Worker(s, WorkerOptions(source=str(helpers.VIDEO), model_uri=str(tiny_model_path),
                                     http=f"{bind}:{port}"))
    # slowed so the stream stays alive while the browser looks
    with helpers.worker_running(worker, port, min_frames=3, frame_delay_s=0.25):
        url = f"http://127.0.0.1:{port}/" + ("#token=s3cret" if bind == "0.0.0.0" else "")
        common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=4000"]
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=90).stdout
        assert 'id="model">model.keras<' in dom  # the status poll filled in the model version
        shot = tmp_path / "preview.png"
        subprocess.run([*common, f"--screenshot={shot}", "--window-size=1100,520", url], capture_output=True,
                       timeout=90)
        img = cv2.imread(str(shot))
        assert img is not None and img.shape[:2] == (520, 1100)
        frame_area = img[60:400, 16:612]  # where the MJPEG frame is drawn
        chart_area = img[60:400, 640:1080]
        assert frame_area.std() > 20  # a real picture, not a blank box
        assert (np.abs(chart_area.astype(int) - chart_area[5, 5]).sum(axis=2) > 60).mean() > 0.01  # bars drawn
