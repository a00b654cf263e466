"""Train a zoo `compact` model on an accelerator through Keras 3 on JAX (no TensorFlow needed there).

Why: the CPU trains the compact model at ~150 faces/s, so an epoch budget that converges takes days.
This script trains the *same* architecture (fer_core.models), with the same augmentation
(fer_core.augment, run inside the jitted step) and label smoothing, on a dataset version that
`fer data build` wrote, for a wall-clock budget with a cosine learning rate over that budget.
Optionally it distils from a teacher (a bigger model of the same family trained the same way).

The saved `.keras` model is backend-neutral: `fer pipeline run --set train.init_from=FILE` warm-starts
from it, or `fer evaluate --model FILE` scores it, on the CPU with TensorFlow.

    KERAS_BACKEND=jax python tools/accelerator_train.py --data faces.npz --out runs/w28 --minutes 7

It needs keras 3, a backend (jax), numpy, pandas and pydantic (for fer_core.config), not TensorFlow: on a
GPU machine without them, carry their wheels. Several runs can share one GPU
(XLA_PYTHON_CLIENT_PREALLOCATE=false). `docs/EXPERIMENTS.md` has the runs behind the shipped baseline.
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import time
from pathlib import Path

if __name__ == "__main__":  # as a script, JAX unless told otherwise; imported (tests), whatever keras has
    os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from fer_core import models  # noqa: E402
from fer_core.augment import build_augmenter  # noqa: E402
from fer_core.config import AugmentSettings, TrainSettings  # noqa: E402
from fer_core.data.table import FACE  # noqa: E402
from fer_core.labels import NUM_CLASSES  # noqa: E402
from fer_core.train import cosine_decay  # noqa: E402


def load_arrays(path: str) -> dict[str, np.ndarray]:
    """A dataset version's faces.npz, or the same packed as .npz.xz to travel under a size limit."""
    raw = Path(path).read_bytes()
    if path.endswith(".xz"):
        raw = lzma.decompress(raw)
    with np.load(io.BytesIO(raw)) as z:
        return {k: z[k] for k in z.files}


class RoundToPixels(layers.Layer):
    """Augmented float faces back to the uint8 pixel grid, as the tf.data pipeline does."""

    def call(self, x):
        return ops.clip(ops.round(x[..., 0]), 0.0, 255.0)


def training_model(student: keras.Model, augment: keras.Model, teacher: keras.Model | None) -> keras.Model:
    """faces -> augment (training only) -> student probabilities (and the teacher's, side by side)."""
    inputs = keras.Input(shape=(FACE, FACE), dtype="float32", name="faces")
    x = layers.Reshape((FACE, FACE, 1))(inputs)
    x = RoundToPixels()(augment(x))
    out = student(x)
    if teacher is not None:
        teacher.trainable = False
        teacher.name = "teacher"
        out = layers.Concatenate()([out, teacher(x, training=False)])
    return keras.Model(inputs, out)


def distill_loss(alpha: float, temperature: float, smoothing: float):
    """alpha * smoothed cross-entropy on labels + (1 - alpha) * T^2 * KL(teacher_T || student_T)."""
    ce = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)

    def soften(p):
        logits = ops.log(ops.clip(p, 1e-7, 1.0)) / temperature
        return ops.softmax(logits, axis=-1)

    def loss(y_true, y_pred):
        student, teacher = y_pred[:, :NUM_CLASSES], y_pred[:, NUM_CLASSES:]
        hard = ce(y_true, student)
        if alpha >= 1.0:
            return hard
        ps, pt = soften(student), soften(teacher)
        kl = ops.sum(pt * (ops.log(ops.clip(pt, 1e-7, 1.0)) - ops.log(ops.clip(ps, 1e-7, 1.0))), axis=-1)
        return alpha * hard + (1 - alpha) * temperature**2 * ops.mean(kl)

    return loss


def student_accuracy(y_true, y_pred):
    return ops.mean(ops.cast(ops.argmax(y_true, -1) == ops.argmax(y_pred[:, :NUM_CLASSES], -1), "float32"))


