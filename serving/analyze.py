"""Offline analysis of a video: timeline CSV, summary JSON, summary plot, annotated video."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_core import progress
from fer_core.config import Settings
from fer_core.labels import EMOTIONS
from serving.sinks import write_json
from serving.sources import undecodable
from serving.tracks import FaceStats
from serving.worker import Worker, WorkerOptions

log = logging.getLogger(__name__)


def plot_timeline(per_second: list[dict], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    secs = [r["second"] for r in per_second]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bottom = np.zeros(len(secs))
    for e in EMOTIONS:
        vals = np.array([r[f"mean_{e}"] for r in per_second])
        ax.bar(secs, vals, bottom=bottom, label=e, width=0.9)
        bottom += vals
    ax.set_ylabel("mean probability")
    ax.set_title(title)
    ax.legend(ncol=7, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.02))
    ax2.plot(secs, [r["faces"] / max(r["frames"], 1) for r in per_second], marker="o")
    ax2.set_ylabel("faces/frame")
    ax2.set_xlabel("second")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def analyze(settings: Settings, video: str, out_dir: str, model_uri: str, detector: str = "blazeface",
            classifier=None) -> dict[str, Any]:
    """One video: timeline CSV, per-second CSV, summary JSON, plot and annotated video in `out_dir`.
    `classifier`: a model already loaded (batch analysis reuses one per process). Faces are found by BlazeFace on
    every frame by default: offline there is no frame budget, and Haar's false faces (lights, patterns) would
    enter the timeline as emotions (`detector="full"` or `"track"` for the worker's Haar)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in ("timeline.csv", "timeline.seconds.csv"):  # an analysis is written anew, never appended to
        (out / old).unlink(missing_ok=True)
    opts = WorkerOptions(source=video, model_uri=model_uri, timeline=str(out / "timeline.csv"), model_wait_s=60.0,
                         record=str(out / "annotated.mp4"), detector=detector)
    worker = Worker(settings, opts, classifier=classifier)
    cap = cv2.VideoCapture(video)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    cap.release()
    faces_followed = FaceStats(len(EMOTIONS))

    def on_frame(result) -> None:
        faces_followed.add(result.timestamp, result.detections.face_ids(), result.detections.probs)
        bar.update(1)

    with progress.bar(total=total, desc=f"analyze {Path(video).name}", unit="frame") as bar:
        worker.results_hook = on_frame
        run = worker.run()
    corrupt = run["corrupt_frames"]
    if not run["frames"]:  # FFmpeg opened it, but no frame decodes: no analysis to write, and an analyst must know
        for partial in ("timeline.csv", "timeline.seconds.csv", "annotated.mp4"):
            (out / partial).unlink(missing_ok=True)
        raise undecodable(video, corrupt)
    if corrupt:
        log.warning("%s: %d of %d frames could not be decoded and were skipped", video, corrupt,
                    corrupt + run["frames"])
    per_second = worker.timeline.per_second()
    totals = np.zeros(len(EMOTIONS))
    for r in per_second:
        totals += np.array([r[f"mean_{e}"] for e in EMOTIONS]) * r["faces"]
    faces = sum(r["faces"] for r in per_second)
    fps = worker.source.fps or 25.0
    summary = {
        "video": video, "model": model_uri, "model_version": run["model_version"], "frames": run["frames"],
        "corrupt_frames": corrupt,
        "duration_s": round(run["frames"] / fps, 3), "seconds": len(per_second),
        "faces": faces, "detector": detector, "processing_fps": run["fps"],
        "mean_probability": {e: round(float(t / faces), 5) if faces else 0.0 for e, t in zip(EMOTIONS, totals, strict=True)},
        "dominant_per_second": [r["dominant"] for r in per_second],
        # each face followed for at least a second (the timeline's `face` column), the longest first
        "face_ids": len(faces_followed),
        "faces_followed": faces_followed.summary(list(EMOTIONS), min_frames=max(1, round(fps))),
        "outputs": {"timeline": str(out / "timeline.csv"), "per_second": str(out / "timeline.seconds.csv"),
                    "summary": str(out / "summary.json"), "plot": str(out / "summary.png"),
                    "video": str(out / "annotated.mp4")},
    }
    summary["dominant"] = max(summary["mean_probability"], key=summary["mean_probability"].get) if faces else ""
    (out / "summary.png").write_bytes(plot_timeline(per_second, f"{Path(video).name}: emotions per second"))
    write_json(str(out / "summary.json"), summary)
    return summary
