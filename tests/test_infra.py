"""Infrastructure checked as far as this machine allows: no Docker engine, no terraform providers."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from fer_core.config import load_settings
from serving.worker import Worker, WorkerOptions
from tests import helpers

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    return path


def test_compose_file_matches_the_compose_spec():
    proc = subprocess.run([helpers.venv_bin("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                           str(COMPOSE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_service_graph():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert set(services) == {"postgres", "mlflow", "prefect", "retrain", "worker", "prometheus", "grafana"}
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
        assert svc.get("restart") == "unless-stopped", name
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: image {image} is not pinned"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for key, value in (svc.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "TOKEN", "SECRET")):
                assert str(value).startswith("${"), f"{name}: {key} is a literal secret"
    assert "ports" not in services["postgres"]  # the database is never published
    # no cycles in depends_on
    graph = {n: set(s.get("depends_on", {})) for n, s in services.items()}
    seen: set[str] = set()
    while graph:
        free = [n for n, deps in graph.items() if deps <= seen]
        assert free, f"depends_on has a cycle among {sorted(graph)}"
        seen.update(free)
        for n in free:
            del graph[n]
    env_example = (ROOT / ".env.example").read_text()
    for var in re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()):
        assert f"{var}=" in env_example, f"{var} missing from .env.example"


def test_dockerfiles_are_slim_pinned_non_root_with_healthchecks():
    for name in ("pipeline.Dockerfile", "worker.Dockerfile"):
        text = (ROOT / "infra" / "docker" / name).read_text()
        assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", text, re.M), name
        assert re.search(r"^USER fer$", text, re.M) and "HEALTHCHECK" in text, name
    assert "opencv-python-headless" in (ROOT / "pyproject.toml").read_text()


def test_terraform_fmt():
    terraform = _need("terraform")
    proc = subprocess.run([terraform, "fmt", "-check", "-recursive", str(ROOT / "infra" / "terraform")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    variables = (ROOT / "infra" / "terraform" / "variables.tf").read_text()
    assert variables.count("variable ") == variables.count("description")


def test_shellcheck_every_script():
    shellcheck = _need("shellcheck")
    scripts = [ROOT / ".ci" / "run", *ROOT.glob("scripts/*.sh"), *ROOT.glob("infra/**/*.sh")]
    proc = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_systemd_unit_verifies(tmp_path):
    analyze = _need("systemd-analyze")
    unit = (ROOT / "infra" / "systemd" / "fer-worker.service").read_text()
    for directive in ("NoNewPrivileges=true", "ProtectSystem=strict", "PrivateTmp=true", "Restart=on-failure",
                      "User=fer", "EnvironmentFile=/etc/fer/worker.env", "StandardOutput=journal"):
        assert directive in unit
    # verify needs the ExecStart binary to exist: point it at one that does
    (tmp_path / "fer-worker.service").write_text(unit.replace("/opt/fer/venv/bin/fer", "/bin/true"))
    proc = subprocess.run([analyze, "verify", str(tmp_path / "fer-worker.service")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_prometheus_config():
    promtool = _need("promtool")
    proc = subprocess.run([promtool, "check", "config", str(ROOT / "infra" / "prometheus" / "prometheus.yml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.integration
def test_grafana_dashboard_queries_metrics_the_worker_exports(tiny_model_path, tmp_path):
    helpers.require_shared(helpers.VIDEO)
    dashboard = json.loads((ROOT / "infra" / "grafana" / "dashboards" / "fer-worker.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    wanted = {m for e in exprs for m in re.findall(r"\bfer_[a-z_]+", e)}
    assert {"fer_fps", "fer_stage_latency_ms_bucket", "fer_faces_total", "fer_emotions_total", "fer_model_info",
            "fer_model_reloads_total"} <= wanted
    port = helpers.free_port()
    worker = Worker(load_settings(None, [f'home="{tmp_path}"'], environ={}),
                    WorkerOptions(source=str(helpers.VIDEO), model_uri=str(tiny_model_path), http=f"127.0.0.1:{port}"))
    with helpers.worker_running(worker, port, min_frames=5, frame_delay_s=0.02):
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    exported = set(re.findall(r"^(fer_[a-z_]+)", text, re.M))
    assert wanted <= exported, f"dashboard queries missing metrics: {sorted(wanted - exported)}"


@pytest.mark.slow
@pytest.mark.integration
def test_startup_script_installs_and_runs_a_worker(tiny_model_path, tmp_path):
    helpers.require_shared(helpers.VIDEO)
    port = helpers.free_port()
    env = {**os.environ, "FER_SYSTEMD": "0", "FER_PREFIX": str(tmp_path / "opt"), "FER_STATE": str(tmp_path / "state"),
           "FER_ETC": str(tmp_path / "etc"), "FER_SRC": str(ROOT), "FER_SOURCE": str(helpers.VIDEO),
           "FER_HTTP_BIND": f"127.0.0.1:{port}", "FER_MODEL": str(tiny_model_path), "FER_HTTP_TOKEN": "t0ken",
           "PYTHON": shutil.which("python3") or "python3"}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(["bash", str(ROOT / "infra" / "vm" / "startup.sh")], env=env, capture_output=True,
                          text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pid = int((tmp_path / "state" / "worker.pid").read_text())
    try:
        deadline = time.time() + 120
        status = None
        while time.time() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
            except httpx.HTTPError:
                time.sleep(0.5)
        assert status == 200, (tmp_path / "state" / "worker.log").read_text()[-3000:]
        assert "FER_HTTP_TOKEN=t0ken" in (tmp_path / "etc" / "worker.env").read_text()
        assert (tmp_path / "opt" / "venv" / "bin" / "fer").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
