"""Temperature scaling (Guo et al., 2017): one number, fitted on the validation split, that makes a model's
probabilities mean what they say.

Analysts read probabilities, not only the top emotion: the worker draws the top three with their
probabilities and the timeline averages them per second. An averaged ensemble is under-confident (its
members disagree, so their mean is flat); a network trained with label smoothing is too. A temperature
fixes the scale without changing any prediction, so accuracy and the gate's paired test are untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import numpy as np
from scipy.optimize import minimize_scalar

from fer_core import models
from fer_core.evaluate import expected_calibration_error

log = logging.getLogger(__name__)

MIN_T, MAX_T = 0.05, 20.0


@dataclass(frozen=True)
class Calibration:
    temperature: float
    ece_before: float  # on the faces it was fitted on (the validation split)
    ece_after: float
    nll_before: float
    nll_after: float

    def as_metrics(self) -> dict[str, float]:
        return {"temperature": self.temperature, "val_ece_before_calibration": self.ece_before,
                "val_ece": self.ece_after, "val_nll_before_calibration": self.nll_before,
                "val_nll": self.nll_after}


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T), as `models.Temperature` computes it inside a saved model."""
    logits = np.log(np.clip(np.asarray(probs, np.float64), 1e-7, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of the labels (a 1-D convex problem in
    log T, solved to 1e-4)."""
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        raise ValueError("no faces to fit a temperature on")
    result = minimize_scalar(lambda log_t: nll(tempered(probs, float(np.exp(log_t))), y),
                             bounds=(np.log(MIN_T), np.log(MAX_T)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def calibrate(model: keras.Model, x_val: np.ndarray, y_val: np.ndarray,
              batch_size: int = 512) -> tuple[keras.Model, Calibration]:
    """The model wrapped with the temperature fitted on (x_val, y_val), and the figures before and after.
    A model that already has a temperature is refitted from its uncalibrated probabilities."""
    if model.name.endswith(models.CALIBRATED):
        model = [layer for layer in model.layers if isinstance(layer, keras.Model)][0]
    probs = model.predict(x_val, batch_size=batch_size, verbose=0)
    temperature = fit_temperature(probs, y_val)
    after = tempered(probs, temperature)
    result = Calibration(round(temperature, 4), round(expected_calibration_error(y_val, probs), 6),
                         round(expected_calibration_error(y_val, after), 6), round(nll(probs, y_val), 6),
                         round(nll(after, y_val), 6))
    log.info("temperature %.3f fitted on %d validation faces: ECE %.4f -> %.4f", temperature, len(y_val),
             result.ece_before, result.ece_after)
    return models.with_temperature(model, result.temperature), result
