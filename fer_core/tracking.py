"""One tracked training run: train, score it (`fer_core.assess`), log everything to MLflow (and W&B).

Logged per run: the flattened config as params; the dataset version and hash as the run's input;
per-epoch metrics; the git commit; learning curves, confusion matrices, montages of the faces each held-out
set's answers got wrong, a classification report, a model card; the model with a signature and an input example.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from fer_core import plots, registry
from fer_core.assess import assess
from fer_core.card import model_card
from fer_core.classify import Classifier
from fer_core.config import Settings
from fer_core.data.dataset import Dataset
from fer_core.train import TrainResult, train

log = logging.getLogger(__name__)
MISREAD_SHOWN = 24  # misread faces shown per emotion and held-out set (misread/<set>/<emotion>.png)


@dataclass
class TrackedRun:
    run_id: str
    model_uri: str  # the logged model, for registration
    model_path: Path  # the local .keras file
    results: dict[str, dict[str, Any]]  # evaluation set -> metrics JSON
    speed: dict[str, float]
    train: TrainResult
    extra: dict[str, Any] = field(default_factory=dict)


def model_requirements() -> list[str]:
    """Pinned runtime requirements of a logged model (MLflow's inference would reload the model)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "numpy"):
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return out


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MlflowEpochLogger(keras.callbacks.Callback):
    """Per-epoch metrics to the active MLflow run (step = epoch across both training phases)."""

    def __init__(self):
        super().__init__()
        self.step = 0

    def on_epoch_end(self, epoch, logs=None):
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=self.step)
        self.step += 1


def _duplicate_row(exc: BaseException) -> bool:
    text = str(exc)
    return "UNIQUE constraint" in text or "duplicate key" in text or "IntegrityError" in text


def log_dataset(ds: Dataset, run_id: str, context: str = "training") -> None:
    """Record the dataset version as the run's input (MLflow's dataset: name, digest, source, schema).

    MLflow looks for the experiment's dataset row and inserts it when missing; runs logging the same new
    dataset at once (a sweep's trials on Dask) can both miss it, and the second insert then fails on the
    table's unique key. Tried again, the lookup finds the row and only the link is written."""
    import mlflow
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
    from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

    x_train, y_train = ds.splits["train"]
    with warnings.catch_warnings():  # MLflow registers its local source class twice, then warns it is ambiguous
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted in multiple ways")
        entity = mlflow.data.from_numpy(x_train[:1000], targets=y_train[:1000], source=ds.path,
                                        name=ds.version, digest=ds.version[3:])._to_mlflow_entity()
    inputs = [DatasetInput(dataset=entity, tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)])]
    client = mlflow.MlflowClient()
    retry(retry=retry_if_exception(_duplicate_row), stop=stop_after_attempt(4), reraise=True,
          wait=wait_random_exponential(multiplier=0.2, max=2.0))(client.log_inputs)(run_id, datasets=inputs)


