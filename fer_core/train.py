"""Training: a tf.data pipeline, the zoo model, callbacks, checkpoints and resume.

Transfer models train in two phases as the seed did: base frozen, then unfrozen at a low rate.
A run interrupted mid-way resumes from its last epoch when started again with the same run folder.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from fer_core import batchnorm, models
from fer_core.augment import build_augmenter
from fer_core.balance import weight_sources
from fer_core.calibrate import calibrate
from fer_core.config import Settings, TrainSettings
from fer_core.distill import cached_teacher_probabilities, soft_targets, teacher_summary
from fer_core.labels import NUM_CLASSES
from fer_core.progress import keras_callback as progress_bar

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"


@dataclass
class TrainResult:
    model: keras.Model
    model_path: Path
    history: dict[str, list[float]]
    seconds: float
    epochs_run: int
    images_per_second: float
    params: int
    extra: dict[str, Any] = field(default_factory=dict)


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, training: bool, augmenter=None,
                 seed: int = 42) -> tf.data.Dataset:
    """uint8 faces and int labels (or (N, 7) soft targets: fer_core.distill) -> batches of (faces, targets);
    augmentation on training batches."""
    import tensorflow as tf  # here, not at import: tools/accelerator_train.py uses this module without TensorFlow

    soft = y.ndim == 2
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.float32 if soft else np.int32)))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)

    def to_model(xb, yb):
        return xb, yb if soft else tf.one_hot(yb, NUM_CLASSES)

    ds = ds.map(to_model, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augmenter is not None and len(augmenter.layers):
        def augment(xb, yb):
            faces = tf.cast(xb, tf.float32)[..., None]
            faces = augmenter(faces, training=True)
            return tf.cast(tf.clip_by_value(tf.round(faces[..., 0]), 0, 255), tf.uint8), yb

        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def class_weights(y: np.ndarray) -> dict[int, float]:
    counts = np.bincount(y, minlength=NUM_CLASSES).astype(float)
    present = counts > 0
    weights = np.zeros(NUM_CLASSES)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def make_optimizer(t: TrainSettings, learning_rate: float) -> keras.optimizers.Optimizer:
    """`train.optimizer` at `learning_rate` (each phase has its own), with `train.weight_decay` if set."""
    decay = t.weight_decay or None
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=t.momentum, nesterov=True, weight_decay=decay)
    return keras.optimizers.Adam(learning_rate, weight_decay=decay)


def compile_for_training(model: keras.Model, optimizer: keras.optimizers.Optimizer, label_smoothing: float) -> None:
    """The loss and metric every phase trains with (bench/train_speed.py times this very step)."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="categorical_accuracy")],
    )


class _Progress(keras.callbacks.Callback):
    """Records epoch timings and writes a small progress file beside the checkpoints."""

    def __init__(self, path: Path, phase: str):
        super().__init__()
        self.path, self.phase, self.t0 = path, phase, time.time()
        self.epoch_seconds: list[float] = []
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.time() - self.t0)
        state = {"phase": self.phase, "epoch": epoch + 1, "seconds": round(self.epoch_seconds[-1], 1),
                 **{k: float(v) for k, v in (logs or {}).items()}}
        self.path.write_text(json.dumps(state))
        log.info("epoch %d (%s): %s", epoch + 1, self.phase, state)


class TimeBudget(keras.callbacks.Callback):
    """Stops training once the wall-clock budget is spent (checked after every batch, shared by all phases).

    A stopped epoch still validates and checkpoints, so a budget-limited run is a normal run, only shorter.
    """

    def __init__(self, minutes: float, started: float):
        super().__init__()
        self.deadline = started + minutes * 60
        self.spent = False

    def on_train_batch_end(self, batch, logs=None):
        if time.time() >= self.deadline:
            self.spent = True
            self.model.stop_training = True


def cosine_decay(done: float, peak: float, floor_ratio: float = 0.01) -> float:
    """Cosine decay from `peak` (done = 0) to `peak * floor_ratio` (done >= 1)."""
    floor = peak * floor_ratio
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, done)))


def cosine_rate(epoch: int, epochs: int, peak: float, floor_ratio: float = 0.01) -> float:
    """Cosine decay from `peak` at epoch 0 to `peak * floor_ratio` at the last epoch."""
    return cosine_decay(epoch / max(1, epochs - 1), peak, floor_ratio)


def _lr_schedule(kind: str, lr: float, epochs: int, patience: int) -> keras.callbacks.Callback:
    if kind == "cosine":  # per epoch; on resume Keras passes the true epoch index, so the curve carries on
        return keras.callbacks.LearningRateScheduler(lambda epoch, _: cosine_rate(epoch, epochs, lr))
    return keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=patience, min_lr=lr / 100)


