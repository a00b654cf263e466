"""Training-time augmentation as Keras preprocessing layers (the seed's settings by default).

Flip, rotation, shift and zoom are composed into ONE affine warp per image, as the seed's
ImageDataGenerator did. Chaining Keras' separate RandomRotation/RandomTranslation/RandomZoom layers
resamples three times; the resulting blur (mean |horizontal gradient| 13 vs 22 on clean faces) gave
the BatchNorm statistics a train/test shift that sank validation accuracy while training improved.

It runs inside the tf.data input pipeline, so it is active in training only and the saved model
stays free of random layers.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from fer_core.config import AugmentSettings


@keras.saving.register_keras_serializable(package="fer")
class RandomFaceAffine(layers.Layer):
    """Random horizontal flip, rotation (degrees), shift (fraction) and zoom (fraction), one resampling."""

    def __init__(self, rotation_deg: float = 20.0, shift: float = 0.1, zoom: float = 0.1, flip: bool = True,
                 fill_mode: str = "reflect", seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rotation_deg, self.shift, self.zoom, self.flip = rotation_deg, shift, zoom, flip
        self.fill_mode, self.seed = fill_mode, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=True):
        if not training:
            return inputs
        n = ops.shape(inputs)[0]
        h = ops.cast(ops.shape(inputs)[1], "float32")
        w = ops.cast(ops.shape(inputs)[2], "float32")
        limit = self.rotation_deg * math.pi / 180.0
        theta = keras.random.uniform((n,), -limit, limit, seed=self.seed_generator)
        scale = keras.random.uniform((n,), 1.0 - self.zoom, 1.0 + self.zoom, seed=self.seed_generator)
        tx = keras.random.uniform((n,), -self.shift, self.shift, seed=self.seed_generator) * w
        ty = keras.random.uniform((n,), -self.shift, self.shift, seed=self.seed_generator) * h
        if self.flip:
            coin = keras.random.uniform((n,), 0.0, 1.0, seed=self.seed_generator)
            f = ops.where(coin < 0.5, -1.0, 1.0)
        else:
            f = ops.ones((n,))
        cos, sin = ops.cos(theta) * scale, ops.sin(theta) * scale
        # output pixel p maps to input pixel M (p - c) + c + t, with M = scale * R(theta) * diag(f, 1)
        m00, m01, m10, m11 = cos * f, -sin, sin * f, cos
        cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
        a2 = cx + tx - m00 * cx - m01 * cy
        b2 = cy + ty - m10 * cx - m11 * cy
        zeros = ops.zeros((n,))
        transform = ops.stack([m00, m01, a2, m10, m11, b2, zeros, zeros], axis=1)
        return ops.image.affine_transform(inputs, transform, interpolation="bilinear", fill_mode=self.fill_mode,
                                          data_format="channels_last")

    def get_config(self):
        return {**super().get_config(), "rotation_deg": self.rotation_deg, "shift": self.shift, "zoom": self.zoom,
                "flip": self.flip, "fill_mode": self.fill_mode, "seed": self.seed}


@keras.saving.register_keras_serializable(package="fer")
class RandomBrightnessScale(layers.Layer):
    """Multiply pixel values by a factor drawn uniformly from [low, high] per image (Keras' own
    RandomBrightness adds an offset; the seed's ImageDataGenerator scaled)."""

    def __init__(self, low: float = 0.8, high: float = 1.2, value_max: float = 255.0, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.low, self.high, self.value_max, self.seed = low, high, value_max, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=True):
        if not training:
            return inputs
        shape = (ops.shape(inputs)[0], 1, 1, 1)
        factor = keras.random.uniform(shape, self.low, self.high, seed=self.seed_generator)
        return ops.clip(inputs * factor, 0.0, self.value_max)

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high, "value_max": self.value_max,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="fer")
class RandomLowResolution(layers.Layer):
    """With probability `rate`, a face shrunk to one of `sizes` pixels a side (antialiased) and enlarged back
    (bilinear): the blur of a small or soft in-the-wild face. Each size is computed for the whole batch and
    each face takes one or none of them, so the step stays one fixed graph."""

    def __init__(self, rate: float = 0.5, sizes: tuple[int, ...] = (24, 28, 32, 36, 40), seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.rate, self.sizes, self.seed = rate, tuple(int(s) for s in sizes), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=True):
        if not training or not self.rate:
            return inputs
        n, h, w = ops.shape(inputs)[0], inputs.shape[1], inputs.shape[2]
        coin = keras.random.uniform((n,), 0.0, 1.0, seed=self.seed_generator)
        pick = ops.cast(keras.random.uniform((n,), 0.0, len(self.sizes), seed=self.seed_generator), "int32")
        pick = ops.where(coin < self.rate, ops.minimum(pick, len(self.sizes) - 1), -1)
        out = inputs
        for i, size in enumerate(self.sizes):
            small = ops.image.resize(inputs, (size, size), interpolation="bilinear", antialias=True,
                                     data_format="channels_last")
            blurred = ops.image.resize(small, (h, w), interpolation="bilinear", data_format="channels_last")
            out = ops.where(ops.reshape(pick == i, (-1, 1, 1, 1)), blurred, out)
        return out

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "sizes": list(self.sizes), "seed": self.seed}


def build_augmenter(cfg: AugmentSettings, seed: int = 42) -> keras.Sequential:
    """A Sequential of random layers over float (N, 48, 48, 1) faces in [0, 255]."""
    steps: list[layers.Layer] = []
    if cfg.flip or cfg.rotation_deg or cfg.shift or cfg.zoom:
        steps.append(RandomFaceAffine(cfg.rotation_deg, cfg.shift, cfg.zoom, cfg.flip, seed=seed))
    low, high = cfg.brightness
    if (low, high) != (1.0, 1.0):
        steps.append(RandomBrightnessScale(low, high, seed=seed + 1))
    if cfg.erase:
        # Keras' own layer; `factor` (p, p) makes p the probability for every face. After the brightness, so
        # that the noise is not rescaled.
        steps.append(layers.RandomErasing(factor=(cfg.erase, cfg.erase), scale=tuple(cfg.erase_area),
                                          value_range=(0, 255), seed=seed + 2))
    if cfg.low_res:
        # Last: the blur of a small face comes after the camera's framing and light, and it blurs the noise of
        # an erased rectangle too.
        steps.append(RandomLowResolution(cfg.low_res, cfg.low_res_sizes, seed=seed + 3))
    return keras.Sequential(steps, name="augment")
