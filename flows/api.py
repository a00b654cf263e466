"""The Prefect API a flow reports to: the configured one, or a temporary server whose life is ours.

Without PREFECT_API_URL, Prefect 3 starts a temporary API server in a subprocess and stops it at exit,
but a process killed with SIGKILL (the OOM killer, a preempted VM, `kill -9`) never exits cleanly and
leaves that server behind (about 235 MB each). This one is the same server (Prefect's own ASGI app,
loopback only, no UI), started so that the kernel sends it SIGTERM when its parent dies, whatever the
cause (Linux's parent-death signal).

Starting it costs about 11 s of imports, plus about 20 s of database migrations on a new Prefect home
(every new FER_HOME). So a new home starts from a copy of an empty, migrated database kept in the user's
cache per Prefect version (made from the first server that starts on a new home), and the caller's own
imports run while the server comes up.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with(parent: int):
    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return preexec


def _sqlite_path() -> Path | None:
    """The file of Prefect's database when it is the default local sqlite one."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    url = url.get_secret_value() if url is not None else ""
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return None
    return Path(url[len(prefix):])


def _template_path() -> Path:
    import prefect

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "fer-platform" / f"prefect-{prefect.__version__}-empty.db"


def _seed_from_template(db: Path) -> bool:
    """Copy the cached empty database to `db` when `db` does not exist yet; True if copied."""
    template = _template_path()
    if db.exists() or not template.is_file():
        return False
    try:  # a damaged template is ignored: the server migrates a new database instead
        with contextlib.closing(sqlite3.connect(f"file:{template}?mode=ro", uri=True)) as con:
            con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as exc:
        log.warning("ignoring the Prefect database template %s: %s", template, exc)
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{os.getpid()}")
    shutil.copyfile(template, tmp)
    os.replace(tmp, db)
    log.debug("Prefect database %s copied from %s", db, template)
    return True


def _save_template(db: Path) -> None:
    """A consistent copy of a just-migrated database, before any flow writes to it (sqlite's backup API)."""
    if not db.is_file():  # the server chose another database than this process sees: nothing to copy
        return
    template = _template_path()
    tmp = template.with_name(f".{template.name}.{os.getpid()}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(db)) as src, contextlib.closing(sqlite3.connect(tmp)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, whatever the source's mode
        os.replace(tmp, template)
    except (OSError, sqlite3.Error) as exc:  # only a cache: the next new home migrates again
        log.debug("could not save the Prefect database template: %s", exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def prefect_api(timeout_s: float = 90.0, warm: Iterable[str] = ()) -> Iterator[str]:
    """Yield the API URL flows report to while the block runs; start a bound server when none is set.
    `warm`: modules the caller will need, imported while the server starts."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    import prefect

    db = _sqlite_path()
    new_home = db is not None and not db.exists() and not _seed_from_template(db)
    port = _free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
           "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "error", "--lifespan", "on"]
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with(os.getpid()))  # noqa: PLW1509 - prctl only
    url = f"http://127.0.0.1:{port}/api"
    try:
        for module in warm:
            importlib.import_module(module)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the temporary Prefect API server exited with code {proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{url}/health").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the temporary Prefect API server did not answer within {timeout_s:.0f} s")
                time.sleep(0.1)
        if new_home:
            _save_template(db)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
