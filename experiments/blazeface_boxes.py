"""How BlazeFace's boxes sit on ExpW's labelled ones: the numbers behind `BlazeFace.box_scale` and `box_shift`.

For each labelled face of the chosen split's images, BlazeFace's box (unmapped) that overlaps it most; over
the pairs with IoU >= 0.3 (the same face), the medians of: labelled width / BlazeFace width, labelled height
/ BlazeFace height, and the vertical offset of the labelled centre from BlazeFace's in BlazeFace box heights.
Fit on the training split; the detector is then judged on validation and test (bench/crop_skew.py).
Prints one JSON line.

With --gray, BlazeFace gets the gray image (as three equal channels) instead of the colour one.

Usage: python experiments/blazeface_boxes.py --dataset DATASET_DIR [--expw ../shared/data/expw] [--split train]
       [--gray]
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

from fer_core import detect, evaluate  # noqa: E402
from fer_core.blazeface import BlazeFace  # noqa: E402
from fer_core.data import dataset, expw  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder (its split assignment is used)")
    ap.add_argument("--expw", default=str(ROOT.parent / "shared" / "data" / "expw"))
    ap.add_argument("--split", default="train")
    ap.add_argument("--gray", action="store_true", help="detect on the gray image")
    args = ap.parse_args()
    images = dataset.expw_images(args.dataset, (args.split,))
    by_image = evaluate.labelled_faces(args.expw, images)
    detector = BlazeFace()
    width, height, shift, best = [], [], [], []
    for name, faces in sorted(by_image.items()):
        image = cv2.imread(str(Path(args.expw) / expw.IMAGES / name),
                           cv2.IMREAD_GRAYSCALE if args.gray else cv2.IMREAD_COLOR)
        if image is None:
            continue
        _, boxes = detector.scores_and_boxes(image)
        xywh = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]
        for face in faces:
            label = np.array([face.left, face.top, face.right - face.left, face.bottom - face.top], np.float64)
            overlaps = detect.iou(label, xywh) if len(xywh) else np.zeros(1)
            best.append(float(overlaps.max()))
            if best[-1] < 0.3:
                continue
            x, y, w, h = xywh[int(overlaps.argmax())]
            width.append(label[2] / w)
            height.append(label[3] / h)
            shift.append(((label[1] + label[3] / 2) - (y + h / 2)) / h)
    best_iou = np.asarray(best)
    print(json.dumps({"experiment": "blazeface_boxes", "split": args.split, "gray": args.gray, "faces": len(best),
                      "paired": len(width), "share_iou_0.3": round(float((best_iou >= 0.3).mean()), 4),
                      "share_iou_0.5_unmapped": round(float((best_iou >= 0.5).mean()), 4),
                      "width_ratio": round(float(np.median(width)), 3),
                      "height_ratio": round(float(np.median(height)), 3),
                      "centre_shift": round(float(np.median(shift)), 3)}))


if __name__ == "__main__":
    main()
