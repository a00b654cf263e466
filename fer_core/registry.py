"""MLflow: where the tracking server is, the registered model, its aliases, and loading a model URI.

A model URI is either a local `.keras`/`.tflite` file or `models:/NAME@ALIAS` / `models:/NAME/VERSION`.
Registry downloads are cached on disk, so a worker can start with its last good model while the
registry is down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_core import storage
from fer_core.config import Settings

log = logging.getLogger(__name__)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

DECISION_TAG = "gate.decision"
METRIC_TAG = "metric."  # a version's figures are tags named metric.<flat metric name> (`evaluate.flat_metrics`)


class RegistryError(RuntimeError):
    """The registry cannot answer: unreachable, or no such model, version or alias."""


class RegistryUnavailable(RegistryError):
    """The registry server could not be reached: worth another try later, unlike a missing version."""


@dataclass
class VersionInfo:
    version: str
    aliases: list[str]
    metrics: dict[str, float]
    tags: dict[str, str]
    run_id: str = ""
    source: str = ""
    created: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version, "aliases": self.aliases, "metrics": self.metrics, "tags": self.tags,
                "run_id": self.run_id, "created": self.created}


@dataclass
class ResolvedModel:
    """A model on local disk, and where it came from."""

    path: Path
    uri: str
    version: str = ""
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    tflite: Path | None = None  # the TFLite form logged with the model, when there is one


def model_signature():
    """What every registered model takes and gives: uint8 faces (N, 48, 48), float probabilities (N, 7)."""
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from fer_core.data.table import FACE
    from fer_core.labels import NUM_CLASSES

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, FACE, FACE), "face")]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, NUM_CLASSES), "probabilities")]))


def configure(settings: Settings):
    """Point MLflow at the configured tracking server (sqlite + local files by default)."""
    # MLflow's own HTTP retries can block for minutes; our callers (Prefect tasks) retry instead.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow.http_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.mlflow.http_timeout_s)
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(settings: Settings) -> str:
    import mlflow

    client = configure(settings)
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    if exp is None:
        location = settings.artifact_root if not settings.tracking_uri.startswith("http") else None
        exp_id = client.create_experiment(settings.mlflow.experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


UNREACHABLE_MARKERS = ("Max retries exceeded", "Failed to establish a new connection", "Connection refused",
                "Name or service not known", "timed out")


def _wrap(exc: Exception, what: str) -> RegistryError:
    text = str(exc)
    if any(marker in text for marker in UNREACHABLE_MARKERS):
        server = re.search(r"API request to (\S+?)/api/", text)
        where = server.group(1) if server else "the configured address"
        return RegistryUnavailable(f"{what}: the MLflow registry at {where} cannot be reached (is `mlflow server` running "
                             "there? the address is mlflow.tracking_uri)")
    return RegistryError(f"{what}: {exc.__class__.__name__}: {text.splitlines()[0][:300] if text else ''}")


def _version_info(client, mv, aliases: list[str] | None = None) -> VersionInfo:
    metrics: dict[str, float] = {}
    tags = dict(mv.tags or {})
    for key, value in tags.items():
        if key.startswith(METRIC_TAG):
            with contextlib.suppress(ValueError):
                metrics[key[len(METRIC_TAG):]] = float(value)
    return VersionInfo(version=str(mv.version), aliases=sorted(aliases if aliases is not None else (mv.aliases or [])),
                       metrics=metrics, tags={k: v for k, v in tags.items() if not k.startswith(METRIC_TAG)},
                       run_id=mv.run_id or "", source=mv.source or "", created=(mv.creation_timestamp or 0) / 1000)


def list_versions(settings: Settings) -> list[VersionInfo]:
    client = configure(settings)
    name = settings.registry.model_name
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception as exc:  # noqa: BLE001 - any MLflow/transport error is "registry unavailable"
        if "RESOURCE_DOES_NOT_EXIST" in str(exc):
            return []
        raise _wrap(exc, f"cannot list versions of {name}") from exc
    # search results carry no aliases: take them from the registered model
    try:
        aliases = dict(client.get_registered_model(name).aliases or {}) if versions else {}
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, f"cannot read aliases of {name}") from exc
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    infos = [_version_info(client, mv, by_version.get(str(mv.version), [])) for mv in versions]
    return sorted(infos, key=lambda v: int(v.version), reverse=True)


def alias_version(settings: Settings, alias: str) -> VersionInfo | None:
    client = configure(settings)
    try:
        mv = client.get_model_version_by_alias(settings.registry.model_name, alias)
    except Exception as exc:  # noqa: BLE001
        text = str(exc)
        if "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower() or "INVALID_PARAMETER_VALUE" in text:
            return None
        raise _wrap(exc, f"cannot read alias {alias}") from exc
    return _version_info(client, mv)


def champion(settings: Settings) -> VersionInfo | None:
    return alias_version(settings, settings.registry.champion_alias)


def find_version(settings: Settings, tag: str, value: str) -> VersionInfo | None:
    """The newest version whose tag `tag` equals `value` (how a re-run finds what it registered)."""
    for v in list_versions(settings):
        if v.tags.get(tag) == value:
            return v
    return None


def metric_tags(metrics: dict[str, float]) -> dict[str, float]:
    """Flat metrics as a version's tags (`metric.test_accuracy`, ...), which `list_versions` reads back."""
    return {f"{METRIC_TAG}{k}": v for k, v in metrics.items()}


