"""What the boxes that match no labelled face are: contact sheets of them, from a base detector and from what
a second look adds to it, on ExpW images none of the models trained on: turned scans (`HaarDetector.rotations`)
or BlazeFace (`--add blazeface`) added to the `still` preset, or BlazeFace's framed and tiled views
(`--add blazeface_views`) added to `still+blazeface`.

ExpW labels some faces of an image, not all, so a box that matches no label may be a real face or a false one;
only looking tells. Writes two PNG sheets (48 crops each, 64 px) and prints one JSON line with the counts.

Usage: python experiments/unmatched_boxes.py --dataset DATASET_DIR [--expw ../shared/data/expw] [--split val]
       [--images 200] [--add turned|blazeface|blazeface_views] [--turn 15] [--out .]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import crop, detect, evaluate  # noqa: E402
from fer_core.data import dataset, expw  # noqa: E402

SIDE, PER_ROW, SHOWN = 64, 12, 48


def sheet(crops: list[np.ndarray]) -> np.ndarray:
    tiles = [cv2.resize(c, (SIDE, SIDE)) for c in crops[:SHOWN]]
    tiles += [np.zeros((SIDE, SIDE), np.uint8)] * (SHOWN - len(tiles))
    return np.vstack([np.hstack(tiles[i:i + PER_ROW]) for i in range(0, SHOWN, PER_ROW)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder (its split names the images)")
    ap.add_argument("--expw", default=str(ROOT.parent / "shared" / "data" / "expw"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--images", type=int, default=200, help="the first N images of the split, by name")
    ap.add_argument("--add", choices=("turned", "blazeface", "blazeface_views"), default="turned",
                    help="turned scans or BlazeFace added to the still preset, or BlazeFace's views to still+blazeface")
    ap.add_argument("--turn", type=float, default=15.0, help="turned scans at -TURN and +TURN degrees")
    ap.add_argument("--out", default=".", help="folder for the two PNG sheets")
    args = ap.parse_args()
    by_image = evaluate.labelled_faces(args.expw, dataset.expw_images(args.dataset, (args.split,)))
    upright = detect.preset("still+blazeface" if args.add == "blazeface_views" else "still")
    if args.add == "turned":
        extended = detect.preset("still")
        extended.rotations = (-args.turn, args.turn)
    else:
        extended = detect.preset(f"still+{args.add}")
    added_by = f"added_by_{args.add}"
    unmatched: dict[str, list[np.ndarray]] = {"preset": [], added_by: []}
    for name, faces in sorted(by_image.items())[:args.images]:
        image = cv2.imread(str(Path(args.expw) / expw.IMAGES / name), cv2.IMREAD_COLOR)
        if image is None:
            continue
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        labelled = np.array([[b.left, b.top, b.right - b.left, b.bottom - b.top] for b in faces])
        before = upright.detect(image)
        added = [box for box in extended.detect(image) if not (before == box).all(axis=1).any()]
        for kind, found in (("preset", list(before)), (added_by, added)):
            for box in found:
                if detect.iou(box[None], labelled).max() < 0.5:
                    unmatched[kind].append(crop.crop_faces(gray, box[None], 0.10)[0])
    out = Path(args.out)
    for kind, crops in unmatched.items():
        cv2.imwrite(str(out / f"unmatched_{kind}.png"), sheet(crops))
    print(json.dumps({"experiment": "unmatched_boxes", "split": args.split, "images": min(args.images, len(by_image)),
                      "added": args.add, **({"turn": args.turn} if args.add == "turned" else {}), **{kind: len(c) for kind, c in unmatched.items()},
                      "sheets": [str(out / f"unmatched_{k}.png") for k in unmatched]}))


if __name__ == "__main__":
    main()
