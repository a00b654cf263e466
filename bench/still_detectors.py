"""Time per image of the face detectors `fer predict` can use, detection alone. JSON lines on stdout.

Images are decoded up front (colour; each detector turns them gray itself where it needs to), then each
detector runs over all of them `--repeat` times after one warm-up pass; per detector: the median and p95 time
per image over the last pass, and the boxes found. On ExpW's images and, with --video, on the frames of the
face video (what `fer analyze` and the worker see).

Usage: python bench/still_detectors.py [--expw ../shared/data/expw] [--images 200] [--video PATH]
       [--detectors video still blazeface blazeface_views still+blazeface_views] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import detect  # noqa: E402


def expw_images(root: Path, n: int) -> list[np.ndarray]:
    paths = sorted((root / "origin").glob("*.jpg"))[:n]
    return [image for image in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths) if image is not None]


def video_frames(path: Path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def time_detector(name: str, images: list[np.ndarray], repeat: int) -> dict:
    detector = detect.preset(name)
    for image in images[:5]:  # warm-up: model load, cascade load, first allocations
        detector.detect(image)
    for _ in range(repeat):
        times, boxes = [], 0
        for image in images:
            t0 = time.perf_counter()
            boxes += len(detector.detect(image))
            times.append((time.perf_counter() - t0) * 1000)
    ms = np.asarray(times)
    return {"detector": name, "images": len(images), "p50_ms": round(float(np.median(ms)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2), "mean_ms": round(float(ms.mean()), 2),
            "boxes": boxes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--expw", default=str(ROOT.parent / "shared" / "data" / "expw"))
    ap.add_argument("--images", type=int, default=200, help="the first N ExpW images, by name")
    ap.add_argument("--video", help="also time the frames of this video")
    ap.add_argument("--detectors", nargs="+", default=["video", "still", "blazeface", "blazeface_views", "still+blazeface_views"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sets = {"expw": expw_images(Path(args.expw), args.images)}
    if args.video:
        sets["video"] = video_frames(Path(args.video))
    for set_name, images in sets.items():
        h, w = np.median([image.shape[:2] for image in images], axis=0)
        for name in args.detectors:
            print(json.dumps({"bench": "still_detectors", "set": set_name, "median_size": [int(w), int(h)],
                              **time_detector(name, images, args.repeat)}), flush=True)


if __name__ == "__main__":
    main()
