"""A sweep: several training configurations (a grid from a TOML file) trained as parallel tasks, every
candidate gated against the same champion, all recorded under one parent MLflow run; the best candidate
that passes the gate (by mean accuracy over the benchmark sets) is promoted, the others are registered with
their decisions.

    # sweep.toml                              fer pipeline sweep sweep.toml [--config F] [--set ...]
    [grid]
    "train.width" = [16, 28]
    "train.learning_rate" = [0.001, 0.0005]
    "balance.undersample" = ["{}", "{happy = 0.7, neutral = 0.7, sad = 0.25}"]   # recipes, as TOML values

With `dask.address` the training tasks run on that Dask cluster (prefect-dask's DaskTaskRunner, chosen by
the CLI); without it they run one after another in this process.
"""

from __future__ import annotations

import itertools
import json
import time
import tomllib
from pathlib import Path
from typing import Any

from prefect import flow

from fer_core import registry, tracking
from fer_core.config import ConfigError, load_settings
from fer_core.data import dataset
from flows.retrain import (
    _io_retries,
    build_dataset,
    ensure_champion,
    fingerprint_inputs,
    gate_candidate,
    promote,
    register_candidate,
    train_and_evaluate,
    train_key,
)


def read_grid(path: str) -> list[list[str]]:
    """Every combination of the grid as a list of `section.key=value` overrides."""
    try:
        grid = tomllib.loads(Path(path).read_text()).get("grid", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the sweep grid {path}: {exc}") from exc
    if not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: [grid] needs `\"section.key\" = [value, ...]` entries")
    keys = sorted(grid)

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    return [[f"{k}={text(v)}" for k, v in zip(keys, combo, strict=True)]
            for combo in itertools.product(*(grid[k] for k in keys))]


def _parent_run(settings, grid_path: str, combos: list[list[str]]) -> str:
    import mlflow

    registry.ensure_experiment(settings)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    run = client.create_run(exp.experiment_id, run_name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
                            tags={"sweep": "true", "sweep.grid": Path(grid_path).name,
                                  "sweep.candidates": str(len(combos))})
    client.log_text(run.info.run_id, json.dumps(combos, indent=2), "sweep_grid.json")
    return run.info.run_id


@flow(name="fer-sweep", log_prints=True)
def sweep(grid_path: str, config: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    import mlflow

    combos = read_grid(grid_path)
    base = load_settings(config, overrides or [])
    parent = _parent_run(base, grid_path, combos)
    net = _io_retries(base)
    candidates = []
    for combo in combos:  # datasets first, in this process: identical data settings share one version
        s = load_settings(config, [*(overrides or []), *combo])
        inputs = fingerprint_inputs.with_options(**net)(s)
        ds = build_dataset.with_options(**net)(s)
        candidates.append({"overrides": combo, "settings": s, "inputs": inputs, "dataset": ds,
                           "key": train_key(s, ds["version"])})
    for path in dict.fromkeys(c["dataset"]["path"] for c in candidates):
        # on the parent first: the trials running at once then find each dataset's row and only link it
        tracking.log_dataset(dataset.load(path), parent, context="sweep")
    futures = [train_and_evaluate.submit(c["settings"], c["dataset"]["path"], c["key"], parent) for c in candidates]
    for c, future in zip(candidates, futures, strict=True):
        c["trained"] = future.result()
    ensure_champion.with_options(**net)(base)
    for c in candidates:  # every candidate against the same champion (none is promoted before all are gated)
        c["decision"] = gate_candidate.with_options(**net)(c["settings"], c["dataset"]["path"], c["trained"])
        c["version"] = register_candidate.with_options(**net)(c["settings"], c["trained"], c["decision"],
                                                              c["inputs"], c["key"])

    def score(c) -> float:
        accs = [r["accuracy"] for r in c["decision"]["candidate"].values()]
        return sum(accs) / len(accs) if accs else 0.0

    passing = [c for c in candidates if c["decision"]["promote"]]
    best = max(passing, key=score) if passing else None
    moved = promote.with_options(**net)(best["settings"], best["version"]["version"], best["decision"]) if best \
        else {"changed": False}
    client = mlflow.MlflowClient()
    for i, c in enumerate(candidates):
        client.log_metric(parent, "candidate_mean_accuracy", score(c), step=i)
    client.set_tag(parent, "sweep.promoted", best["version"]["version"] if best else "")
    client.set_terminated(parent)
    return {"parent_run_id": parent, "promoted": best["version"]["version"] if best else None, "aliases": moved,
            "candidates": [{"overrides": c["overrides"], "version": c["version"]["version"],
                            "run_id": c["trained"]["run_id"], "decision": c["decision"]["verdict"],
                            "mean_accuracy": round(score(c), 4), "dataset": c["dataset"]["version"]}
                           for c in candidates]}
