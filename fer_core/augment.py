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
    return keras.Sequential(steps, name="augment")
