"""Evaluation: metrics on any labelled face set, the readers for every evaluation format, and speed."""

from __future__ import annotations

import io
import time
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from fer_core import crop, storage
from fer_core.data import expw, fer2013
from fer_core.data.table import FACE
from fer_core.labels import EMOTIONS, NUM_CLASSES, label_index

FORMATS = ("auto", "fer2013", "folder", "expw", "votes")


def accuracy_interval(correct: int, n: int, confidence: float = 0.95) -> list[float]:
    """The Wilson score interval of an accuracy of `correct` out of `n`: where the model's accuracy on faces
    like these may lie. On 651 faces it is about +-3.8 points, which a reader of one figure needs to know."""
    from scipy.stats import binomtest

    ci = binomtest(int(correct), int(n)).proportion_ci(confidence, method="wilson")
    return [round(float(ci.low), 6), round(float(ci.high), 6)]


def metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """`n, accuracy, accuracy_ci95 [low, high], macro_f1, loss, ece, per_class{precision,recall,f1,support},
    confusion` (rows: true)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n = len(y_true)
    if n == 0:
        raise ValueError("no faces to evaluate")
    pred = probs.argmax(axis=1)
    classes = np.arange(NUM_CLASSES)
    confusion = confusion_matrix(y_true, pred, labels=classes)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, pred, labels=classes, zero_division=0)
    per_class = {name: {"precision": round(float(precision[i]), 6), "recall": round(float(recall[i]), 6),
                        "f1": round(float(f1[i]), 6), "support": int(support[i])} for i, name in enumerate(EMOTIONS)}
    f1s = f1[support > 0]  # macro over the classes the set has: a set without disgust is not marked down for it
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(n), y_true], 1e-7, 1.0))))
    correct = int((pred == y_true).sum())
    return {"n": int(n), "accuracy": round(correct / n, 6), "accuracy_ci95": accuracy_interval(correct, n),
            "macro_f1": round(float(np.mean(f1s)), 6), "loss": round(loss, 6),
            "ece": round(expected_calibration_error(y_true, probs), 6), "per_class": per_class, "confusion": confusion.tolist()}


def at_face_sizes(sets: dict[str, tuple[np.ndarray, np.ndarray]], sides: list[int]
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """FER2013's fixed test sets (sharp 48-pixel crops) as faces `side` pixels wide reach the classifier
    (`crop.as_seen_at`), one set per side: `<set>_at_<side>px`: what a far face or a low-resolution stream
    costs."""
    return {f"{name}_at_{side}px": (crop.as_seen_at(x, side), y)
            for name, (x, y) in sets.items() if name.startswith("fer2013_") for side in sides}


SUMMARY_KEYS = ("accuracy", "macro_f1", "loss")


def flat_metrics(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """`{set: metrics}` -> flat `set_accuracy`, `set_macro_f1`, `set_loss` numbers (MLflow, registry tags)."""
    return {f"{name}_{key}": float(r[key]) for name, r in results.items() for key in SUMMARY_KEYS if key in r}


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence, equal-width bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def detect_format(path: str) -> str:
    """Which reader `path` needs, from its name and first bytes; a clear error for a file none reads."""
    lowered = path.lower()
    if lowered.endswith(fer2013.CSV_SUFFIXES):
        head = storage.read_bytes(path)[:4096]
        if head[:2] == b"\x1f\x8b":
            return "fer2013"
        first = head.decode("utf-8", "replace").splitlines()[0].lower() if head else ""
        cols = {c.strip() for c in first.split(",")}
        if {"image", "label"} <= cols:
            return "votes"
        return "fer2013"
    if storage.exists(storage.join(path, expw.LABEL_FILE)):
        return "expw"
    if storage.is_file(path):
        raise ValueError(f"{path}: labelled data is a FER2013 CSV (.csv or .csv.gz), a votes CSV "
                         "(image,annotator,label), an ExpW folder or a folder of <emotion>/ images")
    return "folder"


def _image_face(data: bytes) -> np.ndarray | None:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    return cv2.resize(img, (FACE, FACE), interpolation=cv2.INTER_AREA) if img.shape != (FACE, FACE) else img


def read_votes(path: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A votes CSV `image,annotator,label`: the majority vote is the label (ties go to the earlier emotion).

    Images are face crops, relative to the CSV's folder; they are made gray and 48x48.
    """
    frame = pd.read_csv(io.BytesIO(storage.read_bytes(path)))
    missing = {"image", "label"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: a votes CSV needs columns image,annotator,label; missing {sorted(missing)}")
    frame["y"] = [label_index(v) for v in frame["label"]]
    base = str(PurePosixPath(path).parent) if storage.is_gcs(path) else str(Path(path).parent)
    faces, labels, ties, unreadable = [], [], 0, []
    for image, votes in frame.groupby("image", sort=True):
        counts = np.bincount(votes["y"], minlength=NUM_CLASSES)
        ties += int((counts == counts.max()).sum() > 1)
        try:
            face = _image_face(storage.read_bytes(storage.join(base, str(image))))
        except storage.NotFoundError:  # a failed read raises: a score on a silently smaller set is wrong
            face = None
        if face is None:
            unreadable.append(str(image))
            continue
        faces.append(face)
        labels.append(int(counts.argmax()))
    info = {"images": len(faces), "votes": len(frame), "ties": ties, "rejected": unreadable}
    return np.stack(faces) if faces else np.zeros((0, FACE, FACE), np.uint8), np.array(labels, np.int64), info


def load_eval_data(path: str, fmt: str = "auto", usage: str | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Every face of what `path` names, as uint8 faces and labels, plus what was skipped."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not storage.exists(path):
        raise storage.StorageError(f"evaluation data not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "votes":
        x, y, info = read_votes(path)
        return x, y, {"format": fmt, **info}
    if fmt == "expw":
        table, rejects = expw.read(path)
    elif fmt == "folder":
        table, rejects = fer2013.read_folder(path)
    else:
        table, rejects = fer2013.read(path)
    if usage:
        table = table.where((table.meta["usage"] == usage).to_numpy())
    return table.pixels, table.labels, {"format": fmt, "rejects": rejects.counts()}


def speed(classifier, batch: int = 256, single_runs: int = 200, seed: int = 0) -> dict[str, float]:
    """Faces per second batched and milliseconds for one face, on this CPU."""
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, (batch, FACE, FACE), dtype=np.uint8)
    classifier.predict(faces)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        classifier.predict(faces)
        best = max(best, batch / (time.perf_counter() - t0))
    one = faces[:1]
    times = []
    for _ in range(single_runs):
        t0 = time.perf_counter()
        classifier.predict(one)
        times.append(time.perf_counter() - t0)
    return {"faces_per_s": round(best, 1), "single_face_ms": round(float(np.median(times)) * 1000, 4),
            "single_face_p95_ms": round(float(np.percentile(times, 95)) * 1000, 4)}


def match_boxes(labelled: np.ndarray, predicted: np.ndarray, min_iou: float) -> list[int | None]:
    """For each labelled (x, y, w, h) box, the predicted box found for it (IoU >= `min_iou`) or None.
    Each predicted box matches one face; the faces with the best overlaps choose first."""
    if not len(predicted):
        return [None] * len(labelled)
    from fer_core.detect import iou

    overlap = iou(labelled, predicted)
    taken: set[int] = set()
    found: list[int | None] = [None] * len(labelled)
    for i in np.argsort(-overlap.max(axis=1), kind="stable"):
        for j in np.argsort(-overlap[i], kind="stable"):
            if overlap[i, j] < min_iou:
                break
            if j not in taken:
                taken.add(int(j))
                found[i] = int(j)
                break
    return found


def labelled_faces(root: str, images: set[str] | None = None) -> dict[str, list]:
    """ExpW-format labels grouped by image name (only `images` when given), empty boxes left out."""
    by_image: dict[str, list] = {}
    for b in expw.read_boxes(root)[0]:
        if b.right > b.left and b.bottom > b.top and (images is None or b.image in images):
            by_image.setdefault(b.image, []).append(b)
    return by_image




def through_detector(classifier, root: str, detector: Any = None, images: set[str] | None = None,
                     min_iou: float = 0.5, margin: float = 0.10, labelled_margin: float = 0.10) -> dict[str, Any]:
    """End to end on ExpW-format data, as `fer predict` sees it: whole images through the detector, its
    boxes cropped (`fer_core.crop`, grown by `margin`) and classified. A labelled face is found when a
    predicted box overlaps it with IoU >= `min_iou`; a missed face counts as wrong. `images`: only these
    image names (e.g. a dataset version's test split). `detector`: a name `detect.preset` knows (default: the
    one `fer predict` uses) or a detector object.

    The same found faces are also classified from their labelled boxes grown by `labelled_margin` (the
    training crop): the gap between the two accuracies is the train/serve skew of the crop geometry."""
    import cv2

    from fer_core import crop, detect

    detector_name = detector if isinstance(detector, str) else "" if detector is not None else detect.STILL_DETECTOR
    detector = detect.preset(detector_name) if detector_name else detector
    by_image = labelled_faces(root, images)
    y_true, found, served, labelled_crops, unreadable, unmatched = [], [], [], [], [], 0
    for name, faces in sorted(by_image.items()):
        try:
            data = storage.read_bytes(storage.join(root, expw.IMAGES, name))
        except storage.NotFoundError:
            unreadable.append(name)
            continue
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # for the detector
        if image is None:
            unreadable.append(name)
            continue
        gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)  # crops, decoded as training's
        predicted = detector.detect(image)
        labelled = np.array([[b.left, b.top, b.right - b.left, b.bottom - b.top] for b in faces])
        matches = match_boxes(labelled, predicted, min_iou)
        unmatched += len(predicted) - sum(m is not None for m in matches)
        for i, match in enumerate(matches):
            y_true.append(faces[i].label)
            found.append(match is not None)
            if match is not None:
                served.append(crop.crop_faces(gray, predicted[match:match + 1], margin)[0])
                labelled_crops.append(crop.crop_faces(gray, labelled[i:i + 1], labelled_margin)[0])
    y, hit = np.asarray(y_true, np.int64), np.asarray(found, bool)
    on_found = on_labelled = {}
    correct = np.zeros(len(y), bool)
    if hit.any():
        probs = classifier.predict(np.stack(served))
        on_found = metrics(y[hit], probs)
        on_labelled = metrics(y[hit], classifier.predict(np.stack(labelled_crops)))
        correct[hit] = probs.argmax(axis=1) == y[hit]
    return {"n": int(len(y)), "images": len(by_image) - len(unreadable), "unreadable_images": unreadable,
            "found": int(hit.sum()), "unmatched_boxes": unmatched,
            "detection_recall": round(float(hit.mean()), 4) if len(y) else 0.0,
            "accuracy_on_found": on_found.get("accuracy", 0.0),
            "accuracy_on_found_labelled_crop": on_labelled.get("accuracy", 0.0),
            "accuracy": round(float(correct.mean()), 4) if len(y) else 0.0,
            "accuracy_ci95": accuracy_interval(correct.sum(), len(y)) if len(y) else [0.0, 0.0],
            "min_iou": min_iou, "margin": margin, "labelled_margin": labelled_margin,
            "detector_name": detector_name, "detector": detect.describe(detector),
            "found_faces": on_found}
