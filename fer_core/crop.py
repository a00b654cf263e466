"""The one way a face becomes classifier input: a box grown by a margin, clipped to the image, 48x48 gray.

Training (ExpW's labelled boxes), `fer predict`, `fer analyze`, the evaluation through the detector and the
realtime worker all crop here, with the same margin (`data.margin`), so that the classifier sees in service
the geometry it was trained on. FER2013's faces come cropped already; the margin that makes Haar boxes
look like them and like ExpW's grown boxes is measured by `bench/crop_skew.py` (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from fer_core.data.table import FACE


def grow(box: tuple[int, int, int, int], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) grown by `margin` of its size on each side and clipped: (x0, y0, x1, y1)."""
    x, y, bw, bh = (int(v) for v in box)
    mx, my = int(round(bw * margin)), int(round(bh * margin))
    return max(0, x - mx), max(0, y - my), min(width, x + bw + mx), min(height, y + bh + my)


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray | None:
    """One (x, y, w, h) box -> a 48x48 uint8 face (INTER_AREA); None when less than 2x2 pixels are left."""
    if box[2] <= 0 or box[3] <= 0:
        return None
    h, w = gray.shape[:2]
    x0, y0, x1, y1 = grow(box, margin, w, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return cv2.resize(gray[y0:y1, x0:x1], (FACE, FACE), interpolation=cv2.INTER_AREA)


def crop_faces(gray: np.ndarray, boxes: np.ndarray, margin: float) -> np.ndarray:
    """Every (x, y, w, h) box -> (N, 48, 48) uint8; a box with nothing inside the image gives a black face."""
    out = np.zeros((len(boxes), FACE, FACE), np.uint8)
    for i, box in enumerate(np.asarray(boxes).reshape(-1, 4)):
        face = crop_face(gray, tuple(box), margin)
        if face is not None:
            out[i] = face
    return out
