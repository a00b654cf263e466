"""`fer pipeline sweep`: a grid of configurations trained as parallel tasks on a real Dask cluster (a
scheduler and two worker processes on loopback, through prefect-dask), each candidate gated against the same
champion and registered, all under one parent MLflow run."""

import json
import os
import subprocess

import pytest

from fer_core import registry
from fer_core.config import ConfigError, load_settings
from flows.sweep import read_grid
from tests import helpers

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_grid_expands_to_every_combination(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\n"train.width" = [16, 24]\n"balance.undersample" = ["{}", "{happy = 0.5}"]\n')
    combos = read_grid(str(grid))
    assert len(combos) == 4 and ["balance.undersample={}", "train.width=16"] in combos
    grid.write_text("[grid]\nwidth = 16\n")
    with pytest.raises(ConfigError, match="needs"):
        read_grid(str(grid))


def test_sweep_trains_on_dask_and_gates_every_candidate(small_data, tmp_path):
    from distributed import Client, LocalCluster

    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\n"train.width" = [16, 24]\n')
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FER_", "PREFECT_API"))}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        proc = subprocess.run(helpers.fer_cmd(
            "pipeline", "sweep", str(grid), "--set", f"home={home}", "--set", f"data.fer2013={small_data['fer2013']}",
            "--set", f"data.expw={small_data['expw']}", "--set", "train.epochs=1", "--set", "train.batch_size=32",
            "--set", "gate.min_class_recall=0", "--set", "registry.bootstrap=false",
            "--set", f"dask.address={cluster.scheduler_address}"),
            env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        with Client(cluster.scheduler_address) as client:
            log = client.run_on_scheduler(lambda dask_scheduler: [str(t[0]) for t in dask_scheduler.transition_log])
    out = json.loads(proc.stdout)
    assert [c["overrides"] for c in out["candidates"]] == [["train.width=16"], ["train.width=24"]]
    assert any("train_and_evaluate" in key or "train and evaluate" in key for key in log), log[:20]
    s = load_settings(None, [f'home="{home}"'], environ={})
    versions = {v.version: v for v in registry.list_versions(s)}
    assert {c["version"] for c in out["candidates"]} <= set(versions)
    for c in out["candidates"]:
        assert versions[c["version"]].tags["gate.decision"] == c["decision"]
    assert out["promoted"] in {c["version"] for c in out["candidates"]}  # no champion yet: floors only
    assert registry.champion(s).version == out["promoted"]
    client = helpers.mlflow_client(s.tracking_uri)
    datasets = {c["dataset"] for c in out["candidates"]}
    parent = client.get_run(out["parent_run_id"])
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == datasets
    for c in out["candidates"]:
        run = client.get_run(c["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == out["parent_run_id"]
        assert [d.dataset.name for d in run.inputs.dataset_inputs] == [c["dataset"]]


def test_retrain_decodes_expw_in_shards_on_dask(small_data, tmp_path):
    """`fer pipeline run` with dask.address: the ExpW images are decoded as shard tasks on the cluster, and
    the dataset is the very one a local build makes (same version, same faces read)."""
    from distributed import Client, LocalCluster

    from fer_core.data import dataset

    common = ["--set", f"data.fer2013={small_data['fer2013']}", "--set", f"data.expw={small_data['expw']}",
              "--set", "train.epochs=1", "--set", "train.batch_size=32", "--set", "gate.min_class_recall=0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FER_", "PREFECT_API"))}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        proc = subprocess.run(helpers.fer_cmd("pipeline", "run", "--set", f"home={tmp_path / 'a'}", *common,
                                              "--set", f"dask.address={cluster.scheduler_address}"),
                              env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        with Client(cluster.scheduler_address) as client:
            log = client.run_on_scheduler(lambda dask_scheduler: [str(t[0]) for t in dask_scheduler.transition_log])
    shards = {key for key in log if "decode_expw_shard" in key or "decode ExpW shard" in key}
    assert len(shards) >= 2, log[:20]
    on_dask = json.loads(proc.stdout)
    local = load_settings(None, [f'home="{tmp_path / "b"}"', f'data.fer2013="{small_data["fer2013"]}"',
                                 f'data.expw="{small_data["expw"]}"'], environ={})
    ds = dataset.build(local)
    assert ds.version == on_dask["dataset"]
    stats = dataset.load_stats(on_dask["dataset"], load_settings(None, [f'home="{tmp_path / "a"}"'], environ={}))
    assert stats["faces_read"] == ds.stats["faces_read"]  # the same faces, whichever machine decoded them
