"""`fer demo` end to end on a fresh home, and `fer models bootstrap`."""

import json
import subprocess

import numpy as np
import pytest

from fer_core import baseline, registry
from fer_core.config import load_settings
from tests import helpers

pytestmark = pytest.mark.slow


def test_bootstrap_registers_the_shipped_model_once(tmp_path):
    s = load_settings(None, [f'home="{tmp_path}"'], environ={})
    first = baseline.bootstrap(s)
    assert first["bootstrapped"] and first["champion"] == "1"
    v1 = registry.get_version(s, "1")
    assert v1.tags["baseline"] == "true" and v1.tags["promotion.by"] == "bootstrap"
    assert "fer2013_publictest_accuracy" in v1.metrics
    # the version carries the shipped TFLite form, so no worker converts it
    resolved = registry.resolve(f"models:/{s.registry.model_name}/1", s)
    assert resolved.tflite.read_bytes() == baseline.asset("baseline.tflite").read_bytes()
    again = baseline.bootstrap(s)
    assert not again["bootstrapped"] and len(registry.list_versions(s)) == 1


def test_the_shipped_tflite_is_the_shipped_keras_model():
    """baseline.tflite, read instead of converting (~15 s), is a conversion of baseline.keras as shipped now:
    its digest names this baseline.keras and both give the same probabilities."""
    from fer_core import models
    from fer_core.classify import Classifier, form_digest, keras_to_tflite

    keras_file = baseline.model_path()
    assert keras_file.with_suffix(".sha").read_text() == form_digest(keras_file)
    shipped = Classifier.from_file(keras_file)
    assert shipped.tflite == baseline.asset("baseline.tflite").read_bytes()
    fresh = Classifier(keras_to_tflite(models.load(str(keras_file))))
    faces = np.random.default_rng(0).integers(0, 256, (32, 48, 48), dtype=np.uint8)
    assert np.allclose(shipped.predict(faces), fresh.predict(faces), atol=1e-5)


def test_fer_demo_end_to_end(tmp_path):
    proc = subprocess.run(helpers.fer_cmd("demo"), capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "FER_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["seconds"] < 300
    assert out["bootstrap"]["bootstrapped"] and out["champion"] == "1"
    assert out["pipeline"]["decision"] in ("promote", "reject") and out["pipeline"]["reasons"]
    assert out["analysis"]["frames"] == 96 and out["analysis"]["faces"] > 48  # the portrait is found
    for key in ("analysis_timeline", "analysis_plot", "analysis_summary", "analysis_video"):
        assert (tmp_path / "home" / "demo" / "analysis").exists() and out["where"][key]
    assert "mlflow ui" in out["where"]["mlflow_ui"] and "Where everything is" in proc.stderr
