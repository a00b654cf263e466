"""ExpW reader: `label/label.lst` + `origin/`; crop each box with a margin, gray, 48x48 (INTER_AREA).

Images are decoded on a bounded thread pool (OpenCV releases the GIL) and only the 48x48 crops are
kept, so memory stays flat however many images there are.

With `box_source="haar"` (`data.expw_boxes`), each image is scanned by Haar's `still` preset (`fer predict`'s
first pass) and a labelled face that a Haar box finds (IoU >= 0.5) is cropped from that box instead of its
labelled one: the classifier then trains on the crop geometry it meets in service. Faces Haar misses keep their
labelled box.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from fer_core import crop, progress, storage
from fer_core.data.table import FACE, FaceTable, Rejects
from fer_core.labels import NUM_CLASSES

LABEL_FILE = "label/label.lst"
IMAGES = "origin"
BOX_SOURCES = ("labelled", "haar")
MIN_IOU = 0.5  # a Haar box stands for a labelled face when they overlap this much (as in the evaluation)


@dataclass(frozen=True)
class Box:
    image: str
    face_id: int
    top: int
    left: int
    right: int
    bottom: int
    confidence: float
    label: int
    line: int


def parse_label_file(text: str, where: str = LABEL_FILE) -> tuple[list[Box], Rejects]:
    """Parse label.lst; malformed lines and labels outside 0-6 are rejected with their line number."""
    boxes, rejects = [], Rejects()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 8:
            rejects.add("expw", f"{where}:{number}", "malformed_line", f"{len(parts)} fields, expected 8: {line}")
            continue
        try:
            face_id, top, left, right, bottom = (int(float(v)) for v in parts[1:6])
            confidence, label_f = float(parts[6]), float(parts[7])
        except ValueError:
            rejects.add("expw", f"{where}:{number}", "malformed_line", f"non-numeric field: {line}")
            continue
        if label_f % 1 or not 0 <= label_f < NUM_CLASSES:
            rejects.add("expw", f"{parts[0]}#{face_id}", "bad_label", f"label={parts[7]!r} (line {number})")
            continue
        boxes.append(Box(parts[0], face_id, top, left, right, bottom, confidence, int(label_f), number))
    return boxes, rejects


def crop_face(gray: np.ndarray, box: Box, margin: float) -> np.ndarray | None:
    """The labelled box through the one crop function (`fer_core.crop`); None when nothing is left."""
    return crop.crop_face(gray, (box.left, box.top, box.right - box.left, box.bottom - box.top), margin)


def _load_image(root: str, name: str) -> tuple[np.ndarray | None, str]:
    """The image in gray, or the reason it is a reject: missing (a definite not-found) or undecodable.
    Any other read failure is raised (after storage's retries): the build fails naming the object,
    instead of dropping faces that a second read would have found."""
    path = storage.join(root, IMAGES, name)
    try:
        data = storage.read_bytes(path)
    except storage.NotFoundError:
        return None, "missing_image"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        return None, "unreadable_image"
    return img, ""


def haar_boxes(gray: np.ndarray, boxes: list[Box], detector) -> list[tuple[int, int, int, int] | None]:
    """For each labelled box, the (x, y, w, h) Haar box that found it (IoU >= MIN_IOU), or None."""
    from fer_core.evaluate import match_boxes

    labelled = np.array([[b.left, b.top, b.right - b.left, b.bottom - b.top] for b in boxes], np.float64)
    found = detector.detect(gray)
    return [None if j is None else tuple(int(v) for v in found[j])
            for j in match_boxes(labelled.reshape(-1, 4), found, MIN_IOU)]


def _crop_image(root: str, name: str, boxes: list[Box], margin: float, detector=None,
                ) -> list[tuple[Box, np.ndarray | None, str]]:
    img, reason = _load_image(root, name)
    if img is None:
        return [(b, None, reason) for b in boxes]
    matched = haar_boxes(img, boxes, detector) if detector is not None else [None] * len(boxes)
    out = []
    for b, haar in zip(boxes, matched, strict=True):
        face = crop_face(img, b, margin) if haar is None else crop.crop_face(img, haar, margin)
        out.append((b, face, "" if face is not None else "empty_box"))
    return out


def _detector(boxes: str):
    if boxes not in BOX_SOURCES:
        raise ValueError(f"data.expw_boxes must be one of {BOX_SOURCES}, got {boxes!r}")
    if boxes == "labelled":
        return None
    from fer_core import detect

    return detect.preset("still")


def iter_faces(root: str, boxes: list[Box], margin: float, workers: int = 0, box_source: str = "labelled",
               ) -> Iterator[tuple[Box, np.ndarray | None, str]]:
    """Stream (box, face or None, reject reason) per box, decoding each image once, in parallel; with
    `box_source="haar"`, faces Haar finds are cropped from Haar's box (module docstring)."""
    detector = _detector(box_source)
    by_image: dict[str, list[Box]] = defaultdict(list)
    for b in boxes:
        by_image[b.image].append(b)
    names = list(by_image)
    workers = workers or os.cpu_count() or 2
    window = workers * 8  # bounded in-flight work: only this many images are ever decoded at once
    with ThreadPoolExecutor(max_workers=workers) as pool, progress.bar(total=len(names), desc="ExpW images",
                                                                         unit="image") as bar:
        pending = []
        for name in names:
            pending.append(pool.submit(_crop_image, root, name, by_image[name], margin, detector))
            if len(pending) >= window:
                yield from pending.pop(0).result()
                bar.update(1)
        for fut in pending:
            yield from fut.result()
            bar.update(1)


def read_boxes(root: str, limit: int = 0, min_confidence: float | None = None) -> tuple[list[Box], Rejects]:
    """The labelled boxes of an ExpW root (label.lst), filtered; malformed lines are rejects."""
    label_path = storage.join(root, LABEL_FILE)
    if not storage.exists(label_path):
        raise storage.StorageError(f"ExpW label file not found: {label_path}")
    boxes, rejects = parse_label_file(storage.read_text(label_path), label_path)
    if min_confidence is not None:
        boxes = [b for b in boxes if b.confidence >= min_confidence]
    return (boxes[:limit] if limit else boxes), rejects


def shard(boxes: list[Box], n: int) -> list[list[Box]]:
    """Split boxes into at most n shards of whole images (an image is decoded once, in one shard)."""
    by_image: dict[str, list[Box]] = defaultdict(list)
    for b in boxes:
        by_image[b.image].append(b)
    images = list(by_image)
    size = max(1, -(-len(images) // max(1, n)))
    return [[b for name in images[i:i + size] for b in by_image[name]] for i in range(0, len(images), size)]


def decode(root: str, boxes: list[Box], margin: float = 0.10, workers: int = 0, box_source: str = "labelled",
           ) -> tuple[FaceTable, Rejects]:
    """Crop the faces of these boxes from their images; the ones that cannot be used are rejects."""
    rejects = Rejects()
    faces = np.zeros((len(boxes), FACE, FACE), np.uint8)
    rows = []
    for box, face, reason in iter_faces(root, boxes, margin, workers, box_source):
        if face is None:
            rejects.add("expw", f"{box.image}#{box.face_id}", reason, f"label.lst line {box.line}")
            continue
        faces[len(rows)] = face
        rows.append({"image": f"expw/{box.image}#{box.face_id}", "source": "expw", "face_id": box.face_id,
                     "label": box.label, "usage": "", "confidence": box.confidence, "group": box.image})
    meta = pd.DataFrame(rows, columns=["image", "source", "face_id", "label", "usage", "confidence", "group"])
    return FaceTable(meta, faces[: len(rows)]), rejects


def read(root: str, limit: int = 0, margin: float = 0.10, min_confidence: float | None = None,
         workers: int = 0, box_source: str = "labelled") -> tuple[FaceTable, Rejects]:
    """Read an ExpW root into a face table; faces that cannot be used are skipped and reported."""
    boxes, rejects = read_boxes(root, limit, min_confidence)
    table, bad = decode(root, boxes, margin, workers, box_source)
    rejects.extend(bad)
    return table, rejects
