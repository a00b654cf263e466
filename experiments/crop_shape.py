"""Squashed or shape-kept crops of faces that the frame cuts: what the classifier answers either way.

Until 2026-12-04 `fer_core.crop` clipped a grown box to the image and resized what was left to 48x48, so a face
at the frame's edge (a close-up, a face entering) reached the classifier squashed. Now it keeps the box's shape:
the image is edge-replicated where the grown box leaves it, then the same resize. This script measured the
change and still compares the two. Two measurements, each with both crops:

- a video's faces, from the boxes `fer analyze` wrote (`--timeline DIR/timeline.csv` with `--video`): the answers
  per frame and the mean probabilities;
- ExpW end to end (`--expw ROOT --dataset DATASET_DIR`): `fer evaluate --through-detector` on that dataset's test
  images, as `evaluate.through_detector` computes it.

Prints one JSON line per measurement and crop. Training crops through the same function, so the change came with
a new dataset format (3) and the networks trained on format 2 see the new crop only in service
(docs/EXPERIMENTS.md).

Usage: python experiments/crop_shape.py [--model fer_core/assets/baseline.keras]
       [--video VIDEO --timeline DIR/timeline.csv] [--expw ../shared/data/expw --dataset DATASET_DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import baseline, crop, evaluate  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402
from fer_core.data import dataset, expw  # noqa: E402
from fer_core.data.table import FACE  # noqa: E402
from fer_core.labels import EMOTIONS  # noqa: E402


def clipped(gray: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray | None:
    """`crop.crop_face` as it was until 2026-12-04: the grown box clipped to the image, then resized."""
    found = crop.inside(gray, box, margin)
    return None if found is None else cv2.resize(found[0], (FACE, FACE), interpolation=cv2.INTER_AREA)


shape_kept = crop.crop_face  # the product's crop since 2026-12-04


@contextlib.contextmanager
def cropping(kind: str) -> Iterator[None]:
    """Every crop made inside (`crop.crop_faces`, the evaluation's) is `kind`: clipped (the old crop) or
    shape-kept (the product's)."""
    original = crop.crop_face
    crop.crop_face = clipped if kind == "clipped" else shape_kept
    try:
        yield
    finally:
        crop.crop_face = original


MARGIN = 0.10  # data.margin's default: what `fer analyze` and the evaluation grow boxes by


def leaves_the_image(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> bool:
    """Whether the box, grown by MARGIN, reaches past the image (so the two crops differ)."""
    x0, y0, x1, y1 = crop.grow(box, MARGIN)
    return x0 < 0 or y0 < 0 or x1 > shape[1] or y1 > shape[0]


def labelled_leaving(root: str, images: set[str] | None, clf: Classifier | None = None) -> dict[str, int]:
    """How many of the labelled ExpW faces (of these images; all when None) leave their image once grown, and
    with `clf`, how many of those it answers differently from the two crops and gets right from each."""
    n, y, squashed, kept = 0, [], [], []
    for name, faces in evaluate.labelled_faces(root, images).items():
        image = cv2.imread(str(Path(root) / expw.IMAGES / name), cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue
        for b in faces:
            n += 1
            box = (b.left, b.top, b.right - b.left, b.bottom - b.top)
            if leaves_the_image(box, image.shape):
                y.append(b.label)
                squashed.append(clipped(image, box, MARGIN))
                kept.append(shape_kept(image, box, MARGIN))
    out = {"labelled_faces": n, "leaving_their_image": len(y)}
    if clf is not None and y:
        a, b = clf.predict(np.stack(squashed)).argmax(1), clf.predict(np.stack(kept)).argmax(1)
        out |= {"answers_changed": int((a != b).sum()), "right_clipped": int((a == np.asarray(y)).sum()),
                "right_shape_kept": int((b == np.asarray(y)).sum())}
    return out


def video_faces(video: str, timeline: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Each frame's gray image and the (frame, x, y, w, h) rows of the timeline."""
    capture, frames = cv2.VideoCapture(video), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    with open(timeline, newline="") as f:
        rows = [[int(r[k]) for k in ("frame", "x", "y", "w", "h")] for r in csv.DictReader(f)]
    return frames, np.asarray(rows, np.int64).reshape(-1, 5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(baseline.model_path()))
    ap.add_argument("--video")
    ap.add_argument("--timeline", help="a `fer analyze` timeline.csv of --video (its boxes)")
    ap.add_argument("--expw", help="ExpW-format data for the end-to-end measurement")
    ap.add_argument("--dataset", help="with --expw: a dataset version folder whose test split names the images")
    args = ap.parse_args()
    clf = Classifier.from_file(args.model)
    video = video_faces(args.video, args.timeline) if args.video and args.timeline else None
    test = dataset.expw_images(args.dataset) if args.expw and args.dataset else None
    if test is not None:
        print(json.dumps({"measure": "expw_boxes", "test_split": labelled_leaving(args.expw, test, clf),
                          "all": labelled_leaving(args.expw, None)}), flush=True)
    for kind in ("clipped", "shape_kept"):
        with cropping(kind):
            if video is not None:
                frames, rows = video
                faces = np.stack([crop.crop_faces(frames[f], np.array([box]), MARGIN)[0] for f, *box in rows])
                cut = sum(leaves_the_image(tuple(box), frames[f].shape) for f, *box in rows)
                probs = clf.predict(faces)
                print(json.dumps({"measure": "video", "crop": kind, "faces": len(rows), "cut_by_the_frame": cut,
                                  "answers": dict(Counter(EMOTIONS[i] for i in probs.argmax(1)).most_common()),
                                  "mean_probability": {e: round(float(p), 4) for e, p in
                                                       zip(EMOTIONS, probs.mean(0), strict=True)}}), flush=True)
            if test is not None:
                result = evaluate.through_detector(clf, args.expw, images=test, margin=MARGIN, labelled_margin=MARGIN)
                print(json.dumps({"measure": "expw_through_detector", "crop": kind,
                                  **{k: result[k] for k in ("accuracy", "detection_recall", "accuracy_on_found",
                                                            "accuracy_on_found_labelled_crop")}}), flush=True)

if __name__ == "__main__":
    main()
