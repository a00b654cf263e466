"""Per-frame processing as small composable pieces: a face finder, a detections type, classification.

The face finder runs OpenCV's Haar cascade on each frame. In `full` mode it scans the whole frame
(the reference). In `track` mode it evaluates the reference's own windows only around the places where
the last frame had raw cascade hits (`detect.LocalHaar`: identical windows, so identical answers there),
and finds new places with a cheap half-resolution scan of the whole frame every `scan_every` frames on a
background thread, whose result joins the seeds as soon as it is ready (at the latest when the next scan
is due). A cut does not wait for the count: when the picture changes all at once (the mean change of a sparse
grid of pixels above `cut_change` grey levels), everything tracked is dropped and the frame is scanned then
and there, as a first frame is, so faces are boxed in their new places on the cut's own frame, not up to
`scan_every` frames later. A face that stood still over the last two frames keeps its box, and its emotions,
for one frame unscanned and unclassified (`hold`), so steady faces cost half; no answer is more than one frame old.

In `blazeface` mode it runs MediaPipe's learned detector (`fer_core.blazeface`) on each colour frame instead:
it finds turned and smaller faces Haar misses, in about 7 ms a frame on two cores, which suits offline
analysis (`fer analyze`) more than a live camera's 5 ms budget.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from fer_core import crop, detect
from fer_core.blazeface import BlazeFace
from fer_core.labels import EMOTIONS
from serving.tracks import FaceTracks


@dataclass
class Detections:
    """Faces of one frame: (x, y, w, h) boxes, their emotion probabilities and their face ids (`serving.tracks`:
    the same id while the face is followed from frame to frame; empty where no ids were given)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int32))
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, len(EMOTIONS)), np.float32))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def face_ids(self) -> list[int]:
        """Each face's id, or its place in the frame where no ids were given."""
        return [int(i) for i in self.ids] if len(self.ids) == len(self.boxes) else list(range(len(self.boxes)))

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def labels(self) -> list[str]:
        return [EMOTIONS[i] for i in self.probs.argmax(axis=1)] if len(self) else []


@dataclass
class FrameResult:
    index: int
    timestamp: float
    detections: Detections
    timings_ms: dict[str, float]


MODES = ("full", "track", "blazeface")  # the worker's and fer analyze's --detector


