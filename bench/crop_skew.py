"""Train/serve skew of the crop, and detection recall on stills: ExpW images through the Haar detector.

For each detector setting and each margin around the detector's boxes, one JSON line: detection recall,
accuracy on the found faces cropped from the detector's box (what the worker and `fer predict` classify),
accuracy on the same faces cropped from their labelled box grown by the training margin (what training saw),
and end to end (a missed face counts as wrong). Only faces the model never trained on are used: the
validation and test splits of the dataset version it was trained on.

Usage: python bench/crop_skew.py --model MODEL.keras --dataset DATASET_DIR [--expw ../shared/data/expw]
       [--margins 0 0.05 0.1 0.15 0.2] [--detectors video still still+rot20] [--splits val test]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import detect, evaluate  # noqa: E402
from fer_core.blazeface import BlazeFace  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402
from fer_core.data import dataset  # noqa: E402


def detector(spec: str):
    """A Haar setting: a preset name or SCALE:NEIGHBOURS:MIN_SIZE, then any of +profile (the profile cascade
    too) and +rotA (frontal scans of the image turned by -A and +A degrees too). Or BlazeFace joined to one:
    `blazeface` or `blazeface@SCORE` (its score threshold) before or after a `+`, as in still+blazeface@0.4
    (the first detector's boxes, then the second's where no box is yet)."""
    first, _, second = spec.partition("+")
    if first.startswith("blazeface") or second.startswith("blazeface"):
        parts = [blazeface(p) if p.startswith("blazeface") else haar(p) for p in (first, second) if p]
        return parts[0] if len(parts) == 1 else detect.Combined(tuple(parts))
    return haar(spec)


def blazeface(spec: str):
    """`blazeface`, `blazeface_views` (`detect.blazeface_views`) or `blazeface@SCORE`."""
    name, _, score = spec.partition("@")
    if name != "blazeface" or not score:
        return detect.preset(name)
    return BlazeFace(min_score=float(score))


def haar(spec: str) -> detect.HaarDetector:
    base, *extras = spec.split("+")
    if base in detect.PRESETS:
        d = detect.preset(base)
    else:
        scale, neighbours, min_size = base.split(":")
        d = detect.HaarDetector(float(scale), int(neighbours), int(min_size))
    for extra in extras:
        if extra == "profile":
            d.profile = True
        elif extra.startswith("rot"):
            d.rotations = (*d.rotations, -float(extra[3:]), float(extra[3:]))
        else:
            raise SystemExit(f"unknown detector option +{extra}")
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help=".keras file trained on --dataset")
    ap.add_argument("--dataset", required=True, help="the dataset version folder the model trained on")
    ap.add_argument("--expw", default=str(ROOT.parent / "shared" / "data" / "expw"))
    ap.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.05, 0.10, 0.15, 0.20])
    ap.add_argument("--detectors", nargs="+", default=list(detect.PRESETS),
                    help="presets (video, still) or SCALE:NEIGHBOURS:MIN_SIZE, e.g. 1.05:3:20; +profile adds "
                         "the profile cascade; blazeface[@SCORE] or blazeface_views alone or joined: "
                         "still+blazeface@0.4")
    ap.add_argument("--splits", nargs="+", default=["val", "test"], help="the dataset version's splits whose "
                    "ExpW images are used (choose settings on val, report on test)")
    ap.add_argument("--labelled-margin", type=float, default=0.10, help="the training crop's margin")
    args = ap.parse_args()
    clf = Classifier.from_file(args.model)
    images = dataset.expw_images(args.dataset, tuple(args.splits))
    for name in args.detectors:
        for margin in args.margins:
            t0 = time.perf_counter()
            r = evaluate.through_detector(clf, args.expw, detector=detector(name), images=images,
                                          margin=margin, labelled_margin=args.labelled_margin)
            print(json.dumps({"bench": "crop_skew", "detector": name, "settings": r["detector"], "margin": margin,
                              "splits": args.splits,
                              "faces": r["n"], "images": r["images"], "unmatched_boxes": r["unmatched_boxes"],
                              "detection_recall": r["detection_recall"],
                              "accuracy_on_found": r["accuracy_on_found"],
                              "accuracy_on_found_labelled_crop": r["accuracy_on_found_labelled_crop"],
                              "macro_f1_on_found": r["found_faces"].get("macro_f1", 0.0),
                              "end_to_end": r["accuracy"], "seconds": round(time.perf_counter() - t0, 1)}),
                  flush=True)


if __name__ == "__main__":
    main()
