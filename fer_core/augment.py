"""Training-time augmentation as Keras preprocessing layers (the seed's settings by default).

It runs inside the tf.data input pipeline, so it is active in training only and the saved model
stays free of random layers.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_core.config import AugmentSettings


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
        shape = (keras.ops.shape(inputs)[0], 1, 1, 1)
        factor = keras.random.uniform(shape, self.low, self.high, seed=self.seed_generator)
        return keras.ops.clip(inputs * factor, 0.0, self.value_max)

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high, "value_max": self.value_max,
                "seed": self.seed}


def build_augmenter(cfg: AugmentSettings, seed: int = 42) -> keras.Sequential:
    """A Sequential of random layers over float (N, 48, 48, 1) faces in [0, 255]."""
    steps: list[layers.Layer] = []
    if cfg.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if cfg.rotation_deg:
        steps.append(layers.RandomRotation(cfg.rotation_deg / 360.0, fill_mode="reflect", seed=seed + 1))
    if cfg.shift:
        steps.append(layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="reflect", seed=seed + 2))
    if cfg.zoom:
        steps.append(layers.RandomZoom(cfg.zoom, cfg.zoom, fill_mode="reflect", seed=seed + 3))
    low, high = cfg.brightness
    if (low, high) != (1.0, 1.0):
        steps.append(RandomBrightnessScale(low, high, seed=seed + 4))
    return keras.Sequential(steps, name="augment")
