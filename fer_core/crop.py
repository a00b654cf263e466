"""The one way a face becomes classifier input: a box grown by a margin, its shape kept, 48x48 gray.

Training (ExpW's labelled boxes), `fer predict`, `fer analyze`, the evaluation through the detector and the
realtime worker all crop here, with the same margin (`data.margin`), so that the classifier sees in service
the geometry it was trained on. FER2013's faces come cropped already; the margin that makes Haar boxes
look like them and like ExpW's grown boxes is measured by `bench/crop_skew.py` (docs/BENCHMARKS.md).

Where the grown box leaves the image (a close-up, a face entering the frame) the image is edge-replicated
rather than the box clipped: a clipped box resized to a square squashes the face, and the real face video's
smile read as sad because of it (docs/EXPERIMENTS.md, "The crop's shape, adopted").
"""

from __future__ import annotations

import cv2
import numpy as np

from fer_core.data.table import FACE


def grow(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int, int]:
    """(x, y, w, h) grown by `margin` of its size on each side: (x0, y0, x1, y1), possibly past the image."""
    x, y, bw, bh = (int(v) for v in box)
    mx, my = int(round(bw * margin)), int(round(bh * margin))
    return x - mx, y - my, x + bw + mx, y + bh + my


def inside(gray: np.ndarray, box: tuple[int, int, int, int], margin: float
           ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The part of the grown box inside the image, and how far the grown box reaches past each edge (top,
    bottom, left, right); None for an empty box or one with less than 2x2 pixels of the image inside."""
    if box[2] <= 0 or box[3] <= 0:
        return None
    h, w = gray.shape[:2]
    x0, y0, x1, y1 = grow(box, margin)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:
        return None
    return gray[cy0:cy1, cx0:cx1], (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray | None:
    """One (x, y, w, h) box -> a 48x48 uint8 face (INTER_AREA) of the whole grown box, the image's edge
    pixels repeated where the box leaves it; None when less than 2x2 pixels of the image are inside."""
    found = inside(gray, box, margin)
    if found is None:
        return None
    region, past = found
    if any(past):  # pad only the region, not the frame: cheap in the worker
        region = cv2.copyMakeBorder(region, *past, cv2.BORDER_REPLICATE)
    return cv2.resize(region, (FACE, FACE), interpolation=cv2.INTER_AREA)


def crop_faces(gray: np.ndarray, boxes: np.ndarray, margin: float) -> np.ndarray:
    """Every (x, y, w, h) box -> (N, 48, 48) uint8; a box with nothing inside the image gives a black face."""
    out = np.zeros((len(boxes), FACE, FACE), np.uint8)
    for i, box in enumerate(np.asarray(boxes).reshape(-1, 4)):
        face = crop_face(gray, tuple(box), margin)
        if face is not None:
            out[i] = face
    return out


SEEN_SIDES = range(8, FACE)  # the face widths `as_seen_at` models: below 8 pixels a face says nothing


def as_seen_at(faces: np.ndarray, side: int, enlarge: int = cv2.INTER_AREA) -> np.ndarray:
    """48x48 faces as the classifier gets them from a face `side` pixels wide in a frame: shrunk to that side
    (the detail a smaller face holds), then enlarged back by `crop_face`'s own resize: a face far from the
    camera, or a low-resolution stream. `enlarge`: another OpenCV interpolation, to compare (experiments)."""
    if side != FACE and side not in SEEN_SIDES:
        raise ValueError(f"a face side must be {SEEN_SIDES.start}-{FACE} pixels, got {side}")
    faces = np.asarray(faces, np.uint8)
    if side == FACE:
        return faces.copy()
    out = np.empty((len(faces), FACE, FACE), np.uint8)
    for i, face in enumerate(faces):
        small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        out[i] = cv2.resize(small, (FACE, FACE), interpolation=enlarge)
    return out
