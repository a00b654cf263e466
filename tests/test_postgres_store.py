"""MLflow's production store: a real PostgreSQL on loopback behind a real `mlflow server`; the retraining
flow registers and promotes through it, and the registry lives in PostgreSQL's tables."""

import json
import subprocess

import pytest

from tests import helpers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def postgres():
    try:
        server = helpers.PostgresServer().start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


def test_pipeline_registers_and_promotes_through_mlflow_on_postgres(postgres, tmp_path):
    postgres.create_db("mlflow")
    mlflow = helpers.MlflowServer(tmp_path / "mlflow", backend_store=postgres.url("mlflow")).start(timeout=180)
    try:
        data = tmp_path / "raw"
        csv = helpers.write_fer2013_csv(data / "fer2013.csv", per_class=10, usage_counts={"PublicTest": 3})
        expw = helpers.write_expw(data / "expw", images_per_class=3)
        args = ["pipeline", "run", "--set", f"home={tmp_path / 'home'}", "--set", f"data.fer2013={csv}",
                "--set", f"data.expw={expw}", "--set", "train.epochs=1", "--set", "train.width=16",
                "--set", "train.batch_size=32", "--set", f"mlflow.tracking_uri={mlflow.uri}",
                "--set", "gate.min_class_recall=0", "--set", "registry.model_name=fer-pg"]
        proc = subprocess.run(helpers.fer_cmd(*args), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout)
        assert out["status"] == "promoted"
        mv = helpers.mlflow_client(mlflow.uri).get_model_version_by_alias("fer-pg", "champion")
        assert str(mv.version) == out["version"]
        # The alias and the version are rows in PostgreSQL, not in a file beside the server.
        assert postgres.query("mlflow", "select alias, version from registered_model_aliases "
                                        "where name = 'fer-pg'") == f"champion|{out['version']}"
        assert not (tmp_path / "mlflow" / "mlflow.db").exists()
    finally:
        mlflow.stop()
