"""Does levelling the eyes help the classifier read ExpW's tilted faces?

ExpW's faces are photographs of people in the wild, heads often tilted (rolled); FER2013's are roughly upright.
BlazeFace (`fer_core.blazeface`) finds each face's eyes as two of its six keypoints. Here each labelled ExpW
face of the test split gets its roll (the angle of the line through its eyes, from the BlazeFace detection that
best overlaps the labelled box), the image is rotated about the box's centre so that the eyes are level, and
the face is cropped from the same box as before (`fer_core.crop`, the dataset's margin). The model is scored
on the faces as the dataset has them, on the levelled ones, and on faces levelled only when they lean more
than a threshold. One JSON line per variant, and one with the roll's distribution.

Usage: python experiments/face_align.py --dataset DATASET_DIR [--model FILE.keras] [--split test]
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

from fer_core import blazeface, crop, detect, evaluate  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402
from fer_core.data import dataset, expw  # noqa: E402

EYES = slice(4, 8)  # right eye x, y, left eye x, y: the first two of BlazeFace's six keypoints


def eyes_of(detector: blazeface.BlazeFace, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """The two eyes (2, 2) in image pixels of the BlazeFace face that best overlaps `box` (x, y, w, h),
    score-weighted over the anchors that found it (as MediaPipe averages its boxes); None when none overlaps."""
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    tensor, scale, left, top = blazeface.letterbox(rgb)
    interp = detector._model()
    interp.set_tensor(interp.get_input_details()[0]["index"], tensor[None])
    interp.invoke()
    regressors, logits = (interp.get_tensor(o["index"]) for o in interp.get_output_details()[:2])
    raw = regressors.reshape(-1, 16) / blazeface.INPUT
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1), -blazeface.RAW_SCORE_LIMIT, blazeface.RAW_SCORE_LIMIT)))
    keep = scores > detector.min_score
    if not keep.any():
        return None
    anchors = blazeface.anchors()[keep]
    raw, scores = raw[keep], scores[keep]
    centre = raw[:, :2] + anchors
    boxes = np.c_[centre - raw[:, 2:4] / 2, raw[:, 2:4]] * blazeface.INPUT
    boxes[:, :2] = (boxes[:, :2] - [left, top]) / scale
    boxes[:, 2:] /= scale
    # BlazeFace's box is brows to chin, the labelled one larger: map it as the detector does before matching
    mapped = boxes.copy()
    mapped[:, 2:] *= detector.box_scale
    mapped[:, :2] = boxes[:, :2] + boxes[:, 2:] / 2 - mapped[:, 2:] / 2
    mapped[:, 1] += detector.box_shift * boxes[:, 3]
    overlap = detect.iou(np.asarray(box, np.float64), mapped)[0]
    if overlap.max() < 0.3:
        return None
    group = overlap >= 0.5 * overlap.max()
    weights = scores[group] * overlap[group]
    points = ((raw[group, EYES].reshape(-1, 2, 2) + anchors[group, None, :]) * blazeface.INPUT
              - [left, top]) / scale
    return (points * weights[:, None, None]).sum(axis=0) / weights.sum()


def roll_degrees(eyes: np.ndarray) -> float:
    """The eye line's angle to the horizontal, in degrees; positive when it falls to the image's right."""
    (x0, y0), (x1, y1) = sorted(map(tuple, eyes))
    return float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))


def levelled(gray: np.ndarray, box: tuple[int, int, int, int], roll: float) -> np.ndarray:
    """The image turned about the box's centre by `roll` degrees, so that the eyes are level; black outside."""
    x, y, w, h = box
    turn = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), roll, 1.0)
    return cv2.warpAffine(gray, turn, gray.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="a dataset version folder")
    ap.add_argument("--model", default=str(ROOT / "fer_core" / "assets" / "baseline.keras"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--thresholds", default="0,5,10,15,20")
    args = ap.parse_args()
    data = dataset.load(args.dataset)
    stats = json.loads((Path(args.dataset) / "stats.json").read_text())
    root, margin = stats["sources"]["expw"], stats["settings"]["data"]["margin"]
    x_all, y_all = data.splits[args.split]
    mask = data.sources[args.split] == "expw"
    x_ds, y = x_all[mask], y_all[mask]
    boxes, _ = expw.read_boxes(root)
    by_key = {(b.image, b.face_id): b for b in boxes}
    detector = blazeface.BlazeFace()
    plain, turned, rolls = [], [], []
    for name, face_id in dataset.expw_faces(args.dataset, args.split):
        b = by_key[(name, face_id)]
        box = (b.left, b.top, b.right - b.left, b.bottom - b.top)
        image = cv2.imread(str(Path(root) / "origin" / name), cv2.IMREAD_COLOR)
        gray = cv2.imread(str(Path(root) / "origin" / name), cv2.IMREAD_GRAYSCALE)  # as the dataset decodes
        eyes = eyes_of(detector, image, box)
        roll = roll_degrees(eyes) if eyes is not None else float("nan")
        plain.append(crop.crop_face(gray, box, margin))
        turned.append(crop.crop_face(levelled(gray, box, roll), box, margin) if eyes is not None else plain[-1])
        rolls.append(roll)
    plain, turned, rolls = np.stack(plain), np.stack(turned), np.array(rolls)
    same = float(np.mean([np.array_equal(a, b) for a, b in zip(plain, x_ds, strict=True)]))
    found = ~np.isnan(rolls)
    lean = np.abs(rolls[found])
    print(json.dumps({"faces": len(y), "crops_as_dataset": same, "eyes_found": int(found.sum()),
                      "abs_roll_quantiles": {q: round(float(np.quantile(lean, q / 100)), 1)
                                             for q in (25, 50, 75, 90, 95)}}), flush=True)
    clf = Classifier.from_file(args.model)
    p_plain, p_turned = clf.predict(plain), clf.predict(turned)
    print(json.dumps({"variant": "as the dataset has them", **_scores(y, p_plain, found)}), flush=True)
    right = p_plain.argmax(1) == y
    edges = [0, 5, 10, 20, 180]
    print(json.dumps({"as the dataset has them, accuracy by lean": {
        f"{lo}-{hi} degrees": {"faces": int(s.sum()), "accuracy": round(float(right[s].mean()), 4)}
        for lo, hi in zip(edges, edges[1:], strict=False)
        if (s := found & (np.abs(np.nan_to_num(rolls)) >= lo) & (np.abs(np.nan_to_num(rolls)) < hi)).any()},
        "no eyes found": {"faces": int((~found).sum()), "accuracy": round(float(right[~found].mean()), 4)}}),
          flush=True)
    for t in (float(v) for v in args.thresholds.split(",")):
        use = found & (np.abs(np.nan_to_num(rolls)) >= t)
        probs = np.where(use[:, None], p_turned, p_plain)
        print(json.dumps({"variant": f"levelled when leaning >= {t:g} degrees", "levelled": int(use.sum()),
                          **_scores(y, probs, use)}), flush=True)


def _scores(y: np.ndarray, probs: np.ndarray, subset: np.ndarray) -> dict:
    m = evaluate.metrics(y, probs)
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
            "accuracy_of_levelled": round(float(np.mean(probs[subset].argmax(1) == y[subset])), 4) if subset.any() else None}


if __name__ == "__main__":
    main()
