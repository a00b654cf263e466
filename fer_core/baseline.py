"""The baseline model shipped with the package, and bootstrapping an empty registry with it.

`assets/baseline.keras` is the model trained by `fer pipeline run` on ../shared/data, with its TFLite
form beside it (`baseline.tflite`, tied to it by the digest in `baseline.sha`: converting takes ~15 s);
`assets/baseline.json` holds its card's numbers (data fingerprint, config, metrics) and
`assets/MODEL_CARD.md` its model card.
"""

from __future__ import annotations

import json
import logging
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from fer_core import promotion, registry
from fer_core.config import Settings

log = logging.getLogger(__name__)


def asset(name: str) -> Path:
    return Path(str(resources.files("fer_core").joinpath("assets", name)))


def model_path() -> Path:
    path = asset("baseline.keras")
    if not path.is_file():
        raise FileNotFoundError(f"the shipped baseline model is missing: {path}")
    return path


def card() -> dict[str, Any]:
    path = asset("baseline.json")
    return json.loads(path.read_text()) if path.is_file() else {}


def ensure_champion(settings: Settings) -> dict[str, Any] | None:
    """The embedded default registry's champion: the shipped baseline when it has none (`registry.bootstrap`).

    So a fresh home serves the baseline, and a pipeline's first candidate on it is gated against the baseline
    rather than against nothing: without this, a weaker first model would be promoted over the model that
    `fer serve` would otherwise have served. A shared registry is never written to here. The alias bootstrapped
    is the worker's champion: for `fer pipeline run --alias analysis` that is the alias its first candidate is
    compared with (`gate.compare_first_with`); the analysis alias itself is never given the baseline."""
    r = settings.registry
    if not (settings.embedded_registry and r.bootstrap):
        return None
    alias = settings.gate.compare_first_with or (r.champion_alias if r.champion_alias != r.analysis_alias else "")
    if not alias:
        return None
    target = settings.model_copy(update={"registry": r.model_copy(update={"champion_alias": alias})})
    if registry.champion(target) is not None:
        return None
    return bootstrap(target)


def bootstrap(settings: Settings, force: bool = False) -> dict[str, Any]:
    """Register the shipped model as a version and make it champion, when the registry has no champion."""
    import mlflow

    from fer_core import models, tracking

    current = registry.champion(settings)
    if current is not None and not force:
        return {"bootstrapped": False, "champion": current.version, "reason": "the registry already has a champion"}
    info = card()
    metrics = info.get("metrics", {})
    provenance = {"baseline": "true", "dataset.version": info.get("dataset_version", ""),
                  "git_commit": info.get("git_commit", "")}
    registry.ensure_experiment(settings)
    model = models.load(str(model_path()))
    with mlflow.start_run(run_name="baseline-bootstrap") as run:
        mlflow.set_tags(provenance)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        if asset("MODEL_CARD.md").is_file():
            mlflow.log_artifact(str(asset("MODEL_CARD.md")))
        with tempfile.TemporaryDirectory() as tmp:  # the fast form (shipped beside it), so workers need not convert it
            from fer_core.classify import tflite_form

            (Path(tmp) / registry.TFLITE).write_bytes(tflite_form(model_path()))
            mlflow.log_artifact(str(Path(tmp) / registry.TFLITE))
        logged = mlflow.tensorflow.log_model(model, name="model", signature=registry.model_signature(),
                                             pip_requirements=tracking.model_requirements())
    tags = {**provenance, "dataset.fingerprint": json.dumps(info.get("fingerprint", {})),
            "config_hash": info.get("config_hash", ""), "model": info.get("params", {}).get("train.model", "compact"),
            registry.DECISION_TAG: "bootstrap",
            **registry.metric_tags(metrics)}
    version = registry.register(settings, logged.model_uri, tags, run_id=run.info.run_id)
    moved = promotion.move_champion(settings, version.version, "bootstrap", "shipped baseline model")
    log.info("bootstrapped the registry with the shipped baseline as version %s", version.version)
    return {"bootstrapped": True, "champion": version.version, **moved}