def warm_start(model: keras.Model, path: str) -> None:
    """Start from the weights of a saved model (the shipped baseline, a champion) instead of random ones.

    Training goes on from where that model stopped: the way to spread a long CPU training over several runs,
    or to fine-tune a champion on new data. The architectures must match weight for weight.
    """
    source = models.load(path)
    networks = models.ensemble_members(source)
    if len(networks) > 1:  # an ensemble (the champion): start from its first network
        source = networks[0]
        log.info("%s is an ensemble of %d networks: starting from the first", path, len(networks))
    want = [w.shape for w in model.get_weights()]
    have = [w.shape for w in source.get_weights()]
    if want != have:
        raise ValueError(f"train.init_from={path}: its weights do not fit the configured '{model.name}' model "
                         f"({len(have)} weight arrays vs {len(want)}; same train.model and train.width needed)")
    model.set_weights(source.get_weights())
    log.info("weights initialised from %s", path)


def check_precision(precision: str) -> None:
    """Refuse, before any training, a `train.precision` this machine's TensorFlow cannot compute convolutions
    in: on a CPU, oneDNN runs bfloat16 ones only with AVX-512 BF16 or AMX units (not on an AVX2 CPU, nor under
    ONEDNN_MAX_CPU_ISA=AVX2), and would otherwise fail at the first batch with an opaque error."""
    if precision == "float32":
        return
    import tensorflow as tf

    dtype = precision.removeprefix("mixed_")
    faces = tf.zeros((1, 8, 8, 4), dtype)
    try:
        tf.nn.conv2d(faces, tf.zeros((3, 3, 4, 4), dtype), 1, "SAME")
        tf.nn.depthwise_conv2d(faces, tf.zeros((3, 3, 4, 1), dtype), [1, 1, 1, 1], "SAME")
    except tf.errors.OpError as e:
        raise ValueError(f"train.precision={precision}: TensorFlow cannot compute convolutions in {dtype} on this "
                         f"machine (a CPU needs AVX-512 BF16 or AMX for bfloat16); use train.precision=float32") from e


def refresh_statistics(model: keras.Model, train_faces: np.ndarray, t: TrainSettings) -> tuple[int, int]:
    """Batch-norm statistics re-estimated on a seeded sample of `t.bn_refresh_faces` clean training faces (and
    their mirrors when the model is served flip-averaged); (layers refreshed, faces used)."""
    pick = np.sort(np.random.default_rng(t.seed).permutation(len(train_faces))[:t.bn_refresh_faces])
    return batchnorm.refresh(model, train_faces[pick], mirrors=t.flip_average, seed=t.seed), len(pick)


def finish(model: keras.Model, settings: Settings, val: tuple[np.ndarray, np.ndarray],
           val_sources: np.ndarray | None = None,
           train_faces: np.ndarray | None = None) -> tuple[keras.Model, dict[str, dict]]:
    """The trained network as it is served: without training state, its batch-norm statistics re-estimated
    on clean training faces (`train.bn_refresh_faces`), flip-averaged (`train.flip_average`), then calibrated
    on the validation split, each source weighing the same (`train.calibrate`). Also what was done, for the
    run's record: `bn_refresh` (layers, faces) and `calibration` (its figures), each empty when skipped."""
    t = settings.train
    model = models.for_serving(model)
    done: dict[str, dict] = {"bn_refresh": {}, "calibration": {}}
    if t.bn_refresh_faces and train_faces is not None and len(train_faces):
        layers, faces = refresh_statistics(model, train_faces, t)
        if layers:
            done["bn_refresh"] = {"layers": layers, "faces": faces, "mirrors": t.flip_average}
    if t.flip_average:
        model = models.with_flip_average(model)
    if t.calibrate and len(val[1]):
        model, calibration = calibrate(model, *val, groups=val_sources)
        done["calibration"] = calibration.as_metrics()
    return model, done


def assemble(settings: Settings, run_dir: Path, val: tuple[np.ndarray, np.ndarray],
             val_sources: np.ndarray | None = None, train_faces: np.ndarray | None = None) -> TrainResult:
    """`train.model=ensemble`: the trained `train.members` averaged into one model; no training happens
    but `finish`: each member's batch-norm statistics re-estimated on this dataset's clean training faces,
    the ensemble's temperature fitted on the validation split (averaging makes it under-confident)."""
    t = settings.train
    missing = [m for m in t.members if not Path(m).is_file()]
    if len(t.members) < 2 or missing:
        raise ValueError("train.model=ensemble needs train.members: at least 2 .keras files"
                         + (f"; not found: {', '.join(missing)}" if missing else f", got {len(t.members)}"))
    model, done = finish(models.ensemble([models.load(m) for m in t.members]), settings, val, val_sources,
                         train_faces)
    model_path = run_dir / MODEL_FILE
    model.save(model_path)
    log.info("ensemble of %d members saved to %s", len(t.members), model_path)
    return TrainResult(model, model_path, {}, 0.0, 0, math.nan, model.count_params(),
                       {"members": list(t.members), "images_seen": 0, "budget_spent": False,
                        **done})


