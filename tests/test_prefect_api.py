"""The temporary Prefect API server of `fer pipeline run` and `fer demo` (flows.api), started for real."""

import contextlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest

SNIPPET = """
import json, os, sys, httpx
from pathlib import Path
from flows.api import _template_path, prefect_api
db = Path(os.environ["PREFECT_HOME"]) / "prefect.db"
existed = db.exists()
with prefect_api(warm=["json"]) as url:
    types = httpx.post(f"{url}/block_types/filter", json={}, timeout=10).json()
    with __import__("sqlite3").connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
print(json.dumps({"existed": existed, "block_types": len(types), "tables": tables,
                  "template": str(_template_path())}))
"""


def _start(home, cache) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), XDG_CACHE_HOME=str(cache), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_new_home_starts_from_the_cached_empty_database(tmp_path):
    """The first new home migrates its database and leaves an empty copy in the cache; the next new home
    starts from that copy (its marker table shows it) and the server answers with Prefect's block types."""
    first = _start(tmp_path / "a", tmp_path / "cache")
    assert not first["existed"] and first["block_types"] > 10 and "flow_run" in first["tables"]
    with contextlib.closing(sqlite3.connect(first["template"])) as con:  # migrated, no flow runs
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file, nothing in a WAL
        assert con.execute("SELECT count(*) FROM flow_run").fetchone() == (0,)
        con.execute("CREATE TABLE fer_test_marker (x INTEGER)")
        con.commit()
    second = _start(tmp_path / "b", tmp_path / "cache")
    assert not second["existed"] and "fer_test_marker" in second["tables"] and second["block_types"] > 10


def test_a_damaged_or_missing_template_is_ignored(tmp_path, monkeypatch):
    """Without a usable copy the new home's database is left to the server to migrate, as before."""
    from flows import api

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    db = tmp_path / "home" / "prefect.db"
    assert not api._seed_from_template(db) and not db.exists()  # no copy yet
    api._template_path().parent.mkdir(parents=True)
    api._template_path().write_bytes(b"not a database")
    assert not api._seed_from_template(db) and not db.exists()
    api._save_template(tmp_path / "nowhere.db")  # a database that is not there is not copied
    assert api._template_path().read_bytes() == b"not a database"
