"""The realtime worker: source -> pipeline -> sinks, with metrics, health, preview and graceful stop."""

from __future__ import annotations

import collections
import logging
import queue
import signal
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np

from fer_core.config import Settings
from serving import sources
from serving.http import WorkerHTTP
from serving.metrics import SourceStats, WorkerMetrics
from serving.model import ModelHolder
from serving.pipeline import FaceFinder, FramePipeline, FrameResult
from serving.sinks import Annotator, PreviewState, VideoRecorder
from serving.timeline import Timeline

log = logging.getLogger(__name__)

LATENCY_WINDOW = 10_000  # frames in the run summary's latency percentiles: bounded memory for weeks of frames
GAUGE_INTERVAL_S = 1.0


@dataclass
class WorkerOptions:
    source: str
    model_uri: str
    http: str = ""
    display: bool = False
    record: str = ""
    timeline: str = ""
    max_frames: int = 0
    detector: str = "full"
    scan_every: int = 48
    hold: bool = True  # track mode: steady faces keep their box every other frame
    preview_fps: float = 15.0
    model_wait_s: float = 0.0  # give up when no model loads within this time; 0 = wait (not ready) until stopped


class Worker:
    def __init__(self, settings: Settings, options: WorkerOptions, classifier=None):
        self.settings, self.opt = settings, options
        self.metrics = WorkerMetrics()
        self.stats = SourceStats()
        self.model = ModelHolder(options.model_uri, settings, self.metrics, classifier=classifier)
        self.pipeline = FramePipeline(FaceFinder(options.detector, options.scan_every, hold=options.hold), self.model,
                                      margin=settings.data.margin)
        self.annotator = Annotator()
        self.preview = PreviewState()
        sv = settings.serve
        self.worker_id = sv.worker_id or socket.gethostname()
        self.timeline = Timeline(options.timeline, live=sources.is_live(options.source), worker_id=self.worker_id,
                                 flush_s=sv.timeline_flush_s, rotate_s=sv.timeline_rotate_s,
                                 rotate_mb=sv.timeline_rotate_mb, upload=sv.timeline_upload,
                                 local_dir=settings.home_path / "timelines") if options.timeline else None
        self.recorder: VideoRecorder | None = None
        self.http = WorkerHTTP(options.http, self, sv.token, open_metrics=sv.open_metrics, tls_cert=sv.tls_cert,
                               tls_key=sv.tls_key) if options.http else None
        self.source = None
        self.stopped = False
        self._stop = threading.Event()
        self.frames = 0
        self.faces = 0
        self.fps = 0.0
        # The run summary's percentiles cover the last LATENCY_WINDOW frames (Prometheus has all of them).
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.last_frame_at = 0.0  # wall-clock time of the last processed frame
        self.results_hook = None  # optional callable(FrameResult) for analyze/bench
        self._synced = SourceStats()
        self._threads: list[threading.Thread] = []

    # --- state for /readyz and /api/status ---------------------------------------------------------------
    @property
    def source_open(self) -> bool:
        return bool(self.source is not None and self.source.opened)

    @property
    def stalled(self) -> bool:
        """No frame within serve.stall_s (also before the first frame)."""
        return time.time() - self.last_frame_at > self.settings.serve.stall_s

    @property
    def ready(self) -> bool:
        return self.model.ready and self.source_open and not self.stalled

    def status(self) -> dict:
        return {"model_version": self.model.version, "model_uri": self.opt.model_uri, "fps": round(self.fps, 2),
                "frames": self.frames, "faces": self.faces, "ready": self.ready,
                "last_minute": self.preview.distribution(), "reload_failures": self.model.failures,
                "stalled": self.stalled, "last_frame_at": self.last_frame_at, "worker_id": self.worker_id,
                "timeline_rows_flushed": self.timeline.rows_flushed if self.timeline else 0}

    def stop(self, *_args) -> None:
        self._stop.set()

    # --- the loop -------------------------------------------------------------------------------------------
    def _frames(self):
        """Frames from the source; a file is decoded ahead on its own thread (decode || process)."""
        src = self.source
        if src.live:
            while not self._stop.is_set():
                frame = src.read(timeout=1.0)
                if frame is not None:
                    yield frame
            return
        q: queue.Queue = queue.Queue(maxsize=16)
        done = object()

        def put(item) -> bool:
            while not self._stop.is_set():  # never blocks past a stop: the consumer may be gone
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def decode():
            while not self._stop.is_set():
                t0 = time.perf_counter()
                frame = src.read()
                if frame is None:
                    break
                self.metrics.latency.labels(stage="decode").observe((time.perf_counter() - t0) * 1000)
                if not put(frame):
                    return
            put(done)

        self._start_thread(decode, "fer-decode")
        while True:
            item = q.get()
            if item is done:
                return
            yield item

    def _start_thread(self, target, name: str) -> None:
        """A helper thread that run() stops and joins on every way out."""
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _update_gauges(self) -> None:
        """On a timer, not per frame, so that a stalled stream shows: fps decays to 0, ready goes to 0."""
        last_frames, last_t = self.frames, time.monotonic()
        while not self._stop.wait(GAUGE_INTERVAL_S):
            now, frames = time.monotonic(), self.frames
            self.fps = (frames - last_frames) / (now - last_t)
            last_frames, last_t = frames, now
            self.metrics.fps.set(self.fps)
            self.metrics.ready.set(1 if self.ready else 0)
            self._sync_source_stats()

    def _sync_source_stats(self) -> None:
        for name, counter in (("reconnects", self.metrics.reconnects), ("dropped_frames", self.metrics.dropped),
                              ("corrupt_frames", self.metrics.corrupt)):
            delta = getattr(self.stats, name) - getattr(self._synced, name)
            if delta > 0:
                counter.inc(delta)
                setattr(self._synced, name, getattr(self.stats, name))

    def _emit(self, frame, result: FrameResult) -> None:
        m = self.metrics
        m.frames.inc()
        if len(result.detections):
            m.faces.inc(len(result.detections))
            for label in result.detections.labels:
                m.emotions.labels(emotion=label).inc()
        for stage, ms in result.timings_ms.items():
            m.latency.labels(stage=stage).observe(ms)
        if self.timeline is not None:
            self.timeline.add(result, self.model.version)
        if self.results_hook is not None:
            self.results_hook(result)
        want_preview = self.http is not None and time.monotonic() - self._last_preview >= 1 / self.opt.preview_fps
        if self.opt.record or self.opt.display or want_preview:
            annotated = self.annotator.draw(frame.image.copy() if want_preview else frame.image, result)
            if self.opt.record:
                if self.recorder is None:
                    self.recorder = VideoRecorder(self.opt.record, getattr(self.source, "fps", 25.0) or 25.0)
                self.recorder.write(annotated)
            if want_preview:
                self.preview.update(annotated, result)
                self._last_preview = time.monotonic()
            if self.opt.display:
                import cv2

                cv2.imshow("fer", annotated)
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    self.stop()

    def _wait_for_model(self) -> bool:
        """Wait, not ready, until a model is loaded (True) or the worker is stopped (False); give up with a
        clear error only when options.model_wait_s is set. A shared registry without a champion is a state
        to wait out, not a failure: the poller loads the champion as soon as one is promoted."""
        waited, said = 0.0, None
        while not self.model.ready:
            if self._stop.is_set():
                return False
            if self.opt.model_wait_s and waited >= self.opt.model_wait_s:
                raise RuntimeError(f"no model could be loaded from {self.opt.model_uri} within "
                                   f"{self.opt.model_wait_s:.0f} s: {self.model.last_error or 'no champion yet'}")
            # said at once when a load failed, after 20 s of an ordinary first load (TensorFlow's import), then every 30 s
            if (self.model.last_error or waited >= 20.0) and (said is None or waited - said >= 30.0):
                log.warning("not ready: no model loaded from %s yet (%s); polling every %.0f s",
                            self.opt.model_uri, self.model.last_error or "waiting", self.model.poll_s)
                said = waited
            self.model.wait_ready(0.5)
            waited += 0.5
        return True

    def _serve_frames(self) -> float:
        """The frame loop; returns when it started (throughput counts from the first frame)."""
        started = time.perf_counter()
        for frame in self._frames():
            t0 = time.perf_counter()
            followed = self.pipeline.tracks.next_id
            result = self.pipeline.process(frame.index, frame.timestamp, frame.image)
            self._emit(frame, result)
            self.metrics.new_faces.inc(self.pipeline.tracks.next_id - followed)
            self.metrics.cuts.inc(int(self.pipeline.finder.cut))
            total = (time.perf_counter() - t0) * 1000
            self.metrics.latency.labels(stage="total").observe(total)
            self.latencies.append(total)
            self.frames += 1
            self.faces += len(result.detections)
            self.last_frame_at = time.time()
            self.metrics.last_frame.set(self.last_frame_at)
            if self._stop.is_set() or (self.opt.max_frames and self.frames >= self.opt.max_frames):
                break
        return started

    def run(self) -> dict:
        """Run until the source ends, max_frames, or a stop signal; returns a summary."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        if self.http is not None:
            self.http.start()
        self._last_preview = 0.0
        started = time.perf_counter()
        try:
            self._start_thread(self.model.load, "fer-model-load")
            self._start_thread(self._update_gauges, "fer-gauges")
            self.source = sources.open_source(self.opt.source, self.stats, self.settings.serve.read_timeout_s)
            self.model.start_polling()  # also loads the model later when there is none yet
            if self._wait_for_model():
                started = self._serve_frames()
        finally:
            self.stopped = True
            self._stop.set()  # the decode, gauge and poll threads end with the loop, whatever ended it
            self.model.stop()
            self.metrics.ready.set(0)
            self.metrics.fps.set(0)
            self._sync_source_stats()
            for t in self._threads:
                t.join(10)
            if self.source is not None:
                self.source.close()
            if self.recorder is not None:
                self.recorder.close()
            if self.timeline is not None:
                self.timeline.close()
            self.pipeline.finder.close()
            if self.http is not None:
                self.http.stop()
        seconds = time.perf_counter() - started
        lat = np.asarray(self.latencies or [0.0])  # the last LATENCY_WINDOW frames
        return {"frames": self.frames, "faces": self.faces, "seconds": round(seconds, 3),
                "fps": round(self.frames / seconds, 2) if seconds else 0.0,
                "p50_ms": round(float(np.percentile(lat, 50)), 3), "p95_ms": round(float(np.percentile(lat, 95)), 3),
                "model_version": self.model.version, "reload_failures": self.model.failures,
                "corrupt_frames": self.stats.corrupt_frames, "dropped_frames": self.stats.dropped_frames,
                "reconnects": self.stats.reconnects, "timeline": self.opt.timeline, "record": self.opt.record}
