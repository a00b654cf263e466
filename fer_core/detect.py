"""Face detection with OpenCV's Haar cascade, and cropping faces for the classifier.

Speed trick for live video: detect on a frame downscaled to `detect_width` (boxes are mapped back
to full resolution) and crop the faces from the full-resolution frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_core.data.table import FACE

CASCADE = "haarcascade_frontalface_default.xml"


def cascade_path() -> Path:
    path = Path(cv2.data.haarcascades) / CASCADE
    if not path.is_file():
        raise FileNotFoundError(f"Haar cascade not found at {path} (opencv-python-headless 4.x ships it; 5.x does not)")
    return path


@dataclass
class HaarDetector:
    """Boxes (x, y, w, h) in full-frame pixels. One OpenCV cascade per thread (they are not thread-safe)."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 48  # in full-frame pixels
    detect_width: int = 0  # 0 = detect at full resolution
    equalize: bool = False

    def __post_init__(self) -> None:
        self._local = threading.local()
        self._path = str(cascade_path())

    @property
    def _cascade(self) -> cv2.CascadeClassifier:
        c = getattr(self._local, "cascade", None)
        if c is None:
            c = cv2.CascadeClassifier(self._path)
            if c.empty():
                raise RuntimeError(f"cannot load Haar cascade {self._path}")
            self._local.cascade = c
        return c

    def detect(self, gray: np.ndarray) -> np.ndarray:
        h, w = gray.shape[:2]
        scale = 1.0
        small = gray
        if self.detect_width and w > self.detect_width:
            scale = self.detect_width / w
            small = cv2.resize(gray, (self.detect_width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        if self.equalize:
            small = cv2.equalizeHist(small)
        min_side = max(12, int(round(self.min_size * scale)))
        boxes = self._cascade.detectMultiScale(small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                               minSize=(min_side, min_side))
        if len(boxes) == 0:
            return np.zeros((0, 4), np.int32)
        boxes = np.asarray(boxes, np.float64)
        if scale != 1.0:
            boxes = boxes / scale
        return np.round(boxes).astype(np.int32)


def crop_faces(gray: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Crop each (x, y, w, h) box (clipped to the frame) and resize to 48x48 (INTER_AREA)."""
    out = np.empty((len(boxes), FACE, FACE), np.uint8)
    h, w = gray.shape[:2]
    for i, (x, y, bw, bh) in enumerate(boxes):
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(w, int(x + bw)), min(h, int(y + bh))
        crop = gray[y0:y1, x0:x1]
        out[i] = cv2.resize(crop, (FACE, FACE), interpolation=cv2.INTER_AREA) if crop.size else 0
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (x, y, w, h) boxes: shape (len(a), len(b))."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = (a[:, 2:3] * a[:, 3:4]) + (b[:, 2] * b[:, 3]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def redetect_near(detector: HaarDetector, gray: np.ndarray, seeds: np.ndarray, grow: float = 0.4,
                  face_px: int = 48, size_range: tuple[float, float] = (0.75, 1.35), gap: int = 32) -> np.ndarray:
    """Run the cascade only around each seed box, for faces of about the seed's size: one call per frame.

    OpenCV's detectMultiScale costs ~1 ms per call whatever the image size, so the windows around all
    seeds are scaled (seed face -> `face_px`) and laid side by side, with black gaps, in one mosaic.
    Boxes are mapped back to frame pixels. A seed with no face near it yields nothing.
    """
    seeds = np.asarray(seeds, np.int64).reshape(-1, 4)
    if not len(seeds):
        return np.zeros((0, 4), np.int32)
    h, w = gray.shape[:2]
    tiles, placements = [], []  # placement: (mosaic x0, scale, roi x0, roi y0, tile width)
    x_cursor = 0
    for x, y, bw, bh in seeds:
        gx, gy = int(bw * grow), int(bh * grow)
        x0, y0 = max(0, x - gx), max(0, y - gy)
        x1, y1 = min(w, x + bw + gx), min(h, y + bh + gy)
        if x1 - x0 < 8 or y1 - y0 < 8:
            continue
        scale = min(1.0, face_px / max(bw, bh))
        tile = cv2.resize(gray[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        tiles.append(tile)
        placements.append((x_cursor, scale, x0, y0, tile.shape[1]))
        x_cursor += tile.shape[1] + gap
    if not tiles:
        return np.zeros((0, 4), np.int32)
    mosaic = np.zeros((max(t.shape[0] for t in tiles), x_cursor - gap), np.uint8)
    for tile, (mx, *_rest) in zip(tiles, placements, strict=True):
        mosaic[: tile.shape[0], mx: mx + tile.shape[1]] = tile
    lo, hi = int(face_px * size_range[0]), int(face_px * size_range[1])
    boxes = detector._cascade.detectMultiScale(mosaic, scaleFactor=detector.scale_factor,
                                               minNeighbors=detector.min_neighbors, minSize=(lo, lo), maxSize=(hi, hi))
    found = []
    for bx, by, bw2, bh2 in np.asarray(boxes).reshape(-1, 4):
        cx = bx + bw2 / 2
        for mx, scale, x0, y0, tw in placements:
            if mx <= cx < mx + tw:
                found.append((round((bx - mx) / scale + x0), round(by / scale + y0), round(bw2 / scale),
                              round(bh2 / scale)))
                break
    return nms(np.asarray(found, np.int32).reshape(-1, 4))


def nms(boxes: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """Drop boxes overlapping an earlier, larger one by more than `threshold` IoU."""
    boxes = np.asarray(boxes, np.int32).reshape(-1, 4)
    if len(boxes) < 2:
        return boxes
    order = np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")
    boxes = boxes[order]
    keep: list[int] = []
    overlaps = iou(boxes, boxes)
    for i in range(len(boxes)):
        if all(overlaps[i, j] <= threshold for j in keep):
            keep.append(i)
    return boxes[sorted(keep)]