class CosineOverBudget(keras.callbacks.Callback):
    """Cosine learning rate over a wall-clock budget (epochs per budget are unknown up front); stops at its end.

    Tracks the best validation accuracy and keeps that student's weights; appends each epoch to epochs.jsonl,
    so a run's progress can be read while it runs (a CPU epoch takes minutes) and survives a stopped run."""

    def __init__(self, student: keras.Model, peak: float, minutes: float, warmup_epochs: int, out: Path):
        super().__init__()
        self.student, self.peak, self.budget, self.warmup = student, peak, minutes * 60, warmup_epochs
        self.out, self.t0, self.best, self.history = out, time.time(), -1.0, []
        (out / "epochs.jsonl").write_text("")  # this run's epochs only

    def _fraction(self) -> float:
        return min(1.0, (time.time() - self.t0) / self.budget)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch < self.warmup:
            lr = self.peak * (epoch + 1) / self.warmup
        else:
            lr = cosine_decay(self._fraction(), self.peak)
        self.model.optimizer.learning_rate.assign(lr)

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs.update(epoch=epoch + 1, seconds=round(time.time() - self.t0, 1),
                    learning_rate=float(self.model.optimizer.learning_rate.numpy()))
        self.history.append(logs)
        with open(self.out / "epochs.jsonl", "a") as f:
            f.write(json.dumps(logs) + "\n")
        if logs["val_student_accuracy"] > self.best:
            self.best = logs["val_student_accuracy"]
            self.student.save(self.out / "best.keras")
        spent = self._fraction() >= 1.0
        if epoch % 10 == 0 or spent:
            print(json.dumps({"run": self.out.name, **logs}), flush=True)
        self.model.stop_training = spent


def device_name() -> str:
    """What trained, for the record: the accelerator's kind under JAX (e.g. NVIDIA H200); empty otherwise."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    return ""


def dataset_version_of(data: str) -> str:
    """The dataset version a faces.npz belongs to, read off its folder (`fer data build` names it ds-...)."""
    parent = Path(data).resolve().parent.name
    return parent if parent.startswith("ds-") else ""


def main(argv: list[str] | None = None) -> dict:
    defaults = TrainSettings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="faces.npz of a dataset version (x_train, y_train, x_val, y_val); also .npz.xz")
    p.add_argument("--out", required=True)
    p.add_argument("--width", type=int, default=defaults.width)
    p.add_argument("--dropout", type=float, default=defaults.dropout)
    p.add_argument("--minutes", type=float, default=7.0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-epochs", type=int, default=3)
    p.add_argument("--smoothing", type=float, default=defaults.label_smoothing)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--equalize", action="store_true", help="equalise each face inside the network "
                   "(train.equalize; fer_core.equalize)")
    p.add_argument("--teacher", default="", help="a .keras model to distil from")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the label loss when distilling")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--max-epochs", type=int, default=10_000)
    p.add_argument("--precision", default=defaults.precision, choices=models.PRECISIONS,
                   help="the training arithmetic (train.precision); the saved networks load in float32")
    p.add_argument("--dataset-version", default="", help="the dataset version DATA came from, for the record "
                   "(default: DATA's folder name when it is one, ds-...)")
    a = p.parse_args(argv)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(a.seed)
    d = load_arrays(a.data)
    x_train, y_train = d["x_train"].astype("float32"), keras.utils.to_categorical(d["y_train"], NUM_CLASSES)
    x_val, y_val = d["x_val"].astype("float32"), keras.utils.to_categorical(d["y_val"], NUM_CLASSES)
    mean, std = models.face_stats(d["x_train"], equalize=a.equalize)
    with models.computing_in(a.precision):
        student = models.build_compact(width=a.width, dropout=a.dropout, mean=mean, std=std, equalize=a.equalize)
    teacher = models.load(a.teacher) if a.teacher else None
    model = training_model(student, build_augmenter(AugmentSettings(), seed=a.seed), teacher)
    model.compile(optimizer=keras.optimizers.Adam(a.lr),
                  loss=distill_loss(1.0 if teacher is None else a.alpha, a.temperature, a.smoothing),
                  metrics=[student_accuracy])
    schedule = CosineOverBudget(student, a.lr, a.minutes, a.warmup_epochs, out)
    started = time.time()
    model.fit(x_train, y_train, batch_size=a.batch, epochs=a.max_epochs, validation_data=(x_val, y_val),
              callbacks=[schedule], verbose=0)
    seconds = time.time() - started
    epochs = len(schedule.history)
    summary = {"run": out.name, "width": a.width, "params": student.count_params(), "epochs": epochs,
               "seconds": round(seconds, 1), "images_per_s": round(epochs * len(x_train) / seconds),
               "best_val_accuracy": round(schedule.best, 4), "teacher": a.teacher, "args": vars(a),
               "backend": keras.backend.backend(), "device": device_name(),
               "dataset_version": a.dataset_version or dataset_version_of(a.data),
               "git_commit": os.environ.get("FER_GIT_COMMIT", ""), "history": schedule.history}
    (out / "history.json").write_text(json.dumps(summary))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("history", "args")}), flush=True)
    return summary


if __name__ == "__main__":
    main()
