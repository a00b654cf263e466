"""The retraining flow: ingest -> build dataset -> train -> evaluate -> gate -> register -> promote.

Work is keyed on what matters (raw data fingerprint, dataset settings, training settings), so a run
with the same inputs skips finished work and says so; when the champion was trained on exactly these
inputs and settings, the run ends early with that reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from fer_core import assess, baseline, evaluate, promotion, registry, storage, tracking
from fer_core.classify import file_digest
from fer_core.config import Settings, load_settings
from fer_core.data import dataset

CONFIG_SECTIONS = ("data", "balance", "split", "augment", "train")


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run
        return logging.getLogger(__name__)


def _backoff(settings: Settings) -> list[float]:
    return [settings.pipeline.retry_delay_s * 2**i for i in range(max(settings.pipeline.retries, 1))]


def _retry_if_transient(task, task_run, state) -> bool:
    """Retry a failed task only when another try can help: a failed read or an unreachable server.
    A bad config, a reject ratio over the limit or a missing input fails at once."""
    exc = state.result(raise_on_failure=False)
    transient = isinstance(exc, BaseException) and storage.is_transient(exc)
    if not transient:
        _logger().info("%s failed with %s: not retried", task.name, type(exc).__name__)
    return transient


def _io_retries(settings: Settings) -> dict[str, Any]:
    """Retry options for the tasks that read inputs or talk to the registry; training has none: a rerun
    resumes it from its checkpoint (fer_core.train: BackupAndRestore in <home>/runs/<train key>)."""
    return {"retries": settings.pipeline.retries, "retry_delay_seconds": _backoff(settings),
            "retry_condition_fn": _retry_if_transient}


def train_key(settings: Settings, dataset_version: str) -> str:
    """What a training run depends on: the dataset version, the train and augment settings, and the contents of
    the model files they name (members, warm start, teacher): a teacher retrained at the same path is new work."""
    t = settings.train
    files = {path: file_digest(path) if Path(path).is_file() else "missing"
             for path in (*t.members, t.init_from, t.teacher) if path}
    payload = json.dumps({"dataset": dataset_version, "train": settings.section_hash("train", "augment"),
                          "files": files}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@task(name="fingerprint inputs", cache_policy=NO_CACHE)
def fingerprint_inputs(settings: Settings) -> dict[str, Any]:
    version, fingerprints = dataset.compute_version(settings)
    return {"dataset_version": version, "fingerprints": fingerprints,
            "config_hash": settings.section_hash(*CONFIG_SECTIONS)}


@task(name="ensure champion", cache_policy=NO_CACHE)
def ensure_champion(settings: Settings) -> None:
    """On the embedded registry, the shipped baseline is the champion a first candidate must beat."""
    booted = baseline.ensure_champion(settings)
    if booted:
        _logger().info("registered the shipped baseline as champion (version %s) to gate against",
                       booted["champion"])


@task(name="check champion", cache_policy=NO_CACHE)
def unchanged_reason(settings: Settings, inputs: dict[str, Any]) -> str | None:
    current = registry.champion(settings)
    if current is None:
        return None
    same_data = current.tags.get("dataset.fingerprint") == json.dumps(inputs["fingerprints"])
    same_config = current.tags.get("config_hash") == inputs["config_hash"]
    if same_data and same_config:
        return (f"nothing changed: champion version {current.version} was trained on the same raw data "
                f"({inputs['dataset_version']}) with the same settings ({inputs['config_hash']})")
    return None


@task(name="decode ExpW shard", cache_policy=NO_CACHE)
def decode_expw_shard(settings: Settings, boxes: list) -> tuple:
    from fer_core.data import expw

    d = settings.data
    return expw.decode(d.expw, boxes, d.margin, d.workers, d.expw_boxes)


EXPW_SHARDS_PER_WORKER = 4


def read_expw_on_cluster(settings: Settings) -> tuple | None:
    """With a Dask cluster (dask.address) and a dataset not built yet: the ExpW images decoded in shards of
    whole images, as parallel tasks on the cluster; None otherwise (the build reads ExpW itself)."""
    from fer_core.data import expw
    from fer_core.data.table import FaceTable

    d = settings.data
    if not (settings.dask.address and d.expw) or dataset.is_built(settings):
        return None
    from distributed import Client

    with Client(settings.dask.address) as client:
        workers = max(1, len(client.scheduler_info()["workers"]))
    boxes, rejects = expw.read_boxes(d.expw, d.limit, d.min_confidence)
    shards = expw.shard(boxes, workers * EXPW_SHARDS_PER_WORKER)
    futures = [decode_expw_shard.submit(settings, part) for part in shards]
    tables = []
    for future in futures:
        table, bad = future.result()
        tables.append(table)
        rejects.extend(bad)
    _logger().info("ExpW: %d images decoded in %d shards on %s", len({b.image for b in boxes}), len(shards),
                   settings.dask.address)
    return FaceTable.concat(tables), rejects


@task(name="build dataset", cache_policy=NO_CACHE)
def build_dataset(settings: Settings, expw_read: tuple | None = None) -> dict[str, Any]:
    ds = dataset.build(settings, expw_read=expw_read)
    _logger().info("dataset %s %s", ds.version, "reused (already built)" if ds.stats.get("reused") else "built")
    return ds.summary()


@task(name="train and evaluate", cache_policy=NO_CACHE)
def train_and_evaluate(settings: Settings, dataset_path: str, key: str, parent_run_id: str = "") -> dict[str, Any]:
    import mlflow

    log = _logger()
    registry.ensure_experiment(settings)
    found = mlflow.search_runs(filter_string=f"tags.train_key = '{key}' and attributes.status = 'FINISHED'",
                               max_results=1, output_format="list")
    if found:
        run = found[0]
        log.info("training %s already done in MLflow run %s: reusing it", key, run.info.run_id)
        report = json.loads(Path(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="classification_report.json")).read_text())
        model_uri = next((f"models:/{m.model_id}" for m in mlflow.search_logged_models(
            filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list")), "")
        return {"run_id": run.info.run_id, "model_uri": model_uri, "results": report, "reused": True,
                "single_face_ms": run.data.metrics.get("single_face_ms", 0.0),
                "faces_per_s": run.data.metrics.get("faces_per_s", 0.0),
                "through_detector": assess.end_to_end_of(run.data.metrics)}
    ds = dataset.load(dataset_path)
    run_dir = settings.home_path / "runs" / key  # a re-run after an interruption resumes from here
    tracked = tracking.train_and_log(settings, ds, run_dir, parent_run_id=parent_run_id)
    mlflow.MlflowClient().set_tag(tracked.run_id, "train_key", key)
    log.info("trained run %s in %.0fs: %s", tracked.run_id, tracked.train.seconds,
             {n: r["accuracy"] for n, r in tracked.results.items()})
    end_to_end = tracked.extra["through_detector"]
    return {"run_id": tracked.run_id, "model_uri": tracked.model_uri, "results": tracked.results, "reused": False,
            "through_detector": {k: end_to_end[k] for k in assess.E2E_KEYS if k in end_to_end}, **tracked.speed}


@task(name="gate", cache_policy=NO_CACHE)
def gate_candidate(settings: Settings, dataset_path: str, trained: dict[str, Any]) -> dict[str, Any]:
    ds = dataset.load(dataset_path)
    sets = promotion.benchmark_sets(settings, ds.splits, dataset.manifest_column(dataset_path, "image"))
    candidate = registry.load_classifier(trained["model_uri"], settings)
    decision = promotion.run_gate(settings, candidate, float(trained["single_face_ms"]), sets,
                                  candidate_faces_per_s=trained.get("faces_per_s"))
    return decision.as_json()


@task(name="register", cache_policy=NO_CACHE)
def register_candidate(settings: Settings, trained: dict[str, Any], decision: dict[str, Any], inputs: dict[str, Any],
                       key: str) -> dict[str, Any]:
    from fer_core import gate

    d = gate.Decision.from_json(decision)
    existing = registry.find_version(settings, "train_key", key)
    if existing is not None:
        _logger().info("version %s already registered for %s: reusing it", existing.version, key)
        registry.set_tags(settings, existing.version, promotion.decision_tags(d))  # today's decision
        return {**existing.as_json(), "reused": True}
    tags = {"train_key": key, "dataset.version": inputs["dataset_version"],
            "dataset.fingerprint": json.dumps(inputs["fingerprints"]), "config_hash": inputs["config_hash"],
            "git_commit": tracking.git_commit(), "run_id": trained["run_id"], "model": settings.train.model,
            **registry.metric_tags({
                **evaluate.flat_metrics(trained["results"]),  # all its own held-out sets, compared or not
                "single_face_ms": trained["single_face_ms"],
                **assess.end_to_end_metrics(trained.get("through_detector", {}))}),
            **promotion.decision_tags(d)}
    version = registry.register(settings, trained["model_uri"], tags, run_id=trained["run_id"])
    return {**version.as_json(), "reused": False}


@task(name="promote", cache_policy=NO_CACHE)
def promote(settings: Settings, version: str, decision: dict[str, Any]) -> dict[str, Any]:
    from fer_core import gate

    return promotion.apply_decision(settings, version, gate.Decision.from_json(decision))


def summary_markdown(result: dict[str, Any]) -> str:
    lines = [f"# FER retraining: {result['status']}", ""]
    if result.get("reason"):
        lines += [result["reason"], ""]
    if "dataset" in result:
        lines += [f"- dataset `{result['dataset']['version']}`"
                  + (" (reused)" if result["dataset"].get("reused") else ""),
                  f"- model version `{result.get('version', {}).get('version', '-')}`"
                  + (" (reused)" if result.get("version", {}).get("reused") else ""),
                  f"- training run `{result['train']['run_id']}`" + (" (reused)" if result["train"]["reused"] else "")]
    d = result.get("decision")
    if d:
        lines += ["", f"## Gate: **{d['verdict']}** (champion before: {d['champion_version'] or 'none'})", "",
                  "| set | candidate acc | champion acc | candidate macro-F1 | champion macro-F1 |",
                  "| --- | --- | --- | --- | --- |"]
        for name, c in d["candidate"].items():
            ch = d["champion"].get(name, {})
            lines.append(f"| {name} | {c['accuracy']:.4f} | {ch.get('accuracy', float('nan')):.4f} | "
                         f"{c['macro_f1']:.4f} | {ch.get('macro_f1', float('nan')):.4f} |")
        lines += ["", *[f"- {r}" for r in d["reasons"]]]
    return "\n".join(lines) + "\n"


@flow(name="fer-retrain", log_prints=True)
def retrain(config: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Retrain once: returns the run's summary (also published as a Prefect markdown artifact)."""
    settings = load_settings(config, overrides or [])
    net = _io_retries(settings)
    inputs = fingerprint_inputs.with_options(**net)(settings)
    ensure_champion.with_options(**net)(settings)
    reason = unchanged_reason.with_options(**net)(settings, inputs)
    if reason:
        result: dict[str, Any] = {"status": "skipped", "reason": reason, "inputs": inputs}
    else:
        ds = build_dataset.with_options(**net)(settings, read_expw_on_cluster(settings))
        key = train_key(settings, ds["version"])
        trained = train_and_evaluate(settings, ds["path"], key)
        decision = gate_candidate.with_options(**net)(settings, ds["path"], trained)
        version = register_candidate.with_options(**net)(settings, trained, decision, inputs, key)
        moved = promote.with_options(**net)(settings, version["version"], decision)
        result = {"status": "promoted" if decision["promote"] else "rejected", "dataset": ds, "train": trained,
                  "decision": decision, "version": version, "aliases": moved, "inputs": inputs}
    create_markdown_artifact(key="fer-retrain-summary", markdown=summary_markdown(result),
                             description="dataset, model version, metrics vs champion, gate decision")
    return result