def register(settings: Settings, model_uri: str, tags: dict[str, Any], run_id: str | None = None) -> VersionInfo:
    """Register a logged model as a new version, created together with all its tags in one call,
    so that a failure never leaves a version without them (metrics as `metric.*` tags)."""
    client = configure(settings)
    name = settings.registry.model_name
    try:
        try:
            client.get_registered_model(name)
        except Exception:  # noqa: BLE001
            client.create_registered_model(name, description="Facial expression recognition, 7 emotions.")
        # MLflow 3 logged models ("models:/m-...") must name their model_id when registered.
        model_id = model_uri[len("models:/"):] if model_uri.startswith("models:/m-") else None
        mv = client.create_model_version(name, model_uri, run_id=run_id, model_id=model_id,
                                         tags={k: str(v) for k, v in tags.items()})
        return _version_info(client, mv)
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, f"cannot register {model_uri} as {name}") from exc


def set_alias(settings: Settings, alias: str, version: str) -> None:
    client = configure(settings)
    try:
        client.set_registered_model_alias(settings.registry.model_name, alias, str(version))
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, f"cannot set alias {alias} -> {version}") from exc


def delete_alias(settings: Settings, alias: str) -> None:
    client = configure(settings)
    try:
        client.delete_registered_model_alias(settings.registry.model_name, alias)
    except Exception as exc:  # noqa: BLE001
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc):
            raise _wrap(exc, f"cannot delete alias {alias}") from exc


def set_tags(settings: Settings, version: str, tags: dict[str, Any]) -> None:
    client = configure(settings)
    try:
        for key, value in tags.items():
            client.set_model_version_tag(settings.registry.model_name, str(version), key, str(value))
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, f"cannot tag version {version}") from exc


def get_version(settings: Settings, version: str) -> VersionInfo:
    client = configure(settings)
    try:
        return _version_info(client, client.get_model_version(settings.registry.model_name, str(version)))
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, f"no version {version} of {settings.registry.model_name}") from exc


def cache_dir(settings: Settings) -> Path:
    return settings.home_path / "cache" / "models"


TFLITE = "model.tflite"  # the fast form the pipeline logs beside each model in its training run


def _download(artifact_uri: str, target: Path, what: str, run_id: str = "") -> None:
    """Download a model (and its run's TFLite file, when the run has one) into `target` atomically: a
    temporary folder renamed into place, marked COMPLETE."""
    import mlflow

    tmp = target.with_name(f".{target.name}.{os.getpid()}.{time.time_ns()}")
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(tmp))
        if run_id:
            with contextlib.suppress(Exception):  # older versions have none: then it is converted here
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=TFLITE, dst_path=str(tmp))
        (tmp / "COMPLETE").write_text(artifact_uri)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(tmp, ignore_errors=True)
        raise _wrap(exc, what) from exc


def _last_good(settings: Settings, uri: str, name: str, last_good: Path) -> ResolvedModel:
    """The version of an alias that last loaded on this machine, from its cache."""
    cached = json.loads(last_good.read_text())
    return ResolvedModel(Path(cached["path"]), uri, cached["version"], name, {"cached": True},
                         _tflite(cache_dir(settings) / name / str(cached["version"])))


