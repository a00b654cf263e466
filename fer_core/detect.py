"""Face detection with OpenCV's Haar cascade, and detectors joined or looking several ways (`Combined`,
`Padded`, `Tiled`) around it or BlazeFace (`fer_core.blazeface`). Cropping the faces found is `fer_core.crop`.

`LocalHaar` runs the same detection on parts of a frame with the same answer there: the realtime
worker's `track` mode uses it to re-scan only around the faces it knows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"
HAAR_WINDOW = 24  # the cascade's native window (pixels)


def cascade_path() -> Path:
    path = Path(cv2.data.haarcascades) / CASCADE
    if not path.is_file():
        raise FileNotFoundError(f"Haar cascade not found at {path} (opencv-python-headless 4.x ships it; 5.x does not)")
    return path


@dataclass
class HaarDetector:
    """Boxes (x, y, w, h) in full-frame pixels. One OpenCV cascade per thread (they are not thread-safe).

    With `profile`, OpenCV's profile-face cascade also scans the image and its mirror image (it knows one
    side only), and its boxes are added where no frontal box is: more of the turned faces photographs hold.
    With `rotations` (degrees), the frontal cascade also scans the image turned by each angle, and the
    upright box around each face it finds there is added where no box is yet: tilted heads, which the
    upright cascade misses.
    """

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 48  # in full-frame pixels
    detect_width: int = 0  # 0 = detect at full resolution
    equalize: bool = False
    profile: bool = False
    rotations: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self._local = threading.local()
        self._path = str(cascade_path())

    @property
    def _cascade(self) -> cv2.CascadeClassifier:
        return self._load(self._path)

    def _load(self, path: str) -> cv2.CascadeClassifier:
        cascades = getattr(self._local, "cascades", None)
        if cascades is None:
            cascades = self._local.cascades = {}
        if path not in cascades:
            c = cv2.CascadeClassifier(path)
            if c.empty():
                raise RuntimeError(f"cannot load Haar cascade {path}")
            cascades[path] = c
        return cascades[path]

    def _scan(self, cascade: cv2.CascadeClassifier, gray: np.ndarray, min_side: int) -> np.ndarray:
        boxes = cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                         minSize=(min_side, min_side))
        return np.asarray(boxes, np.float64).reshape(-1, 4)

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Boxes of the faces in a gray image (a BGR one is turned gray first)."""
        if gray.ndim == 3:
            gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape[:2]
        scale = 1.0
        small = gray
        if self.detect_width and w > self.detect_width:
            scale = self.detect_width / w
            small = cv2.resize(gray, (self.detect_width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        if self.equalize:
            small = cv2.equalizeHist(small)
        min_side = max(12, int(round(self.min_size * scale)))
        boxes = self._scan(self._cascade, small, min_side)
        if self.profile:
            boxes = add_unseen(boxes, *self._profiles(small, min_side))
        if self.rotations:
            boxes = add_unseen(boxes, *(self._turned(small, angle, min_side) for angle in self.rotations))
        if not len(boxes):
            return np.zeros((0, 4), np.int32)
        if scale != 1.0:
            boxes = boxes / scale
        return np.round(boxes).astype(np.int32)

    def _profiles(self, gray: np.ndarray, min_side: int) -> tuple[np.ndarray, np.ndarray]:
        """Profile faces looking one way, and (from the mirror image, mapped back) the other."""
        cascade = self._load(str(Path(cv2.data.haarcascades) / PROFILE_CASCADE))
        one_way = self._scan(cascade, gray, min_side)
        other_way = self._scan(cascade, np.ascontiguousarray(gray[:, ::-1]), min_side)
        other_way[:, 0] = gray.shape[1] - other_way[:, 0] - other_way[:, 2]
        return one_way, other_way

    def _turned(self, gray: np.ndarray, angle: float, min_side: int) -> np.ndarray:
        """Frontal faces of the image turned by `angle` degrees about its centre, as upright boxes of the
        same size around the same face centres in the unturned image."""
        h, w = gray.shape[:2]
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        turned = cv2.warpAffine(gray, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        boxes = self._scan(self._cascade, turned, min_side)
        centres = np.c_[boxes[:, :2] + boxes[:, 2:] / 2, np.ones(len(boxes))] @ cv2.invertAffineTransform(turn).T
        return np.c_[centres - boxes[:, 2:] / 2, boxes[:, 2:]]


def add_unseen(first: np.ndarray, *others: np.ndarray, max_iou: float = 0.3) -> np.ndarray:
    """The first detector's boxes, plus each other box that overlaps no box kept so far (IoU < max_iou)."""
    kept = [np.asarray(b, np.float64) for b in np.asarray(first).reshape(-1, 4)]
    for box in np.concatenate([np.asarray(p, np.float64).reshape(-1, 4) for p in others]):
        if not kept or iou(box, np.stack(kept)).max() < max_iou:
            kept.append(box)
    return np.stack(kept) if kept else np.zeros((0, 4))


# Haar settings by use. "video": the realtime worker's (fast, few false faces; video gives it another chance
# on the next frame). "still": `fer predict` and the end-to-end evaluation, where one look is all there is and
# time is not short: finer scale steps, smaller faces, one neighbour less, and the profile cascade both ways.
# On held-out ExpW images (bench/crop_skew.py, docs/EXPERIMENTS.md) detection recall goes 0.573 -> 0.654 with
# the finer scan and -> 0.782 with profiles, at about 0.16 s an image instead of 0.03. Turned scans
# (`rotations`, 15 degrees either way) found 3 points more, but also one box in two images that matches no
# labelled face, most of them not faces (clothes, hands, logos): measured, not a preset.
PRESETS: dict[str, dict[str, float | int | bool | tuple[float, ...]]] = {
    "video": {"scale_factor": 1.1, "min_neighbors": 5, "min_size": 30},
    "still": {"scale_factor": 1.05, "min_neighbors": 4, "min_size": 20, "profile": True},
}


@dataclass
class Combined:
    """The first detector's boxes, plus each later detector's boxes where no box is yet (`add_unseen`)."""

    detectors: tuple

    def detect(self, image: np.ndarray) -> np.ndarray:
        boxes = add_unseen(*(d.detect(image) for d in self.detectors))
        return np.round(boxes).astype(np.int32).reshape(-1, 4)


@dataclass
class Padded:
    """A detector run on the image inside a black border `border` times its longer side wide. A learned
    detector misses faces that fill the picture (BlazeFace: a quarter of ExpW's faces wider than 40% of their
    image); framed with room around them they look like the faces it was trained on."""

    detector: object
    border: float = 0.25

    def detect(self, image: np.ndarray) -> np.ndarray:
        pad = int(round(self.border * max(image.shape[:2])))
        framed = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        boxes = np.asarray(self.detector.detect(framed), np.int32).reshape(-1, 4).copy()
        boxes[:, :2] -= pad
        return boxes


@dataclass
class Tiled:
    """A detector run on each of n x n overlapping tiles, so that small faces meet it at n times the
    resolution a whole-image detector with a fixed input (BlazeFace: 192 px) gives them; tiles overlap by
    `overlap` of their size so that a face cut by one tile's edge is whole in its neighbour."""

    detector: object
    n: int = 2
    overlap: float = 0.25

    def detect(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        tile_h = min(height, int(height / self.n * (1 + self.overlap)))
        tile_w = min(width, int(width / self.n * (1 + self.overlap)))
        found = []
        for row in range(self.n):
            for col in range(self.n):
                y, x = min(int(row * height / self.n), height - tile_h), min(int(col * width / self.n), width - tile_w)
                boxes = np.asarray(self.detector.detect(image[y:y + tile_h, x:x + tile_w]), np.int32).reshape(-1, 4)
                found.append(boxes + [x, y, 0, 0])
        return np.concatenate(found).astype(np.int32)


def blazeface_views():
    """BlazeFace on the whole image, then on it framed (`Padded`) and on 2 x 2 tiles (`Tiled`) where no face
    is yet: six looks at an image, still a fraction of Haar's `still` scan (docs/EXPERIMENTS.md)."""
    from fer_core.blazeface import BlazeFace

    blazeface = BlazeFace()
    return Combined((blazeface, Padded(blazeface), Tiled(blazeface)))


# Detectors for stills that are not Haar settings: MediaPipe's BlazeFace (`fer_core.blazeface`) on the whole
# image or in several views (`blazeface_views`), alone or after the `still` Haar preset.
DETECTORS = ("blazeface", "blazeface_views", "still+blazeface", "still+blazeface_views", "blazeface+still")
# What `fer predict` and the end-to-end evaluation use unless told otherwise: on held-out ExpW images it finds
# the most labelled faces and gets the most right end to end (docs/EXPERIMENTS.md).
STILL_DETECTOR = "still+blazeface_views"


def preset(name: str) -> HaarDetector | Combined:
    """A detector by name: a Haar preset (`video`, `still`), `blazeface`, or two joined by `+` (the first's
    boxes, then the second's where no box is yet)."""
    from fer_core.blazeface import BlazeFace

    if name in PRESETS:
        return HaarDetector(**PRESETS[name])  # type: ignore[arg-type]
    if name == "blazeface":
        return BlazeFace()
    if name == "blazeface_views":
        return blazeface_views()
    if name in DETECTORS:
        return Combined(tuple(preset(part) for part in name.split("+")))
    raise ValueError(f"unknown detector {name!r} (choose from {', '.join((*PRESETS, *DETECTORS))})")


def describe(detector) -> dict:
    """A detector's settings, to report beside the figures it produced."""
    if isinstance(detector, Combined):
        return {"kind": "combined", "detectors": [describe(d) for d in detector.detectors]}
    fields = getattr(detector, "__dataclass_fields__", {})
    values = {k: getattr(detector, k) for k in fields}
    return {"kind": type(detector).__name__,
            **{k: describe(v) if hasattr(v, "detect") else v for k, v in values.items()}}


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


def inside(a: np.ndarray, b: np.ndarray, eps: float = 0.2) -> np.ndarray:
    """Pairwise: box a[i] lies within box b[j] grown by eps of its size (OpenCV groupRectangles' test for
    dropping a box nested in a stronger one): shape (len(a), len(b))."""
    a = np.asarray(a, np.int64).reshape(-1, 1, 4)
    b = np.asarray(b, np.int64).reshape(1, -1, 4)
    dx, dy = (b[..., 2] * eps).astype(np.int64), (b[..., 3] * eps).astype(np.int64)
    return ((a[..., 0] >= b[..., 0] - dx) & (a[..., 1] >= b[..., 1] - dy)
            & (a[..., 0] + a[..., 2] <= b[..., 0] + b[..., 2] + dx)
            & (a[..., 1] + a[..., 3] <= b[..., 1] + b[..., 3] + dy))


def pyramid_factors(width: int, height: int, min_size: int, scale_factor: float = 1.1,
                    window: int = HAAR_WINDOW) -> list[float]:
    """The scale factors that OpenCV's detectMultiScale evaluates on a frame of this size, in its order."""
    factors, factor = [], 1.0
    while True:
        win = round(window * factor)
        if win > width or win > height or round(width / factor) < window or round(height / factor) < window:
            return factors
        if win >= min_size:
            factors.append(factor)
        factor *= scale_factor


class LocalHaar:
    """OpenCV's Haar detection taken apart, so that it can be run on parts of a frame with the same answer.

    `detectMultiScale` is two steps: raw window hits over a scale pyramid, then grouping (`minNeighbors`).
    Here every pyramid level is built as OpenCV builds it (same sizes, `INTER_LINEAR_EXACT`) and the cascade
    runs on a crop of that level at the native 24 px window with a step of one pixel, as OpenCV scans levels
    above factor 2: the crop is enlarged 3x (nearest) and scanned at factor 3 only, which OpenCV resizes back
    to the very same pixels. The raw hits inside a region are then identical to the full-frame scan's there
    (tests/test_detect.py checks this on real frames), and a tracker that re-scans only around known faces
    gets the reference's boxes wherever it looks, at a fraction of the cost.
    """

    def __init__(self, detector: HaarDetector):
        self.detector = detector

    @property
    def _cascade(self) -> cv2.CascadeClassifier:
        return self.detector._cascade

    def raw(self, gray: np.ndarray) -> np.ndarray:
        """Every raw window hit of the full frame (minNeighbors 0)."""
        d = self.detector
        hits = self._cascade.detectMultiScale(gray, scaleFactor=d.scale_factor, minNeighbors=0,
                                              minSize=(d.min_size, d.min_size))
        return np.asarray(hits, np.int32).reshape(-1, 4)

    def seeds(self, gray: np.ndarray) -> np.ndarray:
        """Where to look, found cheaply: raw-hit clusters of a half-resolution scan, in frame pixels.

        Half the resolution with half the minimum window covers the same face sizes for about half the cost
        of `raw`; the boxes it gives are only places to scan exactly, never answers.
        """
        h, w = gray.shape[:2]
        small = cv2.resize(gray, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        side = max(HAAR_WINDOW, self.detector.min_size // 2)
        hits = self._cascade.detectMultiScale(small, scaleFactor=self.detector.scale_factor, minNeighbors=0,
                                              minSize=(side, side))
        return self.clusters(np.asarray(hits, np.int32).reshape(-1, 4) * 2)

    def group(self, raw: np.ndarray) -> np.ndarray:
        """Raw hits -> boxes, exactly as detectMultiScale groups them (minNeighbors, eps 0.2)."""
        if not len(raw):
            return np.zeros((0, 4), np.int32)
        boxes, _ = cv2.groupRectangles(np.asarray(raw).tolist(), self.detector.min_neighbors, 0.2)
        return np.asarray(boxes, np.int32).reshape(-1, 4)

    @staticmethod
    def clusters(raw: np.ndarray) -> np.ndarray:
        """Raw hits -> one box per cluster, single hits included: where something face-like was seen."""
        if not len(raw):
            return np.zeros((0, 4), np.int32)
        doubled = np.concatenate([raw, raw]).tolist()  # groupThreshold 1 over doubled hits keeps singletons
        boxes, _ = cv2.groupRectangles(doubled, 1, 0.2)
        return np.asarray(boxes, np.int32).reshape(-1, 4)

    def plan(self, shape: tuple[int, int], seeds: np.ndarray, ratio: float = 1.3, pad: float = 0.15,
             motion: int = 6, inner: bool = True) -> list[tuple[float, list[tuple[int, int, int, int]]]]:
        """Per pyramid level, the regions (in level pixels) to scan around the seed boxes.

        Around each seed: windows from size/ratio to size*ratio, over the seed grown by `pad` of its size and
        `motion` pixels; with `inner`, also the smaller windows inside the seed (Haar's nested boxes).
        """
        h, w = shape
        d = self.detector
        factors = pyramid_factors(w, h, d.min_size, d.scale_factor)
        per_level: dict[float, list[list[int]]] = {}
        for x, y, bw, bh in np.asarray(seeds, np.int64).reshape(-1, 4):
            cx, cy = x + bw / 2, y + bh / 2
            for f in factors:
                win = round(HAAR_WINDOW * f)
                if win > bw * ratio:
                    break
                if win >= bw / ratio:
                    r = win / 2 + pad * bw + motion
                elif inner:
                    r = bw / 2 + motion
                else:
                    continue
                per_level.setdefault(f, []).append([int(max(0, cx - r) / f), int(max(0, cy - r) / f),
                                                    int(min(w, cx + r) / f) + 1, int(min(h, cy + r) / f) + 1])
        return [(f, _merge(regions)) for f, regions in per_level.items()]

    def scan_level(self, gray: np.ndarray, factor: float, regions: list[tuple[int, int, int, int]]) -> list:
        """Raw hits of one pyramid level inside the given regions (level pixels), in frame pixels."""
        h, w = gray.shape[:2]
        level = cv2.resize(gray, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_LINEAR_EXACT)
        win = round(HAAR_WINDOW * factor)
        up = 3 * HAAR_WINDOW
        hits = []
        for x0, y0, x1, y1 in regions:
            crop = level[y0:y1, x0:x1]
            if crop.shape[0] < HAAR_WINDOW or crop.shape[1] < HAAR_WINDOW:
                continue
            big = cv2.resize(crop, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
            found = self._cascade.detectMultiScale(big, scaleFactor=3.0, minNeighbors=0, minSize=(up, up),
                                                   maxSize=(up, up))
            for bx, by, _, _ in np.asarray(found).reshape(-1, 4):
                hits.append((round((x0 + bx / 3) * factor), round((y0 + by / 3) * factor), win, win))
        return hits


def _merge(regions: list[list[int]]) -> list[tuple[int, int, int, int]]:
    """Merge overlapping (x0, y0, x1, y1) regions, so that no window is scanned (and counted) twice."""
    regions = [list(r) for r in regions]
    merged = True
    while merged:
        merged = False
        for i in range(len(regions)):
            for j in range(i + 1, len(regions)):
                a, b = regions[i], regions[j]
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    regions[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del regions[j]
                    merged = True
                    break
            if merged:
                break
    return [tuple(r) for r in regions]
