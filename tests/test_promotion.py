"""Promote, rollback and registration on the embedded registry (MLflow on sqlite + local files)."""

import json

import mlflow
import pytest

from fer_core import models, promotion, registry, tracking


@pytest.fixture
def registered(settings_factory, tiny_model_path):
    """Three registered versions of the tiny model; returns the settings."""
    s = settings_factory("gate.min_class_recall=0")
    registry.ensure_experiment(s)
    model = models.load(str(tiny_model_path))
    for i in range(3):
        with mlflow.start_run() as run:
            info = mlflow.tensorflow.log_model(model, name="model", pip_requirements=tracking.model_requirements())
        registry.register(s, info.model_uri, {"metric.test_accuracy": 0.5 + i / 10, "n": i}, run_id=run.info.run_id)
    return s


def test_register_creates_versions_with_tags_in_one_call(registered):
    versions = registry.list_versions(registered)
    assert [v.version for v in versions] == ["3", "2", "1"]
    assert versions[0].metrics == {"test_accuracy": pytest.approx(0.7)} and versions[0].tags["n"] == "2"
    assert registry.find_version(registered, "n", "1").version == "2"
    assert registry.champion(registered) is None


def test_models_list_shows_each_versions_figures_and_a_dash_for_what_it_lacks(registered):
    from fer_cli.commands import version_table

    promotion.promote_manual(registered, "2")
    header, *rows = version_table(registry.list_versions(registered))
    assert header.split()[:5] == ["version", "aliases", "decision", "test", "PublicTest"]
    assert rows[1].split()[:4] == ["2", "champion", "-", "0.6000"]
    assert rows[1].split()[4:9] == ["-"] * 5  # no PublicTest, F1, ExpW, end-to-end or speed figures


def test_manual_promote_and_rollback_are_recorded(registered):
    s = registered
    assert promotion.promote_manual(s, "1")["changed"]
    out = promotion.promote_manual(s, "3")
    assert out == {"champion": "3", "alias": "champion", "previous": "1", "changed": True, "by": "manual"}
    v3 = registry.get_version(s, "3")
    assert v3.tags[promotion.BY] == "manual" and v3.tags[promotion.PREVIOUS] == "1"
    assert registry.champion(s).version == "3"
    back = promotion.rollback(s)
    assert back["champion"] == "1" and registry.champion(s).version == "1"
    assert registry.get_version(s, "3").tags["rollback.to"] == "1"
    assert registry.get_version(s, "1").tags[promotion.BY] == "rollback"
    with pytest.raises(registry.RegistryError, match="replaced no earlier champion"):
        promotion.rollback(s)
    with pytest.raises(registry.RegistryError, match="no version 9"):
        promotion.promote_manual(s, "9")


def test_gate_decision_moves_champion_or_challenger(registered):
    from fer_core.gate import Decision

    s = registered
    promotion.apply_decision(s, "2", Decision(False, ["FAIL x"]))
    assert registry.alias_version(s, "challenger").version == "2" and registry.champion(s) is None
    promotion.apply_decision(s, "2", Decision(True, ["PASS x"]))
    assert registry.champion(s).version == "2"
    assert registry.alias_version(s, "challenger") is None  # the promoted challenger is no longer one
    listed = {v.version: v.aliases for v in registry.list_versions(s)}
    assert listed == {"3": [], "2": ["champion"], "1": []}
    tags = promotion.decision_tags(Decision(True, ["PASS a", "PASS b"], champion_version="1"))
    assert tags["gate.decision"] == "promote" and json.loads(tags["gate.reasons"]) == ["PASS a", "PASS b"]


def test_champion_uri_is_cached_for_when_the_registry_is_down(registered, tmp_path):
    s = registered
    promotion.promote_manual(s, "2")
    uri = f"models:/{s.registry.model_name}@champion"
    first = registry.resolve(uri, s)
    assert first.version == "2" and first.path.suffix == ".keras"
    down = s.model_copy(update={"mlflow": s.mlflow.model_copy(update={"tracking_uri": "http://127.0.0.1:9"})})
    cached = registry.resolve(uri, down)
    assert cached.version == "2" and cached.extra.get("cached") and cached.path == first.path
    fresh = settings_copy_home(down, tmp_path / "other")
    with pytest.raises(registry.RegistryError):
        registry.resolve(uri, fresh)


def settings_copy_home(s, home):
    return s.model_copy(update={"home": str(home)})


def test_workers_get_the_tflite_form_from_the_registry(settings_factory):
    """The bootstrap (like the pipeline) logs model.tflite beside the model: a worker downloads it and
    converts nothing; the cache file it reads when the registry is down is written whole."""
    from fer_core import baseline

    s = settings_factory()
    baseline.bootstrap(s)
    resolved = registry.resolve("models:/fer-emotion@champion", s)
    assert resolved.tflite is not None and resolved.tflite.stat().st_size > 10_000
    clf = registry.load_classifier("models:/fer-emotion@champion", s)
    assert clf.version == "1" and clf.tflite == resolved.tflite.read_bytes()
    assert not (s.home_path / "cache" / "tflite").exists()  # nothing was converted here
    last_good = json.loads((registry.cache_dir(s) / "fer-emotion" / "last_good.json").read_text())
    assert last_good["version"] == "1"
    assert not list((registry.cache_dir(s) / "fer-emotion").glob(".*.tmp"))


def test_a_champion_of_unknown_data_is_compared_on_the_fixed_test_sets_only(registered):
    """Version 1's dataset is not here, so its training faces are unknown: the gate compares on FER2013's
    fixed test sets, which no dataset version trains on, and leaves the test split out, saying so."""
    import numpy as np

    from fer_core.classify import Classifier

    s = registered
    registry.set_tags(s, "1", {"dataset.version": "ds-gone"})
    promotion.promote_manual(s, "1")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (40, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, 40)
    sets = {"test": (faces, labels, np.array([f"fer2013/{i}" for i in range(40)])),
            "fer2013_publictest": (faces, labels, None)}
    candidate = Classifier.from_keras(models.load(str(registry.resolve("models:/fer-emotion/2", s).path)))
    decision = promotion.run_gate(s, candidate, 1.0, sets)
    assert set(decision.candidate) == set(decision.champion) == {"fer2013_publictest"}
    assert any("compared on fer2013_publictest only" in r and "left out: test" in r for r in decision.reasons)
