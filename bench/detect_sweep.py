"""Detection alone: the `track` face finder's time per frame and the share of the reference faces it keeps,
for several `scan_every` settings, against full-resolution Haar on every frame. JSON lines on stdout.

Frames are decoded up front, so the figures are the finder's own (no decode, no classification).

Usage: python bench/detect_sweep.py [--video PATH] [--scan-every 12 24 48 96] [--coast 2] [--no-hold]
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

from serving.bench import match_reference  # noqa: E402
from serving.pipeline import FaceFinder  # noqa: E402


def kept_share(reference: list[np.ndarray], found: list[np.ndarray]) -> tuple[float, int, int]:
    """The share of reference boxes found (IoU >= 0.5), their number, and the found boxes matching none."""
    kept, total, extra = match_reference(reference, found)
    return (kept / total if total else 1.0), total, extra


def time_finder(finder, grays: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    times, found = [], []
    for gray in grays:
        t0 = time.perf_counter()
        found.append(finder.find(gray))
        times.append((time.perf_counter() - t0) * 1000)
    finder.close()
    return np.asarray(times), found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", default=str(ROOT.parent / "shared" / "data" / "videos" / "faces_596x336.mp4"))
    ap.add_argument("--scan-every", type=int, nargs="+", default=[12, 24, 48, 96])
    ap.add_argument("--coast", type=int, default=2)
    ap.add_argument("--no-hold", action="store_true", help="scan steady faces on every frame too")
    args = ap.parse_args()
    cap = cv2.VideoCapture(args.video)
    grays = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        grays.append(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    ref_times, ref_boxes = time_finder(FaceFinder("full"), grays)
    print(json.dumps({"bench": "detect", "mode": "full", "frames": len(grays), "mean_ms": round(ref_times.mean(), 2),
                      "p95_ms": round(float(np.percentile(ref_times, 95)), 2), "kept": 1.0,
                      "reference_faces": kept_share(ref_boxes, ref_boxes)[1], "extra": 0}), flush=True)
    for n in args.scan_every:
        finder = FaceFinder("track", scan_every=n, coast=args.coast, hold=not args.no_hold)
        times, found = time_finder(finder, grays)
        share, total, extra = kept_share(ref_boxes, found)
        print(json.dumps({"bench": "detect", "mode": "track", "scan_every": n, "coast": args.coast,
                          "hold": not args.no_hold, "frames": len(grays), "mean_ms": round(times.mean(), 2),
                          "p95_ms": round(float(np.percentile(times, 95)), 2), "kept": round(share, 4),
                          "reference_faces": total, "extra": extra}), flush=True)


if __name__ == "__main__":
    main()
