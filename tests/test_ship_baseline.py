"""scripts/ship_baseline.py: where the record of how each shipped network was trained comes from."""

import json

import pytest

from fer_core import registry
from fer_core.config import load_settings
from tests.helpers import load_script


@pytest.fixture(scope="module")
def ship():
    return load_script("scripts/ship_baseline.py")


@pytest.fixture()
def old_baseline(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"training": [
        {"command": "fer train --set train.seed=0", "run_id": "first", "metrics": {"epochs_run": 40}},
        {"command": "fer train --set train.seed=1", "run_id": "second", "metrics": {"epochs_run": 30}},
    ]}))
    return path


def test_a_record_of_an_earlier_baseline_is_picked_by_its_index(ship, old_baseline):
    assert ship.training_record(f"{old_baseline}#1")["run_id"] == "second"
    first = ship.training_record(f"{old_baseline}#0")
    assert (first["run_id"], first["command"]) == ("first", "fer train --set train.seed=0")
    assert ship.training_record(f"{old_baseline}#0", "a new command line")["command"] == "a new command line"


@pytest.mark.parametrize("index", ["2", "x", ""])
def test_a_missing_record_is_a_clear_error(ship, old_baseline, index):
    with pytest.raises(SystemExit, match="has 2 training record"):
        ship.training_record(f"{old_baseline}#{index}")


def test_a_run_is_read_from_its_mlflow_home(ship, tmp_path):
    import mlflow

    home = tmp_path / "home"
    registry.configure(load_settings(None, [f'home="{home}"'], environ={}))
    mlflow.set_experiment("members")  # not the experiment an earlier test of this process made active elsewhere
    with mlflow.start_run(run_name="member") as run:
        mlflow.log_params({"train.seed": 31, "train.epochs": 90, "not.kept": "x"})
        mlflow.log_metrics({"epochs_run": 90, "train_seconds": 600.0})
        mlflow.set_tag("git_commit", "abc123")
    try:
        record = ship.training_record(f"{home}:{run.info.run_id}", "fer train ...")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert record["command"] == "fer train ..."
    assert (record["run_id"], record["run_name"], record["git_commit"]) == (run.info.run_id, "member", "abc123")
    assert record["params"] == {"train.seed": "31", "train.epochs": "90"}
    assert record["metrics"] == {"epochs_run": 90.0, "train_seconds": 600.0}
    with pytest.raises(SystemExit, match="expected HOME:RUN_ID"):
        ship.training_record("no-colon-here")
