"""Prometheus metrics of one worker, on its own registry (served at /metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from fer_core.labels import EMOTIONS

_BUCKETS_MS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250)


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.frames = Counter("fer_frames_total", "Frames processed", registry=r)
        self.fps = Gauge("fer_fps", "Frames per second over the last second (0 on a stalled source)", registry=r)
        self.last_frame = Gauge("fer_last_frame_timestamp_seconds", "Wall-clock time of the last processed frame",
                                registry=r)
        self.latency = Histogram("fer_stage_latency_ms", "Latency per stage in milliseconds", ["stage"],
                                 buckets=_BUCKETS_MS, registry=r)
        self.faces = Counter("fer_faces_total", "Faces classified", registry=r)
        self.new_faces = Counter("fer_new_faces_total", "Faces given a new id (serving.tracks): people arriving, "
                                 "or faces found again after a cut or a long miss", registry=r)
        self.cuts = Counter("fer_cuts_total", "Frames that began a new shot (the picture changed all at once)",
                            registry=r)
        self.emotions = Counter("fer_emotions_total", "Faces per predicted emotion", ["emotion"], registry=r)
        self.model = Info("fer_model", "The model being served", registry=r)
        self.reloads = Counter("fer_model_reloads_total", "Model reloads", ["result"], registry=r)
        self.reconnects = Counter("fer_source_reconnects_total", "Source reconnects", registry=r)
        self.dropped = Counter("fer_dropped_frames_total", "Live frames dropped to stay current", registry=r)
        self.corrupt = Counter("fer_corrupt_frames_total", "Corrupt frames skipped", registry=r)
        self.ready = Gauge("fer_ready", "1 when a model is loaded, the source is open and frames arrive", registry=r)
        for e in EMOTIONS:
            self.emotions.labels(emotion=e)
        for stage in ("decode", "detect", "classify", "total"):
            self.latency.labels(stage=stage)
        for result in ("success", "failure"):
            self.reloads.labels(result=result)


@dataclass
class SourceStats:
    """Counters a source updates (plain ints; the worker mirrors them into Prometheus)."""

    reconnects: int = 0
    dropped_frames: int = 0
    corrupt_frames: int = 0
