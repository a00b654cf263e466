"""The retraining pipeline against a real `prefect server` and a real `mlflow server` on 127.0.0.1,
on a small real subset of ../shared/data; the MLflow server is stopped in the middle of a run."""

import json
import os
import subprocess
import threading
import time

import httpx
import pytest

from tests import helpers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def real():
    helpers.require_shared(helpers.FER2013_CSV, helpers.EXPW_ROOT)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    port = helpers.free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([helpers.venv_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (home / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        yield api
    finally:
        helpers.stop_process(proc)
        log.close()


def _run(api: str, home, mlflow_uri: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "WARNING"}
    args = ["pipeline", "run", "--set", f"home={home}", "--set", f"data.fer2013={helpers.FER2013_CSV}",
            "--set", f"data.expw={helpers.EXPW_ROOT}", "--set", "data.limit=400", "--set", "train.epochs=1",
            "--set", "train.width=16", "--set", "train.batch_size=32", "--set", f"mlflow.tracking_uri={mlflow_uri}",
            "--set", "gate.min_class_recall=0", "--set", "pipeline.retry_delay_s=2", *extra]
    return subprocess.run(helpers.fer_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout)


def _json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("{"), proc.stdout[:500]
    return json.loads(proc.stdout)


def _flow_runs(api: str) -> list[dict]:
    return httpx.post(f"{api}/flow_runs/filter", json={"limit": 50}, timeout=10).json()


def test_retrain_on_real_servers_registers_caches_and_skips(real, prefect_server, mlflow_server, tmp_path):
    uri = mlflow_server["uri"]
    own = ("--set", "registry.model_name=fer-servers")  # the session's MLflow server is shared with other tests
    first = _run(prefect_server, tmp_path / "home", uri, *own, "--set", "gate.min_accuracy=0.999")
    out1 = _json(first)
    assert out1["status"] == "rejected" and not out1["train_reused"]
    second = _run(prefect_server, tmp_path / "home", uri, *own)
    out2 = _json(second)
    assert out2["dataset_reused"] and out2["train_reused"] and out2["version_reused"]
    assert out2["status"] == "promoted" and out2["version"] == out1["version"]
    client = helpers.mlflow_client(uri)
    mv = client.get_model_version_by_alias("fer-servers", "champion")
    assert str(mv.version) == out2["version"]
    assert mv.tags["gate.decision"] == "promote" and mv.tags["dataset.version"] == out1["dataset"]
    assert float(mv.tags["metric.test_accuracy"]) == out2["metrics"]["test"]["accuracy"]
    # the end-to-end figures the reused run logged reach the version's tags under the same names
    logged = client.get_run(mv.run_id).data.metrics
    assert 0 <= logged["expw_test_e2e_detection_recall"] <= 1
    for key in ("accuracy", "detection_recall", "accuracy_on_found"):
        assert float(mv.tags[f"metric.expw_test_e2e_{key}"]) == logged[f"expw_test_e2e_{key}"]
    third = _run(prefect_server, tmp_path / "home", uri, *own)
    assert _json(third)["status"] == "skipped"
    runs = [r for r in _flow_runs(prefect_server) if r["name"] and r["state_type"] == "COMPLETED"]
    assert len(runs) >= 3
    artifacts = httpx.post(f"{prefect_server}/artifacts/filter", json={"limit": 20}, timeout=10).json()
    assert any(a["key"] == "fer-retrain-summary" and "Gate" in (a["data"] or "") for a in artifacts)


def _stop_mlflow_after_training(server: helpers.MlflowServer, restart_after: float | None) -> threading.Thread:
    """Stop the server as soon as a training run has finished; optionally start it again later."""

    def watch():
        client = helpers.mlflow_client(server.uri)
        deadline = time.time() + 400
        while time.time() < deadline:
            try:
                exps = client.search_experiments()
                if client.search_runs([e.experiment_id for e in exps], "attributes.status = 'FINISHED'"):
                    break
            except Exception:  # noqa: BLE001 - server still starting
                pass
            time.sleep(0.2)
        server.stop()
        if restart_after is not None:
            time.sleep(restart_after)
            server.start()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("restart_after", [3.0, None], ids=["recovers", "fails-clearly"])
def test_mlflow_stopped_mid_run(real, prefect_server, tmp_path, restart_after):
    server = helpers.MlflowServer(tmp_path / "mlflow").start()
    try:
        watcher = _stop_mlflow_after_training(server, restart_after)
        # retries back off 2, 4, 8 ... s: six give a restarting server two minutes to come back
        retries = "6" if restart_after is not None else "3"
        proc = _run(prefect_server, tmp_path / "home", server.uri, "--set", f"pipeline.retries={retries}")
        watcher.join(60)
        if server.proc is None:
            server.start()  # to inspect what the failed run left behind
        client = helpers.mlflow_client(server.uri)
        versions = client.search_model_versions("name='fer-emotion'")
        if proc.returncode == 0:
            out = _json(proc)
            assert out["status"] == "promoted"
            assert [str(v.version) for v in versions] == [out["version"]]
            assert str(client.get_model_version_by_alias("fer-emotion", "champion").version) == out["version"]
        else:
            assert restart_after is None, proc.stderr[-3000:]
            assert "Traceback" not in proc.stderr.splitlines()[-1]
            assert "fer: error" in proc.stderr or "Flow run" in proc.stderr or "failed" in proc.stderr.lower()
        for v in versions:  # never a half-registered version
            assert v.tags.get("gate.decision") and v.tags.get("dataset.version")
        if restart_after is None:
            try:
                alias = client.get_model_version_by_alias("fer-emotion", "champion").version
            except Exception:  # noqa: BLE001 - no alias at all
                alias = None
            registered = {str(v.version) for v in versions}
            assert alias is None or str(alias) in registered
    finally:
        server.stop()


def test_pipeline_serve_creates_the_cron_deployment(prefect_server, tmp_path):
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen(helpers.fer_cmd("pipeline", "serve", "--set", f"home={tmp_path / 'home'}", "--set",
                                            "pipeline.cron=15 4 * * 2"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 120
        found = None
        while time.time() < deadline and found is None:
            deps = httpx.post(f"{prefect_server}/deployments/filter", json={"limit": 20}, timeout=10).json()
            found = next((d for d in deps if d["name"] == "fer-retrain-weekly"), None)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(1)
        assert found is not None
        crons = [s["schedule"].get("cron") for s in found["schedules"]]
        assert crons == ["15 4 * * 2"]
    finally:
        helpers.stop_process(proc)


def test_scheduled_runner_answers_the_compose_health_check(prefect_server, tmp_path):
    """`fer pipeline serve` with the compose service's runner settings: the runner's /health answers (what
    the retrain container's health check probes) and the cron deployment is on the Prefect server."""
    port = helpers.free_port()
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_RUNNER_SERVER_ENABLE": "true",
           "PREFECT_RUNNER_SERVER_HOST": "127.0.0.1", "PREFECT_RUNNER_SERVER_PORT": str(port)}
    proc = subprocess.Popen(helpers.fer_cmd("pipeline", "serve", "--set", f"home={tmp_path / 'home'}",
                                            "--set", "pipeline.deployment_name=fer-health-check"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        helpers.wait_for_port(port, proc, timeout=120)
        # Prefect's runner answers 500 until its first poll of the API (its last_polled is still None), so
        # the compose health check retries (every 30 s, 5 times); so does this, for at most a minute.
        deadline, status = time.time() + 60, 0
        while status != 200 and time.time() < deadline:
            status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code
            time.sleep(0 if status == 200 else 1)
        assert status == 200
        deployments = httpx.post(f"{prefect_server}/deployments/filter", json={"limit": 50}, timeout=10).json()
        ours = [d for d in deployments if d["name"] == "fer-health-check"]
        assert ours and ours[0]["schedules"][0]["schedule"]["cron"] == "0 3 * * 1"
    finally:
        helpers.stop_process(proc)
