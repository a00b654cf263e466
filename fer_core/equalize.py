"""Histogram equalisation of each face inside the model, exactly as OpenCV's `cv2.equalizeHist`.

Why: FER2013's faces come histogram-equalised (their gray levels spread evenly over 0-255: a face's mean is
about 128 and its standard deviation about 74, and equalising one again moves a pixel by 1.2 levels at the
median), while ExpW's crops and the worker's camera frames come as they were shot (equalising one moves a
pixel by 32 levels at the median). A model that equalises every face it is given (`train.equalize`) sees one
kind of face in training and in service, whatever the camera's exposure. Measured, that did not read ExpW's
faces better and it doubles a compact network's time a face, so it is off by default (docs/EXPERIMENTS.md,
"Equalised faces").

Written with Keras ops only (one matrix product for the histogram, a gather for the mapping), so it trains
on any backend, converts to TFLite with builtin ops, and needs no OpenCV inside the model.
"""

from __future__ import annotations

import math

import cv2
import keras
import numpy as np
from keras import layers, ops

LEVELS = 256
_SPLIT = 16  # a level is (high, low) = divmod(level, 16): two 16-wide one-hots instead of one 256-wide


@keras.saving.register_keras_serializable(package="fer")
class EqualizeHistogram(layers.Layer):
    """(N, H, W[, 1]) gray levels 0-255 -> the same shape, each face equalised on its own histogram.

    OpenCV's rule: with n pixels, cdf(v) the number of pixels at or below level v and m the count of the
    darkest level present, a pixel at v becomes round((cdf(v) - m) * 255 / (n - m)), rounding half to even;
    a face of one level keeps it. It computes in float32 whatever the model's precision: the histogram's counts
    (up to 2,304) are not whole numbers in bfloat16.
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, faces):
        shape = ops.shape(faces)
        n = math.prod(faces.shape[1:])
        levels = ops.cast(ops.reshape(faces, (-1, n)), "int32")
        high = ops.one_hot(levels // _SPLIT, _SPLIT, dtype=self.compute_dtype)
        low = ops.one_hot(levels % _SPLIT, _SPLIT, dtype=self.compute_dtype)
        hist = ops.reshape(ops.einsum("bnh,bnl->bhl", high, low), (-1, LEVELS))
        cdf = ops.cumsum(hist, axis=1)
        darkest = ops.min(ops.where(hist > 0, cdf, float(n)), axis=1, keepdims=True)
        spread = float(n) - darkest
        scale = ops.cast(LEVELS - 1, self.compute_dtype) / ops.maximum(spread, 1.0)
        lut = ops.clip(ops.round((cdf - darkest) * scale), 0, LEVELS - 1)
        mapped = ops.take_along_axis(lut, levels, axis=1)
        mapped = ops.where(spread > 0, mapped, ops.cast(levels, self.compute_dtype))
        return ops.reshape(ops.cast(mapped, self.compute_dtype), shape)

    def compute_output_shape(self, input_shape):
        return input_shape


def equalise(faces: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) faces equalised with OpenCV: what the layer computes, for arrays outside a model."""
    faces = np.asarray(faces, np.uint8)
    return np.stack([cv2.equalizeHist(face) for face in faces]) if len(faces) else faces
