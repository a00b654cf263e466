"""Temperature scaling (Guo et al., 2017): one number, fitted on the validation split, that makes a model's
probabilities mean what they say.

Analysts read probabilities, not only the top emotion: the worker draws the top three with their
probabilities and the timeline averages them per second. An averaged ensemble is under-confident (its
members disagree, so their mean is flat); a network trained with label smoothing is too. A temperature
fixes the scale without changing any prediction, so accuracy and the gate's paired test are untouched.

The validation split is six parts FER2013 to one part ExpW, and the two domains disagree: the shipped
ensemble is under-confident on FER2013's faces and over-confident on ExpW's, which one number cannot fix
for both (docs/EXPERIMENTS.md). Each source therefore weighs the same in the fit, so the majority
dataset does not decide the calibration of the in-the-wild faces the worker meets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

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
    ece_before: float  # on the faces it was fitted on (the validation split), every face counted once
    ece_after: float
    nll_before: float
    nll_after: float
    by_group: dict[str, tuple[float, float]] = field(default_factory=dict)  # source -> ECE before, after

    def as_metrics(self) -> dict[str, float]:
        out = {"temperature": self.temperature, "val_ece_before_calibration": self.ece_before,
               "val_ece": self.ece_after, "val_nll_before_calibration": self.nll_before, "val_nll": self.nll_after}
        for group, (before, after) in self.by_group.items():
            out |= {f"val_{group}_ece_before_calibration": before, f"val_{group}_ece": after}
        return out


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T), as `models.Temperature` computes it inside a saved model."""
    logits = np.log(np.clip(np.asarray(probs, np.float64), 1e-7, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood of the labels (weighted when `weights` is given)."""
    return float(np.average(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)), weights=weights))


def group_weights(groups: np.ndarray) -> np.ndarray:
    """Per-face weights under which every group (a face's source) weighs the same in total."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def fit_temperature(probs: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The temperature that minimises the (weighted) negative log-likelihood of the labels: a 1-D convex
    problem in log T, solved to 1e-4."""
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        raise ValueError("no faces to fit a temperature on")
    result = minimize_scalar(lambda log_t: nll(tempered(probs, float(np.exp(log_t))), y, weights),
                             bounds=(np.log(MIN_T), np.log(MAX_T)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def calibrate(model: keras.Model, x_val: np.ndarray, y_val: np.ndarray, groups: np.ndarray | None = None,
              batch_size: int = 512) -> tuple[keras.Model, Calibration]:
    """The model wrapped with the temperature fitted on (x_val, y_val), each group (the faces' sources)
    weighing the same, and the figures before and after. A model that already has a temperature is refitted
    from its uncalibrated probabilities."""
    model = models.without_temperature(model)
    probs = model.predict(x_val, batch_size=batch_size, verbose=0)
    weights = group_weights(groups) if groups is not None and len(groups) == len(y_val) else None
    temperature = round(fit_temperature(probs, y_val, weights), 4)
    after = tempered(probs, temperature)

    def ece(p: np.ndarray, mask: np.ndarray | slice = slice(None)) -> float:
        return round(expected_calibration_error(y_val[mask], p[mask]), 6)

    by_group = {} if weights is None else {
        str(g): (ece(probs, groups == g), ece(after, groups == g)) for g in np.unique(groups)}
    result = Calibration(temperature, ece(probs), ece(after), round(nll(probs, y_val), 6), round(nll(after, y_val), 6),
                         by_group)
    log.info("temperature %.3f fitted on %d validation faces: ECE %.4f -> %.4f %s", temperature, len(y_val),
             result.ece_before, result.ece_after, by_group)
    return models.with_temperature(model, temperature), result
