"""`fer bench realtime`: the worker end to end on a video, its detection recall, and the seed's naive loop."""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from fer_core import card, detect, models, registry
from fer_core.config import Settings
from serving.pipeline import FrameResult
from serving.sources import FileSource, undecodable
from serving.worker import Worker, WorkerOptions


def reference_boxes(video: str) -> list[np.ndarray]:
    """Full-resolution Haar (scaleFactor 1.1, minNeighbors 5, minSize 48x48) on every frame the worker sees:
    read by the worker's own file source, which skips undecodable frames, so the two lists stay aligned."""
    ref = detect.HaarDetector(1.1, 5, 48, 0)
    source = FileSource(video)
    out = []
    try:
        while (frame := source.read()) is not None:
            out.append(ref.detect(cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)))
    finally:
        source.close()
    return out


def naive_loop(video: str, keras_path: str, max_frames: int = 40) -> float:
    """The seed's loop: Haar with defaults on the full frame, `model.predict` per face. Frames/s."""
    model = models.load(keras_path)
    cascade = cv2.CascadeClassifier(str(detect.cascade_path()))
    cap = cv2.VideoCapture(video)
    n, t0 = 0, time.perf_counter()
    while n < max_frames:
        ok, image = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        for x, y, w, h in cascade.detectMultiScale(gray):
            face = cv2.resize(gray[y:y + h, x:x + w], (48, 48))
            model.predict(face[None], verbose=0)
        n += 1
    return n / (time.perf_counter() - t0)


def match_reference(reference: list[np.ndarray], found: list[np.ndarray]) -> tuple[int, int, int]:
    """Per frame, the reference boxes found (IoU >= 0.5): (kept, reference boxes, found boxes matching none)."""
    kept = total = extra = 0
    for ref, boxes in zip(reference, found, strict=False):
        total += len(ref)
        if len(ref) and len(boxes):
            overlap = detect.iou(ref, boxes)
            kept += int((overlap.max(axis=1) >= 0.5).sum())
            extra += int((overlap.max(axis=0) < 0.5).sum())
        else:
            extra += len(boxes)
    return kept, total, extra


def realtime(settings: Settings, video: str, model_uri: str, detector: str = "full", naive_frames: int = 40,
             scan_every: int = 48, hold: bool = True) -> dict[str, Any]:
    results: list[FrameResult] = []
    worker = Worker(settings, WorkerOptions(source=video, model_uri=model_uri, detector=detector,
                                            scan_every=scan_every, hold=hold, model_wait_s=60.0))
    worker.results_hook = results.append
    run = worker.run()
    if not run["frames"]:
        raise undecodable(video, run["corrupt_frames"])
    ref = reference_boxes(video)
    kept, total, extra = match_reference(ref, [res.detections.boxes for res in results])
    widths = np.concatenate([res.detections.boxes[:, 2] for res in results if len(res.detections.boxes)] or [[]])
    naive_fps = naive_loop(video, str(registry.resolve(model_uri, settings).path), naive_frames) if naive_frames else 0
    return {"video": video, "detector": detector, "scan_every": scan_every if detector == "track" else None,
            "hold": hold if detector == "track" else None,
            "scans": dict(worker.pipeline.finder.scans) if detector == "track" else None,  # discovery scans by cause
            "held_answers": worker.pipeline.held_answers,  # faces that kept last frame's box and answer (hold)
            "frames": run["frames"], "fps": run["fps"],
            "p50_ms": run["p50_ms"], "p95_ms": run["p95_ms"], "faces": run["faces"],
            # where a frame's time goes: finding faces and classifying them (the rest of 1000/fps is decoding,
            # drawing and the sinks)
            "stage_mean_ms": {stage: round(float(np.mean([r.timings_ms[stage] for r in results])), 3)
                              for stage in ("detect", "classify")},
            "reference_faces": total, "kept": round(kept / total, 4) if total else 1.0,
            "extra": extra,  # boxes the reference does not have on that frame
            # how wide the faces it found were: the card's `<set>_at_<N>px` rows say how faces that size are read
            "face_width_px": {name: round(float(np.percentile(widths, q)), 1) for name, q in
                              (("min", 0), ("p10", 10), ("median", 50), ("p90", 90))} if len(widths) else {},
            "naive_fps": round(naive_fps, 2), "speedup": round(run["fps"] / naive_fps, 2) if naive_fps else None,
            "model_version": run["model_version"],
            "hardware": card.hardware()}  # the same worker ran 1.4x apart on two VMs of one CPU name
