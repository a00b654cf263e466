"""What the worker's answer hold costs: a held face (last frame's box, unscanned) keeps last frame's emotions.

Runs the worker's frame pipeline (`track` mode, hold on) over a video and, for every face whose answer was held,
also classifies it fresh from this frame's pixels. Prints one JSON line: how many answers were held, how often the
held answer's top emotion is the fresh one's, the mean absolute difference of their probabilities, and the largest
difference of any emotion's mean over a second (what a per-second timeline shows).

Usage: python experiments/held_answers.py VIDEO [--model fer_core/assets/baseline.keras]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import baseline, crop  # noqa: E402
from fer_core.classify import Classifier  # noqa: E402
from serving.pipeline import FaceFinder, FramePipeline  # noqa: E402
from serving.sources import FileSource  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("--model", default=str(baseline.model_path()))
    ap.add_argument("--margin", type=float, default=0.10)
    args = ap.parse_args()
    clf = Classifier.from_file(args.model)
    pipeline = FramePipeline(FaceFinder("track", hold=True), SimpleNamespace(classifier=clf), args.margin)
    source = FileSource(args.video)
    held_probs, fresh_probs = [], []
    served_sum: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(7))  # per second: served probabilities summed
    fresh_sum: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(7))  # the same faces, all classified fresh
    faces_in: dict[int, int] = defaultdict(int)
    frames = 0
    try:
        while (frame := source.read()) is not None:
            result = pipeline.process(frames, frame.timestamp, frame.image)
            boxes, probs = result.detections.boxes, result.detections.probs
            fresh = probs.copy()
            held = pipeline.finder.held(len(boxes))
            if held.any():
                gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
                fresh[held] = clf.predict(crop.crop_faces(gray, boxes[held], args.margin))
                held_probs.append(probs[held])
                fresh_probs.append(fresh[held])
            second = int(frame.timestamp)
            served_sum[second] += probs.sum(0)
            fresh_sum[second] += fresh.sum(0)
            faces_in[second] += len(boxes)
            frames += 1
    finally:
        source.close()
        pipeline.finder.close()
    held_p = np.concatenate(held_probs) if held_probs else np.zeros((0, 7))
    fresh_p = np.concatenate(fresh_probs) if fresh_probs else np.zeros((0, 7))
    worst = max((float(np.abs(served_sum[s] - fresh_sum[s]).max()) / n for s, n in faces_in.items() if n), default=0.0)
    print(json.dumps({"video": args.video, "model": args.model, "frames": frames, "face_ids": pipeline.tracks.next_id,
                      "held_answers": len(held_p), "held_answers_reported": pipeline.held_answers,
                      "same_top_emotion": round(float((held_p.argmax(1) == fresh_p.argmax(1)).mean()), 4)
                      if len(held_p) else None,
                      "mean_abs_probability_difference": round(float(np.abs(held_p - fresh_p).mean()), 5)
                      if len(held_p) else None,
                      "largest_per_second_mean_difference": round(worst, 5)}))


if __name__ == "__main__":
    main()
