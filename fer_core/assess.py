"""A trained classifier scored as the pipeline scores every candidate: each held-out set of its dataset
version, the configured extra sets, the fixed sets as far faces (`pipeline.face_sizes`), its speed on this CPU,
and end to end through `fer predict`'s detector; and the one naming of those figures as flat metrics, which
MLflow runs, registry tags and the shipped baseline share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fer_core import evaluate
from fer_core.classify import Classifier
from fer_core.config import Settings
from fer_core.data.dataset import Dataset

E2E_PREFIX = "expw_test_e2e_"
E2E_KEYS = ("accuracy", "detection_recall", "accuracy_on_found", "accuracy_on_found_labelled_crop", "unmatched_boxes")


@dataclass
class Assessment:
    results: dict[str, dict[str, Any]]  # set name -> `evaluate.metrics` JSON
    speed: dict[str, float]  # `evaluate.speed`
    end_to_end: dict[str, Any]  # `through_detector`; empty without ExpW test images
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # set name -> the model's (N, 7) answers

    def metrics(self) -> dict[str, float]:
        """Every figure as one flat, named number (MLflow metrics)."""
        return {**evaluate.flat_metrics(self.results), **end_to_end_metrics(self.end_to_end), **self.speed}


def end_to_end_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The end-to-end figures as flat metrics: `expw_test_e2e_accuracy` and so on."""
    return {f"{E2E_PREFIX}{k}": result[k] for k in E2E_KEYS if k in result}


def end_to_end_of(metrics: dict[str, float]) -> dict[str, float]:
    """The end-to-end figures back from flat metrics (a finished MLflow run's)."""
    return {k: metrics[f"{E2E_PREFIX}{k}"] for k in E2E_KEYS if f"{E2E_PREFIX}{k}" in metrics}


def held_out_sets(settings: Settings, ds: Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The dataset's held-out sets, `pipeline.extra_eval`'s, and each of them as far faces."""
    sets = ds.eval_sets()
    for name, path in settings.pipeline.extra_eval.items():
        x, y, _ = evaluate.load_eval_data(path)
        sets[name] = (x, y)
    sets.update(evaluate.at_face_sizes(sets, settings.pipeline.face_sizes))
    return sets


def through_detector(settings: Settings, ds: Dataset, clf: Classifier) -> dict[str, Any]:
    """End to end on the whole images of the test split's ExpW faces, as `fer predict` sees them (its default
    detector, the shared crop); empty when the dataset has no ExpW test faces or its images are not at hand."""
    from fer_core import detect
    from fer_core.data import dataset

    images = dataset.expw_images(ds.path) if settings.data.expw else set()
    if not images:
        return {}
    result = evaluate.through_detector(clf, settings.data.expw, detector=detect.STILL_DETECTOR, images=images,
                                       margin=settings.data.margin, labelled_margin=settings.data.margin)
    return {k: v for k, v in result.items() if k != "unreadable_images"} | {
        "unreadable_images": len(result["unreadable_images"])}


def assess(settings: Settings, ds: Dataset, clf: Classifier) -> Assessment:
    sets = {name: xy for name, xy in held_out_sets(settings, ds).items() if len(xy[1])}
    probs = {name: clf.predict(x) for name, (x, _) in sets.items()}
    results = {name: evaluate.metrics(y, probs[name]) for name, (_, y) in sets.items()}
    return Assessment(results, evaluate.speed(clf), through_detector(settings, ds, clf), probs)
