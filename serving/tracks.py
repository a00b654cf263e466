"""Face ids that last across frames, so a timeline can say what each person felt, not only what the frame held.

Each frame's boxes are matched to the faces of the recent frames by overlap (IoU >= `min_iou`; one box to one
face, the assignment with the most overlap in all, SciPy's Hungarian solver), and take that face's id; a box
that matches none starts a new id. A face unseen for more than `max_missed` frames is let go, so one that leaves
and comes back later, or moves far while unseen, gets a new id, and so does every face after a cut (the face
finder tells one: `serving.pipeline.FaceFinder.cut`), even one where a face of the last shot was. Ids say "the
same face, followed", never "the same person" (no face recognition; nothing of a face is kept but its last box).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from fer_core import detect


class FaceTracks:
    """Stable ids for the boxes of successive frames (see the module docstring)."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 12):
        self.min_iou, self.max_missed = min_iou, max_missed
        self._boxes = np.zeros((0, 4), np.int32)  # the last box of each face followed
        self._ids = np.zeros(0, np.int64)
        self._missed = np.zeros(0, np.int64)
        self.next_id = 0

    def update(self, boxes: np.ndarray, cut: bool = False) -> np.ndarray:
        """The id of each of this frame's boxes, in their order. After a `cut` (a new shot: the face finder
        says so) every face is new, even one in the place of a face of the last shot."""
        boxes = np.asarray(boxes, np.int32).reshape(-1, 4)
        if cut:
            self._boxes, self._ids, self._missed = self._boxes[:0], self._ids[:0], self._missed[:0]
        ids = np.full(len(boxes), -1, np.int64)
        matched = np.zeros(len(self._boxes), bool)
        if len(boxes) and len(self._boxes):
            overlap = detect.iou(boxes, self._boxes)
            rows, cols = linear_sum_assignment(overlap, maximize=True)
            good = overlap[rows, cols] >= self.min_iou
            ids[rows[good]] = self._ids[cols[good]]
            matched[cols[good]] = True
        new = ids < 0
        ids[new] = np.arange(self.next_id, self.next_id + int(new.sum()))
        self.next_id += int(new.sum())
        keep = ~matched & (self._missed < self.max_missed)  # faces not seen this frame, still waited for
        self._boxes = np.concatenate([boxes, self._boxes[keep]])
        self._ids = np.concatenate([ids, self._ids[keep]])
        self._missed = np.concatenate([np.zeros(len(boxes), np.int64), self._missed[keep] + 1])
        return ids


class FaceStats:
    """Per face id, over a video: when it was first and last seen, in how many frames, its mean probabilities."""

    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self._faces: dict[int, dict] = {}

    def add(self, timestamp: float, ids: list[int], probs: np.ndarray) -> None:
        for face, p in zip(ids, probs, strict=True):
            s = self._faces.setdefault(face, {"first_s": timestamp, "frames": 0, "sum": np.zeros(self.n_classes)})
            s["last_s"] = timestamp
            s["frames"] += 1
            s["sum"] += p

    def __len__(self) -> int:
        return len(self._faces)

    def summary(self, labels: list[str], min_frames: int = 1) -> list[dict]:
        """The faces seen in at least `min_frames` frames, the longest followed first."""
        rows = []
        for face, s in sorted(self._faces.items(), key=lambda kv: (-kv[1]["frames"], kv[0])):
            if s["frames"] < min_frames:
                continue
            mean = s["sum"] / s["frames"]
            rows.append({"face": face, "first_s": round(s["first_s"], 3), "last_s": round(s["last_s"], 3),
                         "frames": s["frames"], "dominant": labels[int(np.argmax(mean))],
                         "mean_probability": {e: round(float(v), 5) for e, v in zip(labels, mean, strict=True)}})
        return rows