def train(settings: Settings, splits: dict[str, tuple[np.ndarray, np.ndarray]], run_dir: str | Path,
          callbacks: list[keras.callbacks.Callback] | None = None,
          sources: dict[str, np.ndarray] | None = None) -> TrainResult:
    """Train the configured zoo model on `splits['train']`, validating on `splits['val']`; `sources` (each
    split's face sources) is needed only for `train.source_weights`."""
    t = settings.train
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if t.model == models.ENSEMBLE:
        return assemble(settings, run_dir, splits["val"], (sources or {}).get("val"), splits["train"][0])
    check_precision(t.precision)
    keras.utils.set_random_seed(t.seed)
    if t.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(t.threads)
    x_train, y_train = splits["train"]
    x_val, y_val = splits["val"]
    if t.source_weights:
        if sources is None or "train" not in sources:
            raise ValueError("train.source_weights needs the training faces' sources (a dataset version)")
        x_train, y_train = weight_sources(x_train, y_train, sources["train"], t.source_weights, t.seed)
    mean, std = models.face_stats(x_train, equalize=t.equalize)
    model = models.build(t.model, width=t.width, dropout=t.dropout, input_size=t.input_size,
                         weights=t.weights, mean=mean, std=std, precision=t.precision, equalize=t.equalize)
    if t.init_from:
        warm_start(model, t.init_from)
    distilled: dict[str, float] = {}
    targets = y_train
    if t.teacher:
        probs = cached_teacher_probabilities(t.teacher, x_train, run_dir / "teacher_answers.npz")
        targets = soft_targets(y_train, probs, t.distill_alpha)
        distilled = teacher_summary(y_train, probs)
        log.info("distilling from %s (alpha %.2f): %s", t.teacher, t.distill_alpha, distilled)
    augmenter = build_augmenter(settings.augment, seed=t.seed) if settings.augment.enabled else None
    train_ds = make_dataset(x_train, targets, t.batch_size, training=True, augmenter=augmenter, seed=t.seed)
    val_ds = make_dataset(x_val, y_val, max(t.batch_size, 256), training=False)
    weights = class_weights(y_train) if t.class_weights else None

    phases = [("train", t.epochs, t.learning_rate)]
    if models.is_transfer(model) and t.weights:
        fine = t.fine_tune_epochs or max(1, t.epochs // 2)
        phases = [("frozen", max(1, t.epochs - fine), t.learning_rate), ("fine_tune", fine, t.fine_tune_learning_rate)]
    elif models.is_transfer(model):  # no pretrained weights: a frozen random base would learn nothing
        models.set_base_trainable(model, True, pretrained=False)
    budget = TimeBudget(t.max_minutes, time.time()) if t.max_minutes > 0 else None

    history: dict[str, list[float]] = {}
    seconds, epochs_run, batches = 0.0, 0, 0
    for phase, epochs, lr in phases:
        if budget is not None and budget.spent:
            break
        if phase == "fine_tune":
            models.set_base_trainable(model, True)
        compile_for_training(model, make_optimizer(t, lr), t.label_smoothing)
        progress = _Progress(run_dir / "progress.json", phase)
        cbs = [
            keras.callbacks.BackupAndRestore(str(run_dir / f"backup_{phase}"), save_freq="epoch"),
            keras.callbacks.ModelCheckpoint(str(run_dir / f"checkpoint_{phase}.keras"), save_freq="epoch"),
            keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor="val_categorical_accuracy",
                                            mode="max", save_best_only=True),
            keras.callbacks.EarlyStopping(monitor="val_categorical_accuracy", mode="max",
                                          patience=t.early_stopping_patience, restore_best_weights=True),
            _lr_schedule(t.lr_schedule, lr, epochs, t.reduce_lr_patience),
            progress, *([budget] if budget else []), *(callbacks or []),
        ]
        bar = progress_bar(epochs, len(train_ds))
        cbs += [bar] if bar is not None else []
        started = time.time()
        hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=weights, verbose=0,
                         callbacks=cbs, shuffle=False)  # train_ds shuffles itself, seeded
        seconds += time.time() - started
        epochs_run += len(hist.epoch)
        batches += progress.batches
        for key, values in hist.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
    best = run_dir / "best.keras"
    if best.is_file():  # EarlyStopping restores the best weights only when it stops early
        model.set_weights(models.load(str(best)).get_weights())
    model, done = finish(model, settings, (x_val, y_val), (sources or {}).get("val"), splits["train"][0])
    model_path = run_dir / MODEL_FILE
    model.save(model_path)
    images = min(batches * t.batch_size, epochs_run * len(x_train))  # the last batch of an epoch may be short
    ips = images / seconds if seconds else math.nan
    return TrainResult(model, model_path, history, seconds, epochs_run, ips, model.count_params(),
                       {"mean": mean, "std": std, "images_seen": images, "budget_spent": bool(budget and budget.spent),
                        **done, "distillation": distilled})
