"""Many videos on a real Dask cluster (a scheduler and two worker processes on loopback): every task runs
there, each worker process loads the model once, outputs are complete, and a corrupt video among good ones
is reported while the rest finish."""

import csv
import json
import os
import subprocess

import pytest

from fer_core.config import load_settings
from serving import batch
from tests import helpers

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture
def videos(tmp_path):
    from fer_cli.demo import write_clip

    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        write_clip(folder / f"ad{i}.mp4", seconds=1.0)
    (folder / "broken.mp4").write_bytes(os.urandom(4000))
    return folder


def test_folder_of_videos_on_a_dask_cluster(cluster, videos, tiny_model_path, tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FER_")}
    proc = subprocess.run(helpers.fer_cmd("analyze", str(videos), "--out", str(out), "--model", str(tiny_model_path),
                                          "--set", f"home={tmp_path / 'home'}",
                                          "--set", f"dask.address={cluster.scheduler_address}"),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "1 of 4 videos failed" in proc.stderr, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["scheduler"] == cluster.scheduler_address and result["ok"] == 3
    assert [f["video"] for f in result["failed"]] == [str(videos / "broken.mp4")]
    with open(out / "index.csv", newline="") as fh:
        index = list(csv.DictReader(fh))
    assert [r["status"] for r in index] == ["ok", "ok", "ok", "failed"]
    assert all(int(r["frames"]) == 24 and r["dominant"] and int(r["face_ids"]) >= 1 for r in index[:3])
    for stem in ("ad0", "ad1", "ad2"):
        for name in ("timeline.csv", "timeline.seconds.csv", "summary.json", "summary.png", "annotated.mp4"):
            assert (out / stem / name).stat().st_size > 0, (stem, name)
    assert (out / "comparison.png").stat().st_size > 10_000
    # the scheduler's own log: every video was a task there, finished by one of its workers
    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        log = client.run_on_scheduler(lambda dask_scheduler: [(t[0], t[2]) for t in dask_scheduler.transition_log])
    done = {key for key, state in log if str(key).startswith("fer-analyze-") and state == "memory"}
    assert len(done) == 4


def test_each_worker_process_loads_the_model_once(cluster, videos, tiny_model_path, tmp_path):
    s = load_settings(None, [f'home="{tmp_path / "home"}"', f'dask.address="{cluster.scheduler_address}"'],
                      environ={})
    clips = [str(videos / f"ad{i % 3}.mp4") for i in range(6)]
    result = batch.analyze_many(s, clips, str(tmp_path / "out"), str(tiny_model_path))
    assert result["ok"] == 6 and len({r["output"] for r in result["results"]}) == 6  # ad0, ad0-2, ...
    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        loaded = client.run(lambda: sorted(batch._LOADED))
    assert len(loaded) == 2 and all(v == [str(tiny_model_path)] for v in loaded.values())


def test_local_pool_without_an_address(videos, tiny_model_path, tmp_path):
    s = load_settings(None, [f'home="{tmp_path / "home"}"', "dask.workers=2"], environ={})
    result = batch.analyze_many(s, [str(videos / "ad0.mp4"), str(videos / "ad1.mp4")], str(tmp_path / "out"),
                                str(tiny_model_path))
    assert result["ok"] == 2 and result["scheduler"].startswith("tcp://127.0.0.1")


def test_videos_under_a_gs_prefix(videos, tiny_model_path, tmp_path, gcs_bucket):
    from fer_core import storage

    for name in ("ad0.mp4", "ad1.mp4"):
        storage.upload_file(videos / name, f"{gcs_bucket}/clips/{name}")
    s = load_settings(None, [f'home="{tmp_path / "home"}"', "dask.workers=2"], environ={})
    result = batch.analyze_many(s, [f"{gcs_bucket}/clips"], str(tmp_path / "out"), str(tiny_model_path))
    assert result["ok"] == 2 and [r["video"] for r in result["results"]] == [
        f"{gcs_bucket}/clips/ad0.mp4", f"{gcs_bucket}/clips/ad1.mp4"]
    assert (tmp_path / "out" / "ad1" / "timeline.csv").stat().st_size > 0
