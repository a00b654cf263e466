"""A training run logs everything to a real MLflow server on loopback; W&B offline writes its run files."""

import json
import subprocess
from pathlib import Path

import mlflow
import pytest

from fer_core import registry, tracking
from fer_core.config import load_settings
from fer_core.data import dataset
from fer_core.labels import EMOTIONS
from tests import helpers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_training_run_logged_to_real_mlflow_server(settings_factory, small_data, mlflow_server, tmp_path):
    s = settings_factory(f'data.fer2013="{small_data["fer2013"]}"', f'data.expw="{small_data["expw"]}"',
                         f'mlflow.tracking_uri="{mlflow_server["uri"]}"', "train.epochs=2", "train.width=16",
                         "train.batch_size=32", "wandb.enabled=true", "wandb.mode=offline",
                         f'wandb.dir="{tmp_path / "wandb"}"')
    ds = dataset.build(s)
    run = tracking.train_and_log(s, ds, tmp_path / "run")
    client = helpers.mlflow_client(mlflow_server["uri"])
    r = client.get_run(run.run_id)
    assert r.data.params["train.model"] == "compact" and r.data.params["train.epochs"] == "2"
    assert r.data.tags["dataset.version"] == ds.version and len(r.data.tags["git_commit"]) >= 7
    history = client.get_metric_history(run.run_id, "val_categorical_accuracy")
    assert [m.step for m in history] == [0, 1]
    for key in ("categorical_accuracy", "loss", "val_loss"):
        assert len(client.get_metric_history(run.run_id, key)) == 2
    for key in ("test_accuracy", "test_macro_f1", "fer2013_publictest_accuracy", "faces_per_s", "single_face_ms",
                "fer2013_publictest_at_40px_accuracy", "fer2013_publictest_at_24px_accuracy"):
        assert key in r.data.metrics
    assert not any(key.startswith("test_at_") for key in r.data.metrics)  # only FER2013's sharp fixed sets
    assert r.inputs.dataset_inputs[0].dataset.name == ds.version
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"learning_curves.png", "confusion_test.png", "classification_report.json", "model_card.md",
            "model.tflite"} <= artifacts
    report = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run.run_id,
                                                                 artifact_path="classification_report.json",
                                                                 tracking_uri=mlflow_server["uri"])).read_text())
    assert report["test"]["n"] == sum(ds.stats["counts"]["test"].values())
    card = Path(mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path="model_card.md",
                                                    tracking_uri=mlflow_server["uri"])).read_text()
    low, high = report["test"]["accuracy_ci95"]
    assert low <= report["test"]["accuracy"] <= high
    assert f"| test | {report['test']['n']} | {report['test']['accuracy']:.4f} | {low:.3f}-{high:.3f} |" in card
    small = report["fer2013_publictest_at_24px"]
    assert small["n"] == report["fer2013_publictest"]["n"] and small["loss"] != report["fer2013_publictest"]["loss"]
    assert f"| fer2013_publictest_at_24px | {small['n']} | {small['accuracy']:.4f} |" in card
    assert "`<set>_at_<N>px`" in card
    wild = report["expw_test"]["per_class"]
    worst = sorted((pc["recall"], name) for name, pc in wild.items() if pc["support"])[0][1]
    assert "Per class on expw_test:" in card
    assert f"- In-the-wild faces (the test split's ExpW faces): the lowest recall there is {worst} " \
           f"{wild[worst]['recall']:.2f}" in card
    # a montage of each held-out set's misread faces per true emotion, one for each emotion the confusion says
    for name in ds.eval_sets():
        wrong = {e for e, r in zip(EMOTIONS, report[name]["confusion"], strict=True) if sum(r) > r[EMOTIONS.index(e)]}
        shown = {Path(a.path).stem for a in client.list_artifacts(run.run_id, f"misread/{name}")}
        assert wrong and shown == wrong, name
    # the logged model carries a signature and an input example, and reloads through our loader
    info = mlflow.models.get_model_info(run.model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    version = registry.register(s, run.model_uri, {"dataset.version": ds.version})
    clf = registry.load_classifier(f"models:/{s.registry.model_name}/{version.version}", s)
    assert clf.predict(ds.splits["test"][0][:3]).shape == (3, 7)
    # W&B offline wrote a run folder with the same run name
    runs = list((tmp_path / "wandb").rglob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())


def test_cli_train_logs_an_experiment_without_registering(small_data, tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run(helpers.fer_cmd("train", "--name", "exp1", "--set", f'home="{home}"',
                                          "--set", f'data.fer2013="{small_data["fer2013"]}"',
                                          "--set", f'data.expw="{small_data["expw"]}"', "--set", "train.epochs=1",
                                          "--set", "train.width=16", "--set", "train.batch_size=32"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["run_name"] == "exp1" and out["epochs_run"] == 1 and out["images_seen"] > 0
    assert {"test", "fer2013_publictest", "expw_test"} <= set(out["metrics"])
    s = load_settings(None, [f'home="{home}"'], environ={})
    client = helpers.mlflow_client(s.tracking_uri)
    run = client.get_run(out["run_id"])
    assert run.data.metrics["expw_test_accuracy"] == out["metrics"]["expw_test"]["accuracy"]
    assert registry.list_versions(s) == []  # an experiment registers nothing


def test_runs_logging_one_new_dataset_at_once_all_link_it(tmp_path):
    """MLflow checks for the dataset's row, then inserts it: runs racing on one new dataset (a sweep's trials)
    collide on the unique key. Six threads at a barrier, five times over, reproduce it on sqlite (without
    the retry most rounds fail); every run must end up linked to the one row."""
    import threading

    import numpy as np

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("race")
        errors: list[str] = []
        for round_ in range(5):
            ds = dataset.Dataset(version=f"ds-race{round_:07d}", path=str(tmp_path / f"ds{round_}"), stats={},
                                 splits={"train": (np.zeros((8, 48, 48), np.uint8), np.arange(8) % 7)})
            runs = [client.create_run(experiment).info.run_id for _ in range(6)]
            barrier = threading.Barrier(len(runs))

            def log(run_id: str, ds=ds, barrier=barrier) -> None:
                barrier.wait()
                try:
                    tracking.log_dataset(ds, run_id)
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

            threads = [threading.Thread(target=log, args=(r,)) for r in runs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for r in runs:
                names = [d.dataset.name for d in client.get_run(r).inputs.dataset_inputs]
                assert names == [ds.version], (r, names, errors)
        assert errors == []
    finally:
        mlflow.set_tracking_uri(None)
