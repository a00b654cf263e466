"""Infrastructure checked as far as this machine allows: no Docker engine, no terraform providers."""

import json
import re
import shlex
import shutil
import subprocess
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


def _expand(text: str) -> str:
    """Compose variables at their defaults; required ones (`${X:?msg}`) get a placeholder."""
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), text)
    return re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: f"<{m.group(1)}>", text)


def _argv(value) -> list[str]:
    if value is None:
        return []
    return [_expand(str(v)) for v in value] if isinstance(value, list) else shlex.split(_expand(value))


def _dockerfile_instr(dockerfile: Path, name: str) -> list[str] | None:
    found = re.findall(rf"^{name} (.+)$", dockerfile.read_text(), re.M)
    return json.loads(found[-1]) if found else None


def _effective_commands() -> dict[str, tuple[list[str], Path | None]]:
    """Each service's command as the container runs it: entrypoint + command, as Docker combines them."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    built = {svc["image"]: ROOT / svc["build"]["dockerfile"] for svc in services.values() if "build" in svc}
    out = {}
    for name, svc in services.items():
        dockerfile = built.get(svc["image"])
        entry = _argv(svc["entrypoint"]) if "entrypoint" in svc else (
            _dockerfile_instr(dockerfile, "ENTRYPOINT") or [] if dockerfile else [])
        cmd = _argv(svc["command"]) if "command" in svc else (
            _dockerfile_instr(dockerfile, "CMD") or [] if dockerfile else [])
        out[name] = (entry + cmd, dockerfile)
    return out


def test_every_services_effective_command_parses():
    """Our images' commands run with --help in the project's own environment: `fer fer serve` would fail."""
    commands = _effective_commands()
    ours = {name: argv for name, (argv, dockerfile) in commands.items() if dockerfile is not None}
    assert set(ours) == {"mlflow", "retrain", "worker"}
    for name, argv in ours.items():
        assert argv and Path(helpers.venv_bin(argv[0])).exists(), f"{name}: {argv} is not a project command"
        proc = subprocess.run([helpers.venv_bin(argv[0]), *argv[1:], "--help"], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, f"{name}: {' '.join(argv)} --help failed: {proc.stderr[-1500:]}"
    worker_default = _dockerfile_instr(ROOT / "infra" / "docker" / "worker.Dockerfile", "CMD")
    proc = subprocess.run([helpers.venv_bin(worker_default[0]), *worker_default[1:], "--help"], capture_output=True)
    assert proc.returncode == 0, "the worker image's default command does not parse"


def test_named_volumes_belong_to_the_images_user():
    """A named volume starts as a copy of the image's folder: our images create theirs owned by fer."""
    spec = yaml.safe_load(COMPOSE.read_text())
    for name, (_, dockerfile) in _effective_commands().items():
        if dockerfile is None:
            continue
        text = dockerfile.read_text()
        for mount in spec["services"][name].get("volumes", []):
            volume, target = str(mount).split(":")[:2]
            if volume in spec["volumes"]:
                assert re.search(rf"^RUN mkdir -p .*{re.escape(target)}\b.*chown fer:fer .*{re.escape(target)}\b",
                                 text, re.M), f"{name}: {target} would be a root-owned volume"


def test_retrain_health_check_probes_its_own_runner():
    retrain = yaml.safe_load(COMPOSE.read_text())["services"]["retrain"]
    env = retrain["environment"]
    assert env["PREFECT_RUNNER_SERVER_ENABLE"] == "true"
    probe = " ".join(retrain["healthcheck"]["test"])
    assert f"127.0.0.1:{env['PREFECT_RUNNER_SERVER_PORT']}/health" in probe and "prefect:4200" not in probe


def test_vertex_ai_deployment_matches_prefect_gcp_job_variables():
    """The GPU deployment's job variables validate against prefect-gcp's Vertex AI worker schema (with
    Prefect's templates filled), and its image installs the lock's TensorFlow release with CUDA."""
    import jsonschema
    from prefect_gcp.workers.vertex import VertexAIWorker

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    gpu = next(d for d in spec["deployments"] if d["name"] == "fer-retrain-gpu")
    assert gpu["entrypoint"] == "flows/retrain.py:retrain"
    variables = VertexAIWorker.get_default_base_job_template()["variables"]
    filled = json.loads(re.sub(r"\{\{ \$(\w+) \}\}", lambda m: f"value-of-{m.group(1)}",
                               json.dumps(gpu["work_pool"]["job_variables"])))
    jsonschema.validate(filled, {**variables, "additionalProperties": False})
    assert filled["accelerator_count"] >= 1 and filled["accelerator_type"].startswith("NVIDIA_")
    from flows.retrain import retrain

    retrain.validate_parameters(gpu["parameters"])  # the flow takes exactly these parameters
    dockerfile = (ROOT / "infra" / "docker" / "pipeline-gpu.Dockerfile").read_text()
    tf = re.search(r"^tensorflow-cpu==([\d.]+)", (ROOT / "requirements.lock").read_text(), re.M).group(1)
    assert f"ARG TF_VERSION={tf}" in dockerfile and '"tensorflow[and-cuda]==${TF_VERSION}"' in dockerfile


