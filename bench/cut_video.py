"""A video with cuts, made from a real one: every `--every` frames the picture switches between the original
shot and the same shot moved sideways by `--shift` pixels, so each face jumps to where no tracker expects it
(what a broadcast cut between two cameras does). Input for `fer bench realtime` and `bench/detect_sweep.py`,
to measure how fast `track` mode finds faces again after a cut.

Usage: python bench/cut_video.py OUT.mp4 [--video PATH] [--every 20] [--shift -220]
Prints one JSON line: the output's frames, cuts and size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def shifted(image: np.ndarray, dx: int) -> np.ndarray:
    """The image moved `dx` pixels sideways, the uncovered edge filled by repeating the border."""
    matrix = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def write_cut_video(video: str | Path, out: str | Path, every: int = 20, shift: int = -220) -> dict:
    """Copy `video` to `out` (MJPG in AVI, or mp4v for .mp4), shifting every other run of `every` frames."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer, frames = None, 0
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                break
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if str(out).endswith(".mp4") else "MJPG"))
                writer = cv2.VideoWriter(str(out), fourcc, fps, (image.shape[1], image.shape[0]))
            writer.write(shifted(image, shift) if (frames // every) % 2 else image)
            frames += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if not frames:
        raise SystemExit(f"no frame of {video} could be decoded")
    return {"out": str(out), "frames": frames, "cuts": (frames - 1) // every, "every": every, "shift": shift}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--video", default=str(ROOT.parent / "shared" / "data" / "videos" / "faces_596x336.mp4"))
    ap.add_argument("--every", type=int, default=20, help="frames between cuts")
    ap.add_argument("--shift", type=int, default=-220, help="pixels the second shot is moved sideways")
    args = ap.parse_args()
    print(json.dumps(write_cut_video(args.video, args.out, args.every, args.shift)))


if __name__ == "__main__":
    main()
