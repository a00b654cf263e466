"""One tracked training run: train, evaluate on every benchmark set, log everything to MLflow (and W&B).

Logged per run: the flattened config as params; the dataset version and hash as the run's input;
per-epoch metrics; the git commit; learning curves, confusion matrices, a classification report, a
model card; the model with a signature and an input example.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from fer_core import evaluate, registry
from fer_core.classify import Classifier
from fer_core.config import Settings
from fer_core.data.dataset import Dataset
from fer_core.labels import EMOTIONS
from fer_core.train import TrainResult, train

log = logging.getLogger(__name__)


@dataclass
class TrackedRun:
    run_id: str
    model_uri: str  # the logged model, for registration
    model_path: Path  # the local .keras file
    results: dict[str, dict[str, Any]]  # evaluation set -> metrics JSON
    speed: dict[str, float]
    train: TrainResult
    extra: dict[str, Any] = field(default_factory=dict)

    def flat_metrics(self) -> dict[str, float]:
        out = {f"{name}_{k}": float(r[k]) for name, r in self.results.items() for k in ("accuracy", "macro_f1", "loss")}
        out.update({k: float(v) for k, v in self.speed.items()})
        return out


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


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def plot_learning_curves(history: dict[str, list[float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key in zip(axes, ("categorical_accuracy", "loss"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                ax.plot(np.arange(1, len(history[prefix + key]) + 1), history[prefix + key], style,
                        label=prefix + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    return _png(fig)


def plot_confusion(confusion: list[list[int]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    for i in range(len(EMOTIONS)):
        for j in range(len(EMOTIONS)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return _png(fig)


def model_card(settings: Settings, ds: Dataset, tr: TrainResult, results: dict[str, dict[str, Any]],
               speed: dict[str, float], commit: str) -> str:
    t = settings.train
    lines = [
        f"# Model card: {t.model} emotion classifier", "",
        "Classifies a 48x48 grayscale face into 7 emotions: " + ", ".join(EMOTIONS) + ".", "",
        "## Data",
        f"- dataset version `{ds.version}` at `{ds.path}`",
        f"- raw inputs: {json.dumps(ds.stats.get('fingerprint', {}))}",
        f"- training faces after SMOTE: {sum(ds.stats['counts']['smote'].values())}",
        "", "## Training",
        f"- model `{t.model}`, {tr.params:,} parameters; epochs run {tr.epochs_run} (budget {t.epochs}); "
        f"batch {t.batch_size}; learning rate {t.learning_rate}",
        f"- trained for {tr.seconds / 60:.1f} min on this machine's CPU ({tr.images_per_second:.0f} images/s)",
        f"- augmentation: {json.dumps(settings.augment.model_dump(mode='json'))}",
        f"- git commit `{commit}`; config hash `{settings.section_hash('data', 'balance', 'split', 'augment', 'train')}`",
        "", "## Speed (TFLite, this CPU)",
        f"- {speed['faces_per_s']:.0f} faces/s batched; {speed['single_face_ms']:.2f} ms for one face",
        "", "## Results", "",
        "| set | n | accuracy | macro-F1 | loss |", "| --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['n']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['loss']:.4f} |")
    if "test" in results:
        lines += ["", "Per class on the test split:", "", "| emotion | precision | recall | F1 | support |",
                  "| --- | --- | --- | --- | --- |"]
        for name, pc in results["test"]["per_class"].items():
            lines.append(f"| {name} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {pc['support']} |")
        cm = np.asarray(results["test"]["confusion"])
        off = [(cm[i, j], EMOTIONS[i], EMOTIONS[j]) for i in range(7) for j in range(7) if i != j]
        worst = sorted(off, reverse=True)[:3]
        lines += ["", "## Known limits",
                  "- Most confused (true -> predicted, test split): "
                  + "; ".join(f"{a} -> {b} ({n})" for n, a, b in worst),
                  "- FER2013 and ExpW are web images: mostly frontal, adult, and skewed in age, ethnicity and "
                  "lighting; posed and exaggerated expressions are over-represented.",
                  "- Labels are single-annotator (FER2013) or crowd labels; 'disgust' is rare in the raw data.",
                  "- For aggregate audience analytics only: not for decisions about individuals."]
    return "\n".join(lines) + "\n"


def evaluate_sets(clf: Classifier, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {name: evaluate.metrics(y, clf.predict(x)) for name, (x, y) in sets.items() if len(y)}


def extra_eval_sets(settings: Settings) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, path in settings.pipeline.extra_eval.items():
        x, y, _ = evaluate.load_eval_data(path)
        out[name] = (x, y)
    return out


def train_and_log(settings: Settings, ds: Dataset, run_dir: str | Path | None = None,
                  run_name: str | None = None, parent_run_id: str = "") -> TrackedRun:
    """Train on the dataset, evaluate, and log the whole run to MLflow (and W&B when enabled); with
    `parent_run_id`, as a child of that run (a sweep's runs under one parent)."""
    import mlflow
    from mlflow.models import infer_signature

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
        x_train, y_train = ds.splits["train"]
        dataset_input = mlflow.data.from_numpy(x_train[:1000], targets=y_train[:1000], source=ds.path,
                                               name=ds.version, digest=ds.version[3:])
        mlflow.log_input(dataset_input, context="training")
        tr = train(settings, ds.splits, run_dir, callbacks=callbacks)
        clf = Classifier.from_keras(tr.model)
        sets = ds.eval_sets()
        sets.update(extra_eval_sets(settings))
        results = evaluate_sets(clf, sets)
        speed = evaluate.speed(clf)
        metrics = {f"{n}_{k}": r[k] for n, r in results.items() for k in ("accuracy", "macro_f1", "loss")}
        metrics.update(speed)
        metrics.update({"train_seconds": tr.seconds, "epochs_run": tr.epochs_run, "params": tr.params,
                        "train_images_per_s": tr.images_per_second,
                        "train_images_seen": tr.extra.get("images_seen", 0)})
        mlflow.log_metrics(metrics)
        mlflow.log_text(json.dumps(results, indent=2), "classification_report.json")
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            (tmp_path / "learning_curves.png").write_bytes(plot_learning_curves(tr.history))
            for name, r in results.items():
                (tmp_path / f"confusion_{name}.png").write_bytes(plot_confusion(r["confusion"], f"{name} (n={r['n']})"))
            card = model_card(settings, ds, tr, results, speed, commit)
            (tmp_path / "model_card.md").write_text(card)
            (tmp_path / "model.tflite").write_bytes(clf.tflite)
            mlflow.log_artifacts(str(tmp_path))
        example = x_train[:2]
        signature = infer_signature(example, clf.predict(example))
        # The TensorFlow flavour stores Keras 3 models as data/model.keras (mlflow.keras 3.17 fails to save
        # an input example: it writes it before creating the model folder).
        info = mlflow.tensorflow.log_model(tr.model, name="model", signature=signature, input_example=example,
                                           pip_requirements=model_requirements())
        if wandb_run is not None:
            wandb_run.summary.update({k: v for k, v in metrics.items() if isinstance(v, int | float)})
            wandb_run.finish()
    return TrackedRun(run.info.run_id, info.model_uri, tr.model_path, results, speed, tr,
                      {"card": card, "run_name": run_name, "commit": commit})


def _start_wandb(settings: Settings, run_name: str, config: dict[str, Any]):
    w = settings.wandb
    if not w.enabled:
        return None
    import wandb

    directory = Path(w.dir or settings.home_path / "wandb")
    directory.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=w.project, name=run_name, config=config, mode=w.mode, dir=str(directory),
                      reinit="finish_previous")