def test_dockerfiles_are_slim_pinned_non_root_with_healthchecks():
    for name in ("pipeline.Dockerfile", "pipeline-gpu.Dockerfile", "worker.Dockerfile"):
        text = (ROOT / "infra" / "docker" / name).read_text()
        assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", text, re.M), name
        assert re.search(r"^USER fer$", text, re.M) and "HEALTHCHECK" in text, name
        # the lock names every dependency: nothing to resolve (old pips resolve extras wrongly), pip check after
        assert "pip install --no-deps --require-hashes -r requirements.lock && pip check && pip install --no-deps ." \
            in text, name
    assert "opencv-python-headless" in (ROOT / "pyproject.toml").read_text()


def test_every_install_reads_the_lock_file():
    """setup.sh, the images and the VM install exactly the locked versions; the lock pins every dependency
    of pyproject.toml, and Keras at a release without the known safe_mode bypasses."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", (ROOT / "requirements.lock").read_text(), re.M))
    locked = {name.lower().replace("_", "-"): version for name, version in locked.items()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["postgres"]:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate():
            assert req.name.lower() in locked, f"{req.name} is not in requirements.lock (run scripts/lock.sh)"
            assert req.specifier.contains(locked[req.name.lower()]), f"{req.name}=={locked[req.name.lower()]} vs {spec}"
    assert Version(locked["keras"]) >= Version("3.14")
    assert "--require-hashes -r requirements-dev.lock" in (ROOT / "scripts" / "setup.sh").read_text()
    startup = (ROOT / "infra" / "vm" / "startup.sh").read_text()
    assert '--no-deps --require-hashes -r "$FER_PREFIX/src/requirements.lock"' in startup and "pip\" check" in startup
    assert "--hash=sha256:" in (ROOT / "requirements.lock").read_text()


def test_terraform_fmt():
    terraform = _need("terraform")
    proc = subprocess.run([terraform, "fmt", "-check", "-recursive", str(ROOT / "infra" / "terraform")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    variables = (ROOT / "infra" / "terraform" / "variables.tf").read_text()
    assert variables.count("variable ") == variables.count("description")


def test_shellcheck_every_script():
    shellcheck = _need("shellcheck")
    scripts = [ROOT / ".ci" / "run", *ROOT.glob("scripts/*.sh"), *ROOT.glob("infra/**/*.sh"), *ROOT.glob("tools/*.sh"),
               *ROOT.glob("experiments/*.sh")]
    assert len(scripts) >= 5
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


def test_fleet_discovery_config_and_template_metadata(tmp_path):
    """The fleet's Prometheus config (GCE service discovery) passes `promtool check config`; the instance
    template passes the very metadata keys the start-up script reads (tests/test_vm.py runs that script on
    Debian 12 with the same settings); cameras become per-instance `fer-source` metadata; the group heals
    on /healthz; discovered instances get the camera label from the per-instance names."""
    promtool = _need("promtool")
    prom = ROOT / "infra" / "prometheus"
    token = tmp_path / "token"
    token.write_text("t0ken")
    config = (prom / "prometheus-gce.yml").read_text().replace("/etc/prometheus/fer-worker-token", str(token))
    (tmp_path / "prometheus-gce.yml").write_text(config)
    shutil.copy(prom / "alerts.yml", tmp_path / "alerts.yml")
    proc = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus-gce.yml")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fleet = (ROOT / "infra" / "terraform" / "fleet.tf").read_text()
    main = (ROOT / "infra" / "terraform" / "main.tf").read_text()
    shared = main[main.index("worker_metadata = {"):main.index("\n  }", main.index("worker_metadata = {"))]
    keys = set(re.findall(r"^\s+(fer-[a-z-]+)\s+=", shared, re.M))
    read = set(re.findall(r"\$\(meta (fer-[a-z-]+)\)", (ROOT / "infra" / "vm" / "startup.sh").read_text()))
    assert keys == read == {"fer-src", "fer-source", "fer-http-bind", "fer-tracking-uri", "fer-http-token"}
    assert 'worker_image = "debian-cloud/debian-12"' in main
    template = fleet[fleet.index('resource "google_compute_instance_template"'):fleet.index("lifecycle {")]
    assert "source_image = local.worker_image" in template and "merge(local.worker_metadata" in template
    assert "startup-script" in template and "metadata                = local.worker_metadata" in main
    assert re.search(r"preserved_state \{\s+metadata = \{\s+fer-source = each.value", fleet)
    assert 'request_path = "/healthz"' in fleet and "auto_healing_policies" in fleet
    name = re.search(r'name\s+= "\$\{var.name\}-cam-\$\{each.key\}"', fleet)
    assert name, "per-instance names carry the camera"
    spec = yaml.safe_load(config)
    relabel = next(r for r in spec["scrape_configs"][0]["relabel_configs"] if r.get("target_label") == "camera")
    assert re.fullmatch(relabel["regex"], "fer-cam-lobby").group(1) == "lobby"


def test_alert_rules_fire_on_a_stalled_worker_and_failed_reloads():
    """`promtool check rules`, and `promtool test rules`: the rules fire on series that stall or fail."""
    promtool = _need("promtool")
    prom = ROOT / "infra" / "prometheus"
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        proc = subprocess.run([promtool, *args], cwd=prom, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = set(re.findall(r"alertname: (\w+)", (prom / "alerts_test.yml").read_text()))
    assert tested == set(re.findall(r"alert: (\w+)", (prom / "alerts.yml").read_text()))


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
