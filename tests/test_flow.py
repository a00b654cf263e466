"""The retraining flow in-process under prefect_test_harness: promote, skip when unchanged, reuse work."""

import pytest
from prefect.testing.utilities import prefect_test_harness

from fer_core import registry
from fer_core.config import load_settings
from flows.retrain import retrain, summary_markdown

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=180):
        yield


def _overrides(tmp_path, data, *extra):
    """A fresh embedded home; its registry starts empty (registry.bootstrap=false), so that these tests follow
    the flow from its very first version (the shipped baseline's part: the test right after)."""
    return [f'home="{tmp_path / "home"}"', f'data.fer2013="{data["fer2013"]}"', f'data.expw="{data["expw"]}"',
            "train.epochs=1", "train.width=16", "train.batch_size=32", "gate.min_class_recall=0",
            "pipeline.retry_delay_s=0.1", "registry.bootstrap=false", *extra]


def test_a_fresh_home_gates_its_first_candidate_against_the_shipped_baseline(harness, small_data, tmp_path):
    """The embedded registry serves the shipped baseline when it has no champion, so its first candidate must beat
    the baseline, not only the floors (a margin no model meets shows which applied: floors alone would promote)."""
    ov = [o for o in _overrides(tmp_path, small_data, "gate.min_accuracy_gain=1.0") if o != "registry.bootstrap=false"]
    first = retrain(None, ov)
    s = load_settings(None, ov, environ={})
    assert registry.get_version(s, "1").tags["baseline"] == "true"
    assert first["decision"]["champion_version"] == "1" and first["version"]["version"] == "2"
    assert first["status"] == "rejected" and registry.champion(s).version == "1"
    assert any("vs champion" in r for r in first["decision"]["reasons"])
    # the baseline's dataset is not here, so its test split was left out of the comparison; the candidate's
    # version still carries its own test-split figures (what `fer models list` shows beside its dataset)
    assert "test" not in first["decision"]["candidate"] and "test_accuracy" in registry.get_version(s, "2").metrics
    # a shared registry (a tracking server's) is never written to: there the first candidate meets the floors
    shared = load_settings(None, [*ov, f'mlflow.tracking_uri="sqlite:///{tmp_path / "shared.db"}"'], environ={})
    from fer_core import baseline

    assert baseline.ensure_champion(shared) is None and registry.champion(shared) is None


def test_flow_promotes_then_skips_then_gates_a_changed_run(harness, small_data, tmp_path, caplog):
    ov = _overrides(tmp_path, small_data)
    with caplog.at_level("WARNING", logger="fer_core.registry"):
        first = retrain(None, ov)
    assert first["status"] == "promoted" and first["version"]["version"] == "1"
    # the gate reads the candidate's TFLite form from its training run instead of converting it again
    assert not [r for r in caplog.records if "converting the Keras model" in r.getMessage()]
    s = load_settings(None, ov, environ={})
    champ = registry.champion(s)
    assert champ.version == "1"
    for tag in ("dataset.version", "dataset.fingerprint", "config_hash", "git_commit", "train_key", "gate.decision",
                "gate.reasons", "run_id"):
        assert champ.tags.get(tag), tag
    assert champ.tags["gate.decision"] == "promote" and "test_accuracy" in champ.metrics
    assert "INFO no champion yet" in champ.tags["gate.reasons"]

    second = retrain(None, ov)
    assert second["status"] == "skipped" and second["reason"].startswith("nothing changed: champion version 1")

    changed = retrain(None, [*ov, "train.seed=7"])
    assert changed["status"] in ("promoted", "rejected") and changed["version"]["version"] == "2"
    assert changed["decision"]["champion_version"] == "1" and "test" in changed["decision"]["champion"]
    assert any("vs champion" in r for r in changed["decision"]["reasons"])
    v2 = registry.get_version(s, "2")
    assert v2.tags["gate.decision"] == changed["decision"]["verdict"]
    expected_champion = "2" if changed["status"] == "promoted" else "1"
    assert registry.champion(s).version == expected_champion
    md = summary_markdown(changed)
    assert "## Gate:" in md and "| test |" in md


def test_rerun_reuses_finished_work_and_says_so(harness, small_data, tmp_path):
    strict = _overrides(tmp_path, small_data, "gate.min_accuracy=0.999")
    first = retrain(None, strict)
    assert first["status"] == "rejected" and first["aliases"]["challenger"] == "1"
    assert not first["dataset"]["reused"] and not first["train"]["reused"]
    relaxed = _overrides(tmp_path, small_data)  # gate settings do not change the work, only the decision
    second = retrain(None, relaxed)
    assert second["dataset"]["reused"] and second["train"]["reused"] and second["version"]["reused"]
    assert second["train"]["run_id"] == first["train"]["run_id"] and second["version"]["version"] == "1"
    assert second["status"] == "promoted"
    s = load_settings(None, relaxed, environ={})
    assert registry.champion(s).version == "1" and registry.get_version(s, "1").tags["gate.decision"] == "promote"
    assert registry.alias_version(s, "challenger") is None


