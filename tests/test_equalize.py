"""The in-model histogram equalisation is OpenCV's, level for level, in Keras, after saving and in TFLite."""

from __future__ import annotations

import cv2
import keras
import numpy as np

from fer_core.classify import Classifier
from fer_core.equalize import EqualizeHistogram


def _faces() -> np.ndarray:
    """Faces whose histograms exercise every branch: spread, narrow, one level, two levels, soft gradients."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:48, :48]
    faces = [
        rng.integers(0, 256, (48, 48)),
        rng.integers(60, 90, (48, 48)),
        np.full((48, 48), 77),
        rng.choice([3, 200], (48, 48)),
        np.clip(rng.normal(100, 20, (48, 48)), 0, 255),
        (xx + yy) * 2,  # every level present twice or so: many ties
        np.where(xx < 24, 255, 0),
        *[np.clip(rng.normal(rng.uniform(40, 200), rng.uniform(5, 60), (48, 48)), 0, 255) for _ in range(40)],
    ]
    return np.stack(faces).astype(np.uint8)


def _opencv(faces: np.ndarray) -> np.ndarray:
    """The reference: OpenCV's own equalisation, face by face."""
    return np.stack([cv2.equalizeHist(f) for f in faces])


def test_equalises_exactly_as_opencv():
    faces = _faces()
    want = _opencv(faces)
    got = keras.ops.convert_to_numpy(EqualizeHistogram()(faces.astype("float32")))
    assert got.shape == faces.shape
    np.testing.assert_array_equal(got, want)
    # with a channel axis, as inside a model after the reshape
    got = keras.ops.convert_to_numpy(EqualizeHistogram()(faces[..., None].astype("float32")))
    np.testing.assert_array_equal(got[..., 0], want)


def test_survives_saving_and_tflite(tmp_path):
    """A model holding the layer, saved and loaded (safe mode) and converted to TFLite, answers as its readout
    does on OpenCV's equalised faces; on the faces as given it would answer otherwise."""
    readout = keras.Sequential([keras.Input(shape=(48, 48)), keras.layers.Reshape((48 * 48,)),
                                keras.layers.Dense(7, activation="softmax",
                                                   kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01, 1))])
    inputs = keras.Input(shape=(48, 48), dtype="uint8", name="face")
    model = keras.Model(inputs, readout(EqualizeHistogram(name="equalize")(inputs)))
    model.save(tmp_path / "eq.keras")
    loaded = keras.saving.load_model(tmp_path / "eq.keras", safe_mode=True, compile=False)
    faces = _faces()
    want = readout.predict(_opencv(faces).astype("float32"), verbose=0)
    np.testing.assert_allclose(loaded.predict(faces, verbose=0), want, atol=1e-6)
    np.testing.assert_allclose(Classifier.from_keras(loaded).predict(faces), want, atol=1e-5)
    assert np.abs(readout.predict(faces.astype("float32"), verbose=0) - want).max() > 1e-3


def test_exact_in_a_model_trained_in_bfloat16():
    """Built under train.precision=mixed_bfloat16 it still counts in float32: bfloat16 holds no count above 256."""
    from fer_core import models

    with models.computing_in("mixed_bfloat16"):
        layer = EqualizeHistogram()
    assert layer.compute_dtype == "float32"
    faces = _faces()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(faces.astype("float32"))),
                                  _opencv(faces))
