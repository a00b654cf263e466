"""Small data sets the tests write themselves, in the real FER2013 and ExpW formats."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FER2013_CSV = SHARED / "fer2013" / "fer2013.csv.gz"
EXPW_ROOT = SHARED / "expw"
VIDEO = SHARED / "videos" / "faces_596x336.mp4"


def load_script(relative: str):
    """A script of the repository (`tools/`, `scripts/`: not a package) imported as a module, to test its parts."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_missing(*paths: Path) -> str | None:
    """A skip reason when the real data beside the checkout is missing, else None."""
    for p in paths:
        if not p.exists():
            return f"real data not found at {p} (../shared/data beside the checkout)"
    return None


def require_shared(*paths: Path) -> None:
    """Skip the calling test, with the reason, when any of `paths` under ../shared/data is missing."""
    import pytest

    reason = shared_missing(*paths)
    if reason:
        pytest.skip(reason)


def face_pattern(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 uint8 face-like pattern whose look depends on the label (learnable, deterministic)."""
    img = rng.normal(110, 12, (48, 48))
    cv2.ellipse(img, (24, 24), (16, 21), 0, 0, 360, 170, -1)
    y = 30 + (label % 4) * 3
    cv2.line(img, (14, y), (34, y + (label - 3) * 2), 40 + label * 20, 2 + label % 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_fer2013_csv(path: Path, per_class: dict[int, int] | int = 6, usage_counts: dict[str, int] | None = None,
                      extra_lines: list[str] | None = None, seed: int = 0, gz: bool = False) -> Path:
    """A Kaggle-format CSV with `per_class` Training rows per label (+ usage_counts rows per usage)."""
    rng = np.random.default_rng(seed)
    counts = per_class if isinstance(per_class, dict) else {k: per_class for k in range(7)}
    lines = ["emotion,pixels,Usage"]
    for usage, n in {"Training": None, **(usage_counts or {})}.items():
        for label, k in counts.items():
            for _ in range(k if n is None else n):
                pixels = " ".join(map(str, face_pattern(label, rng).ravel()))
                lines.append(f"{label},{pixels},{usage}")
    lines.extend(extra_lines or [])
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def write_expw(root: Path, images_per_class: int = 4, faces_per_image: int = 1, extra_lines: list[str] | None = None,
               seed: int = 0) -> Path:
    """An ExpW folder: origin/*.jpg with faces drawn in, and label/label.lst describing their boxes."""
    rng = np.random.default_rng(seed)
    (root / "origin").mkdir(parents=True, exist_ok=True)
    (root / "label").mkdir(parents=True, exist_ok=True)
    lines = []
    for label in range(7):
        for i in range(images_per_class):
            name = f"img_{label}_{i}.jpg"
            canvas = rng.integers(60, 90, (160, 120 * faces_per_image), dtype=np.uint8)
            for f in range(faces_per_image):
                left, top = 20 + 120 * f, 40
                face = cv2.resize(face_pattern(label, rng), (80, 80))
                canvas[top:top + 80, left:left + 80] = face
                lines.append(f"{name} {f} {top} {left} {left + 80} {top + 80} {50 + i:.4f} {label}")
            cv2.imwrite(str(root / "origin" / name), cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
    (root / "label" / "label.lst").write_text("\n".join(lines + (extra_lines or [])) + "\n")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a server started with start_new_session=True, with its children."""
    import os
    import signal

    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class MlflowServer:
    """A real `mlflow server` on loopback that a test can stop and start again on the same port and store."""

    def __init__(self, root: Path, port: int | None = None, backend_store: str = ""):
        self.root, self.port = root, port or free_port()
        self.backend_store = backend_store or f"sqlite:///{root / 'mlflow.db'}"
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [venv_bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", self.backend_store,
               "--artifacts-destination", (self.root / "artifacts").as_uri(), "--workers", "1"]
        log = open(self.root / "server.log", "a")  # noqa: SIM115 - the server owns it
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # as docker-compose.yml runs it
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        wait_for_port(self.port, self.proc, timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class PostgresServer:
    """A real PostgreSQL (Debian's package) on 127.0.0.1 in a throwaway cluster; run as the `postgres` user
    when the tests run as root, since PostgreSQL refuses to run as root."""

    def __init__(self):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise FileNotFoundError("PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)")
        self.bin = bins[-1].parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="fer-pg-"))
        self.proc: subprocess.Popen | None = None
        self._as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] \
            if os.geteuid() == 0 else []
        if self._as_user:
            shutil.chown(self.root, "postgres", "postgres")

    def url(self, db: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{db}"

    def start(self) -> PostgresServer:
        data = self.root / "data"
        subprocess.run([*self._as_user, str(self.bin / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        log = open(self.root / "server.log", "w")  # noqa: SIM115 - the server owns it
        self.proc = subprocess.Popen([*self._as_user, str(self.bin / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                                      "-p", str(self.port), "-k", str(self.root)], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, self.proc, 60)
        return self

    def create_db(self, name: str) -> None:
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
                       check=True, capture_output=True, timeout=60)

    def query(self, db: str, sql: str) -> str:
        return subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                               "-d", db, "-tAc", sql], check=True, capture_output=True, text=True).stdout.strip()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


def write_mjpeg_with_corrupt_frames(src: Path | str, path: Path, frames: int, corrupt: set[int]) -> Path:
    """The first `frames` frames of a real video as an MJPEG AVI, with the JPEG data of the frames in
    `corrupt` overwritten by zeros in the file: the decoder fails on exactly those frames."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    writer = None
    for _ in range(frames):
        ok, image = cap.read()
        assert ok, f"{src} has fewer than {frames} frames"
        if writer is None:
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), cap.get(cv2.CAP_PROP_FPS), (w, h))
        writer.write(image)
    writer.release()
    cap.release()
    data = bytearray(path.read_bytes())
    pos = data.index(b"movi") + 4  # RIFF chunks follow: fourcc, little-endian size, data padded to even
    index = 0
    while pos + 8 <= len(data) and data[pos:pos + 4] != b"idx1":
        fourcc, size = bytes(data[pos:pos + 4]), int.from_bytes(data[pos + 4:pos + 8], "little")
        if fourcc.endswith(b"dc"):
            if index in corrupt:
                data[pos + 8:pos + 8 + size] = bytes(size)
            index += 1
        pos += 8 + size + (size & 1)
    assert index == frames, f"found {index} frame chunks in {path}, expected {frames}"
    path.write_bytes(data)
    return path


@contextlib.contextmanager
def worker_running(worker, port: int, min_frames: int, frame_delay_s: float):
    """Run a worker with an HTTP port on a thread, slowed by `frame_delay_s` a frame so that a client sees
    it mid-stream; yields once the port is open and `min_frames` frames are done; stops it on exit."""
    worker.results_hook = lambda r: time.sleep(frame_delay_s)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port, timeout=60)
        while worker.frames < min_frames:
            assert thread.is_alive(), "the worker stopped before it served any frames"
            time.sleep(0.05)
        yield worker
    finally:
        worker.stop()
        thread.join(30)


def mlflow_client(uri: str):
    """A client bound to `uri` for both tracking and registry: a bare `MlflowClient(uri)` would take the
    registry URI that an earlier in-process test set globally (`mlflow.set_registry_uri`)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def fer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fer_cli", *args]


class FlakyProxy:
    """A real HTTP server on loopback in front of another (the GCS emulator) that answers 503 to the first
    `failures` downloads of each object whose name contains `match`, and forwards everything else."""

    def __init__(self, upstream: str, match: str, failures: int):
        import http.server

        import httpx

        self.upstream, self.match, self.failures = upstream.rstrip("/"), match, failures
        self.failed: dict[str, int] = {}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                download = "alt=media" in self.path and proxy.match in self.path
                if download and proxy.failed.get(self.path, 0) < proxy.failures:
                    proxy.failed[self.path] = proxy.failed.get(self.path, 0) + 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = httpx.request(self.command, proxy.upstream + self.path, content=body, headers=headers, timeout=30)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def register_copies(settings, model_path: Path | str, n: int, broken: bool = False) -> list[str]:
    """Log the model `n` times in MLflow runs and register each (plus one version that is not a model at all
    when `broken`); returns the version numbers, the broken one last."""
    import mlflow

    from fer_core import models, registry, tracking

    registry.ensure_experiment(settings)
    model = models.load(str(model_path))
    versions = []
    for _ in range(n):
        with mlflow.start_run() as run:
            info = mlflow.tensorflow.log_model(model, name="model", pip_requirements=tracking.model_requirements())
        versions.append(registry.register(settings, info.model_uri, {}, run_id=run.info.run_id).version)
    if broken:
        with mlflow.start_run() as run:
            mlflow.log_text("not a model", "model/readme.txt")
        versions.append(registry.register(settings, f"runs:/{run.info.run_id}/model", {}, run_id=run.info.run_id).version)
    return versions