MODEL_SUFFIXES = (".keras", ".h5", ".tflite")  # what Keras 3 loads, and the classifier's own form


def _tflite(root: Path) -> Path | None:
    return root / TFLITE if (root / TFLITE).is_file() else None


def _find_keras(root: Path) -> Path:
    found = sorted(root.rglob("*.keras"))
    if not found:
        raise RegistryError(f"no .keras file in the downloaded model at {root}")
    return found[0]


def resolve(uri: str, settings: Settings, last_good_only: bool = False) -> ResolvedModel:
    """A local file for `uri`; registry models are downloaded once per version and cached. With
    `last_good_only`, the version of an alias that last loaded here, without asking the registry."""
    if not uri.startswith("models:/"):
        path = Path(uri).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {uri}")
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise ValueError(f"{uri}: a model is a registry URI (models:/NAME@ALIAS or models:/NAME/VERSION) or "
                             f"a file ending in {', '.join(MODEL_SUFFIXES)}")
        return ResolvedModel(path, uri)

    client = configure(settings)
    rest = uri[len("models:/"):]
    if "@" not in rest and "/" not in rest:  # a logged model (models:/m-...), not a registered version
        target = cache_dir(settings) / "logged" / rest
        if not (target / "COMPLETE").is_file():
            try:  # its training run holds the TFLite form (the gate reads candidates this way)
                run_id = client.get_logged_model(rest).source_run_id or ""
            except Exception as exc:  # noqa: BLE001
                raise _wrap(exc, f"no logged model {rest}") from exc
            _download(uri, target, f"cannot download logged model {rest}", run_id=run_id)
        return ResolvedModel(_find_keras(target), uri, rest, tflite=_tflite(target))
    name, alias, version = rest, "", ""
    if "@" in rest:
        name, alias = rest.split("@", 1)
    elif "/" in rest:
        name, version = rest.split("/", 1)
    last_good = cache_dir(settings) / name / "last_good.json"
    if last_good_only:
        if not (alias and last_good.is_file()):
            raise RegistryError(f"no last good version of {uri} on this machine")
        return _last_good(settings, uri, name, last_good)
    try:
        info = alias_version(settings, alias) if alias else get_version(settings.model_copy(
            update={"registry": settings.registry.model_copy(update={"model_name": name})}), version)
        if alias and info is None:
            raise RegistryError(f"model {name} has no version with alias {alias!r} (promote one with `fer models "
                                "promote VERSION`, or register the shipped baseline with `fer models bootstrap`)")
        if alias and name != settings.registry.model_name:
            mv = configure(settings).get_model_version_by_alias(name, alias)
            info = _version_info(None, mv)
        version = info.version
    except RegistryError as exc:
        if alias and last_good.is_file():  # registry down: serve the last good model
            cached = _last_good(settings, uri, name, last_good)
            log.warning("registry unavailable (%s); using cached version %s", exc, cached.version)
            return cached
        raise
    target = cache_dir(settings) / name / str(version)
    if not (target / "COMPLETE").is_file():
        _download(f"models:/{name}/{version}", target, f"cannot download {name} version {version}",
                  run_id=info.run_id)
    path = _find_keras(target)
    if alias:  # read when the registry is down: written whole or not at all
        storage.write_text(str(last_good), json.dumps({"version": str(version), "path": str(path)}))
    return ResolvedModel(path, uri, str(version), name, tflite=_tflite(target))


def load_classifier(uri: str, settings: Settings, last_good_only: bool = False):
    """The fast classifier for a model URI (TFLite form cached under <home>/cache/tflite)."""
    from fer_core.classify import Classifier

    resolved = resolve(uri, settings, last_good_only)
    if resolved.tflite is not None:
        clf = Classifier(resolved.tflite.read_bytes(), source=uri)
    else:
        if uri.startswith("models:/"):
            log.warning("no %s logged for %s: converting the Keras model on this machine (the pipeline logs "
                        "one with every version)", TFLITE, uri)
        clf = Classifier.from_file(resolved.path, cache_dir=settings.home_path / "cache" / "tflite")
    clf.version = resolved.version or Path(resolved.path).name
    clf.source = uri
    return clf