def test_gate_compares_on_faces_neither_model_trained_on(harness, small_data, tmp_path):
    """The champion trained on a dataset split with another seed, so some of today's test faces were in its
    training set: the gate leaves those out for both models, pairs them on the rest and records it all."""
    import json

    import pandas as pd

    from fer_core.data import dataset

    first = retrain(None, _overrides(tmp_path, small_data, "split.seed=7"))
    assert first["status"] == "promoted"
    second = retrain(None, _overrides(tmp_path, small_data))
    d = second["decision"]
    s = load_settings(None, _overrides(tmp_path, small_data), environ={})
    old = pd.read_csv(f"{dataset.resolve(first['dataset']['version'], s)}/manifest.csv")
    new = pd.read_csv(f"{dataset.resolve(second['dataset']['version'], s)}/manifest.csv")
    seen = set(old[old.split.isin(["train", "val"])].image)
    test = new[new.split == "test"]
    fresh = (~test.image.isin(seen)).sum()
    assert 0 < fresh < len(test)
    assert d["candidate"]["test"]["n"] == d["champion"]["test"]["n"] == fresh
    assert f"INFO test: {len(test) - fresh} of {len(test)} faces left out, champion 1 trained on them" in d["reasons"]
    assert any(r.startswith(("PASS all sets", "FAIL all sets")) for r in d["reasons"])
    paired = json.loads(registry.get_version(s, second["version"]["version"]).tags["gate.paired"])
    assert paired["test"]["n"] == fresh and {"b", "c", "p_better", "p_worse"} <= set(paired["test"])


def test_deterministic_failures_are_not_retried(harness, small_data, tmp_path):
    """A reject ratio over the limit fails the build at once (one run of the task, no retry); a failed read
    or an unreachable server would be retried (`storage.is_transient`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    from fer_core import storage
    from fer_core.data.table import DataQualityError
    from fer_core.registry import RegistryUnavailable
    from tests import helpers

    csv = helpers.write_fer2013_csv(tmp_path / "bad.csv", per_class=4, extra_lines=["3,1 2 3,Training"] * 10)
    with pytest.raises(DataQualityError):
        retrain(None, _overrides(tmp_path, {**small_data, "fer2013": csv}, "data.max_reject_ratio=0.01",
                                 "pipeline.retries=3"))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="build dataset")))
    assert runs and max(r.run_count for r in runs) == 1
    assert storage.is_transient(storage.StorageError("cannot read gs://b/x.jpg (after retries)"))
    assert storage.is_transient(RegistryUnavailable("cannot reach"))
    assert not storage.is_transient(storage.NotFoundError("not found: x"))
    assert not storage.is_transient(DataQualityError("too many rejects"))
    assert not storage.is_transient(ValueError("bad setting"))


def test_analysis_alias_is_gated_like_the_champion_and_preferred_offline(harness, small_data, tmp_path):
    """`fer pipeline run --alias analysis` gates against and promotes to the analysis alias, leaving the
    champion alone; fer predict then uses the analysis model, the worker's default stays the champion."""
    import json
    import subprocess

    from tests import helpers

    ov = _overrides(tmp_path, small_data)
    assert retrain(None, ov)["status"] == "promoted"
    s = load_settings(None, ov, environ={})
    args = [arg for o in [*ov, "train.seed=7"] for arg in ("--set", o)]

    def analysis_run(*extra: str) -> dict:
        proc = subprocess.run(helpers.fer_cmd("pipeline", "run", "--alias", "analysis", *args, *extra),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    # the first analysis model is gated against the champion, the model fer predict uses without one (a margin
    # no model meets keeps it out: on this tiny data a candidate can beat the champion by chance on some CPUs)
    first = analysis_run("--set", "gate.min_accuracy_gain=1.0")
    assert first["status"] == "rejected" and first["champion_before"] == "1"
    assert any("compared with champion version 1" in r for r in first["reasons"])
    # an offline model's speed budget is batched throughput (gate.analysis_*), not one face's latency
    assert any(r.startswith("PASS batched throughput") and "vs floor 200 faces/s" in r for r in first["reasons"])
    assert not any("single-face latency" in r for r in first["reasons"]), first["reasons"]
    # compared with nothing (and the default margin), the same candidate passes
    out = analysis_run("--set", 'gate.compare_first_with=""')
    assert out["champion_before"] is None and out["version"] == "2" and out["status"] == "promoted", out
    assert out["aliases"]["alias"] == "analysis" and out["aliases"]["champion"] == "2"  # the alias it moved
    assert out["through_detector"]["detection_recall"] >= 0 and out["through_detector"]["unmatched_boxes"] >= 0
    assert registry.alias_version(s, "analysis").version == "2" and registry.champion(s).version == "1"
    # a second analysis candidate is compared with the analysis model, not with the champion
    again = retrain(None, [*ov, "train.seed=8", 'registry.champion_alias="analysis"',
                           'registry.challenger_alias="analysis-challenger"'])
    assert again["decision"]["champion_version"] == "2"
    import matplotlib.cbook

    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    predict = subprocess.run(helpers.fer_cmd("predict", str(photo), *args[:2]), capture_output=True, text=True,
                             timeout=300)
    assert predict.returncode == 0, predict.stderr[-2000:]
    assert json.loads(predict.stdout)["model_version"] == registry.alias_version(s, "analysis").version