def train_and_log(settings: Settings, ds: Dataset, run_dir: str | Path | None = None,
                  run_name: str | None = None, parent_run_id: str = "") -> TrackedRun:
    """Train on the dataset, evaluate, and log the whole run to MLflow (and W&B when enabled); with
    `parent_run_id`, as a child of that run (a sweep's runs under one parent)."""
    import mlflow

    registry.ensure_experiment(settings)
    run_dir = Path(run_dir or tempfile.mkdtemp(prefix="fer-train-", dir=settings.home_path))
    run_name = run_name or f"{settings.train.model}-{ds.version}-{time.strftime('%Y%m%d-%H%M%S')}"
    commit = git_commit()
    flat = {k: (json.dumps(v) if isinstance(v, list | dict | tuple) else v) for k, v in settings.flat().items()}
    wandb_run = _start_wandb(settings, run_name, flat)
    callbacks: list[keras.callbacks.Callback] = [MlflowEpochLogger()]
    if wandb_run is not None:
        from wandb.integration.keras import WandbMetricsLogger

        callbacks.append(WandbMetricsLogger(log_freq="epoch"))
    with mlflow.start_run(run_name=run_name,
                          tags={"mlflow.parentRunId": parent_run_id} if parent_run_id else None) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})
        mlflow.set_tags({"git_commit": commit, "dataset.version": ds.version,
                         "dataset.fingerprint": json.dumps(ds.stats.get("fingerprint", {})),
                         "config_hash": settings.section_hash("data", "balance", "split", "augment", "train")})
        log_dataset(ds, run.info.run_id)
        tr = train(settings, ds.splits, run_dir, callbacks=callbacks, sources=ds.sources)
        clf = Classifier.from_keras(tr.model)
        scored = assess(settings, ds, clf)
        results, speed, end_to_end = scored.results, scored.speed, scored.end_to_end
        metrics = scored.metrics()
        metrics.update({"train_seconds": tr.seconds, "epochs_run": tr.epochs_run, "params": tr.params,
                        "train_images_per_s": tr.images_per_second,
                        "train_images_seen": tr.extra.get("images_seen", 0),
                        "bn_refresh_faces": tr.extra.get("bn_refresh", {}).get("faces", 0),
                        **tr.extra.get("calibration", {}),
                        **tr.extra.get("distillation", {})})
        mlflow.log_metrics(metrics)
        mlflow.log_text(json.dumps(results, indent=2), "classification_report.json")
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            (tmp_path / "learning_curves.png").write_bytes(plots.learning_curves(tr.history))
            for name, r in results.items():
                (tmp_path / f"confusion_{name}.png").write_bytes(plots.confusion(r["confusion"], f"{name} (n={r['n']})"))
            for name, (x, y) in ds.eval_sets().items():  # the held-out sets' misread faces, to look at
                shown = plots.misread(x, y, scored.probs[name], MISREAD_SHOWN) if name in scored.probs else {}
                for emotion, (png, _) in shown.items():
                    (tmp_path / "misread" / name).mkdir(parents=True, exist_ok=True)
                    (tmp_path / "misread" / name / f"{emotion}.png").write_bytes(png)
            if end_to_end:
                (tmp_path / "through_detector.json").write_text(json.dumps(end_to_end, indent=2))
            card = model_card(settings, ds, tr, results, speed, commit, end_to_end)
            (tmp_path / "model_card.md").write_text(card)
            (tmp_path / "model.tflite").write_bytes(clf.tflite)
            mlflow.log_artifacts(str(tmp_path))
        example = ds.splits["train"][0][:2]
        signature = registry.model_signature()
        # The TensorFlow flavour stores Keras 3 models as data/model.keras (mlflow.keras 3.17 fails to save
        # an input example: it writes it before creating the model folder).
        # MLflow checks the example by calling the model: with a list of one (a Keras warning) and a progress bar
        interactive = keras.utils.is_interactive_logging_enabled()
        keras.utils.disable_interactive_logging()
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "The structure of `inputs` doesn't match the expected structure")
                info = mlflow.tensorflow.log_model(tr.model, name="model", signature=signature,
                                                   input_example=example, pip_requirements=model_requirements())
        finally:
            if interactive:
                keras.utils.enable_interactive_logging()
        if wandb_run is not None:
            wandb_run.summary.update({k: v for k, v in metrics.items() if isinstance(v, int | float)})
            wandb_run.finish()
    return TrackedRun(run.info.run_id, info.model_uri, tr.model_path, results, speed, tr,
                      {"card": card, "run_name": run_name, "commit": commit, "through_detector": end_to_end})


def _start_wandb(settings: Settings, run_name: str, config: dict[str, Any]):
    w = settings.wandb
    if not w.enabled:
        return None
    import wandb

    directory = Path(w.dir or settings.home_path / "wandb")
    directory.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=w.project, name=run_name, config=config, mode=w.mode, dir=str(directory),
                      reinit="finish_previous")
