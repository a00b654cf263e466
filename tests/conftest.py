from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fer_core import storage
from fer_core.config import Settings, load_settings
from tests import helpers

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def settings_factory(tmp_path: Path):
    """Settings whose home is a fresh temporary folder, with overrides."""

    def make(*overrides: str) -> Settings:
        return load_settings(None, [f'home="{tmp_path / "home"}"', *overrides], environ={})

    return make


@pytest.fixture
def small_data(tmp_path: Path) -> dict[str, Path]:
    """A small FER2013 CSV (with PublicTest rows) and a small ExpW folder, written by the test."""
    csv = helpers.write_fer2013_csv(tmp_path / "raw" / "fer2013.csv", per_class=12,
                                    usage_counts={"PublicTest": 3})
    expw = helpers.write_expw(tmp_path / "raw" / "expw", images_per_class=5, faces_per_image=2)
    return {"fer2013": csv, "expw": expw}


@pytest.fixture(scope="session")
def gcs_emulator():
    """A real GCS emulator server on loopback; yields its host and points google-cloud-storage at it."""
    port = helpers.free_port()
    proc = subprocess.Popen([helpers.venv_bin("gcp-storage-emulator"), "start", "--host", "127.0.0.1",
                             "--port", str(port), "--in-memory", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        helpers.wait_for_port(port, proc)
        host = f"http://127.0.0.1:{port}"
        old = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = host
        storage.reset_client()
        yield host
    finally:
        proc.terminate()
        proc.wait(10)
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
        storage.reset_client()


@pytest.fixture
def gcs_bucket(gcs_emulator, request) -> str:
    """A fresh bucket on the emulator; returns gs://name."""
    name = f"fer-test-{abs(hash(request.node.nodeid)) % 10**8}"
    storage._client().create_bucket(name)
    return f"gs://{name}"


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A compact model trained for two short epochs on faces the test writes (for plumbing tests)."""
    import numpy as np

    from fer_core import train
    from tests.helpers import face_pattern

    home = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), 24)
    x = np.stack([face_pattern(int(k), rng) for k in y])
    s = load_settings(None, [f'home="{home}"', "train.epochs=2", "train.batch_size=32", "train.width=16",
                             "augment.enabled=false"], environ={})
    result = train.train(s, {"train": (x, y), "val": (x[::3], y[::3])}, home / "run")
    return result.model_path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 with a sqlite store and served artifacts; yields {"uri": URI}."""
    server = helpers.MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    try:
        yield {"uri": server.uri}
    finally:
        server.stop()