class FaceFinder:
    """Haar per frame, full-frame or tracked, or BlazeFace per frame (see the module docstring)."""

    def __init__(self, mode: str = "full", scan_every: int = 48, coast: int = 2, min_size: int = 48,
                 inner_every: int = 6, hold: bool = True, cut_change: float = 20.0):
        if mode not in MODES:
            raise ValueError(f"detector mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.scan_every, self.coast = mode, max(1, scan_every), coast
        self.min_size = min_size
        self.learned = BlazeFace() if mode == "blazeface" else None
        self.inner_every = max(1, inner_every)  # look for boxes nested in known faces every N frames
        self.hold = hold
        self.cut_change = cut_change  # the real video: <= 11 levels a frame, its cuts 40-51 (bench/cut_video.py)
        self._thumb: np.ndarray | None = None
        self.cut = False  # whether the last frame found began a new shot
        self.scans = {"periodic": 0, "cut": 0}  # discovery scans by cause, for benchmarks
        self.reference = detect.HaarDetector(1.1, 5, min_size, 0)
        self.local = detect.LocalHaar(self.reference)
        self._forget()  # what is tracked: seeds, the last two frames' faces, a pending discovery scan
        self._scanner = ThreadPoolExecutor(1, thread_name_prefix="fer-scan") if mode == "track" else None
        self._helper = ThreadPoolExecutor(1, thread_name_prefix="fer-local") if mode == "track" else None
        self._n = 0
        if mode == "track":  # load each thread's cascade now, at start-up, not on the first frames
            self.reference._cascade  # noqa: B018 (this thread's)
            for pool in (self._scanner, self._helper):
                pool.submit(lambda: self.reference._cascade).result()

    def find(self, gray: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
        """Boxes (x, y, w, h) of the faces in this frame; `frame`, the colour image, is what BlazeFace reads.
        `self.cut` then says whether this frame began a new shot, in every mode (face ids start anew there)."""
        self.cut = self._cut(gray)
        if self.mode == "full":
            return self.reference.detect(gray)
        if self.learned is not None:
            boxes = self.learned.detect(gray if frame is None else frame)
            return boxes[np.minimum(boxes[:, 2], boxes[:, 3]) >= self.min_size]
        seeds = self._seeds
        if self.cut or self._n == 0:  # a new picture (or the first): nothing tracked is valid any more
            self._forget()
            seeds = self.local.seeds(gray)  # found on this very frame, at the cost of one scan
            self.scans["cut"] += self._n > 0
        else:
            due = self._n % self.scan_every == 0
            if self._pending is not None and (due or self._pending.done()):
                seeds = np.concatenate([seeds, self._pending.result()])  # waits only when the next scan is due
                self._pending = None
            if due:
                self._pending = self._scanner.submit(self.local.seeds, gray.copy())
                self.scans["periodic"] += 1
        inner = self._n % self.inner_every == 0 and self._n > 0  # the first frame has no faces to look inside
        held = self._held() if self.hold and not inner else np.zeros((0, 4), np.int32)
        held_seeds = np.zeros((0, 4), np.int32)
        if len(held) and len(seeds):
            # a held face holds what lies inside it too: Haar's grouping drops boxes nested in a strong face
            covered = (detect.iou(seeds, held).max(axis=1) >= 0.3) | detect.inside(seeds, held).any(axis=1)
            held_seeds, seeds = seeds[covered], seeds[~covered]
        raw = self._scan_near(gray, seeds, inner)
        self._n += 1
        faces, clusters = self.local.group(raw), self.local.clusters(raw)
        if len(held) and len(faces):
            held = held[detect.iou(held, faces).max(axis=1) < 0.3]
        self._track(np.concatenate([clusters, held_seeds]))
        self._before, self._last = self._last, np.concatenate([faces, held]).astype(np.int32)
        self._last_held = np.r_[np.zeros(len(faces), bool), np.ones(len(held), bool)]
        return self._last

    def held(self, n: int) -> np.ndarray:
        """Which of the `n` boxes the last `find` returned were held: last frame's boxes, not scanned again."""
        if self.mode == "track" and len(self._last_held) == n:
            return self._last_held.copy()
        return np.zeros(n, bool)

    def _cut(self, gray: np.ndarray) -> bool:
        """Whether the picture changed all at once since the last frame (a cut, a camera switch): the mean change
        of every 8th pixel of every 8th row (3 microseconds; an area-averaged thumbnail took 0.5 ms a frame)."""
        thumb = gray[::8, ::8].astype(np.int16)
        before, self._thumb = self._thumb, thumb
        if before is None or before.shape != thumb.shape:
            return False
        return float(np.abs(thumb - before).mean()) > self.cut_change

    def _forget(self) -> None:
        """Drop what the last frames found (seeds, held boxes, a pending scan of an older picture)."""
        self._seeds, self._misses = np.zeros((0, 4), np.int32), []
        self._pending: Future | None = None  # a full-frame discovery scan
        self._last = self._before = np.zeros((0, 4), np.int32)  # the faces of the last two frames
        self._last_held = np.zeros(0, bool)

    def _held(self) -> np.ndarray:
        """Faces that stood still over the last two frames keep their box for one frame, unscanned.

        So a steady face is scanned every other frame; one that moves, appears or flickers is scanned on every
        frame. Boxes nested inside a held face are held with it (the region keeps last frame's answer). The
        frame after a hold always scans, so no box is ever more than one frame old.
        """
        if not len(self._last) or not len(self._before):
            return np.zeros((0, 4), np.int32)
        steady = (detect.iou(self._last, self._before).max(axis=1) >= 0.7) & ~self._last_held
        if steady.any():  # with a face, what last frame found inside it (the region keeps last frame's answer)
            steady |= detect.inside(self._last, self._last[steady]).any(axis=1) & ~self._last_held
        return self._last[steady]

    def _scan_near(self, gray: np.ndarray, seeds: np.ndarray, inner: bool) -> np.ndarray:
        """The levels around the seeds, split over this thread and a helper (OpenCV releases the GIL)."""
        plan = self.local.plan(gray.shape[:2], seeds, inner=inner) if len(seeds) else []
        if not plan:
            return np.zeros((0, 4), np.int32)
        cost = [sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions) for _, regions in plan]
        mine, theirs, load = [], [], [0, 0]
        for i in np.argsort(cost)[::-1]:  # largest first, each to the less loaded side
            side = 0 if load[0] <= load[1] else 1
            (mine if side == 0 else theirs).append(plan[i])
            load[side] += cost[i]

        def run(part):
            return [hit for factor, regions in part for hit in self.local.scan_level(gray, factor, regions)]

        other = self._helper.submit(run, theirs) if theirs else None
        hits = run(mine) + (other.result() if other else [])
        return np.asarray(hits, np.int32).reshape(-1, 4)

    def _track(self, found: np.ndarray) -> None:
        """Seeds for the next frame: this frame's clusters, plus unmatched old seeds for `coast` frames."""
        kept, misses = [], []
        for box, miss in zip(self._seeds, self._misses, strict=True):
            if (not len(found) or detect.iou(box[None], found).max() < 0.3) and miss < self.coast:
                kept.append(box)
                misses.append(miss + 1)
        self._seeds = np.concatenate([found, np.asarray(kept, np.int32).reshape(-1, 4)])
        self._misses = [0] * len(found) + misses

    def close(self) -> None:
        for pool in (self._scanner, self._helper):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


class FramePipeline:
    """gray -> faces -> crops (`fer_core.crop`, grown by `margin` as in training) -> one batched
    classification per frame; each face gets its id (`serving.tracks`). A face the finder held (last frame's
    box, unscanned) keeps last frame's emotions too, unless the model changed in between."""

    def __init__(self, finder: FaceFinder, model_holder, margin: float = 0.10):
        self.finder = finder
        self.model_holder = model_holder
        self.margin = margin
        self.tracks = FaceTracks()
        self._last: tuple[object, np.ndarray, np.ndarray] | None = None  # classifier, boxes, probs of last frame
        self.held_answers = 0  # faces that kept last frame's answer, for benchmarks

    def process(self, index: int, timestamp: float, image: np.ndarray) -> FrameResult:
        t0 = time.perf_counter()
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes = self.finder.find(gray, image)
        t1 = time.perf_counter()
        boxes = np.asarray(boxes, np.int32).reshape(-1, 4)
        probs = self._classify(gray, boxes)
        t2 = time.perf_counter()
        ids = self.tracks.update(boxes, cut=self.finder.cut)
        return FrameResult(index, timestamp, Detections(boxes, probs, ids),
                           {"detect": (t1 - t0) * 1000, "classify": (t2 - t1) * 1000})

    def _classify(self, gray: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Each box's probabilities: a held box's from last frame (the same box, the same model), the others
        classified now in one batch."""
        classifier = self.model_holder.classifier
        probs = np.zeros((len(boxes), len(EMOTIONS)), np.float32)
        fresh = np.ones(len(boxes), bool)
        if self._last is not None and self._last[0] is classifier:
            _, last_boxes, last_probs = self._last
            for i in np.flatnonzero(self.finder.held(len(boxes))):
                same = np.flatnonzero((last_boxes == boxes[i]).all(axis=1))
                if len(same):
                    probs[i], fresh[i] = last_probs[same[0]], False
        if fresh.any():
            probs[fresh] = classifier.predict(crop.crop_faces(gray, boxes[fresh], self.margin))
        self.held_answers += int((~fresh).sum())
        self._last = (classifier, boxes, probs)
        return probs
