"""The served model: loaded from the registry (or a file), polled, and hot-swapped between frames.

A new champion is loaded on a background thread and swapped in atomically; a load that fails keeps
the current model serving and is counted. The last good registry model is cached on disk
(fer_core.registry), so a worker starts even when the registry is down.
"""

from __future__ import annotations

import logging
import threading
import time

from fer_core import registry
from fer_core.config import Settings

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 3600.0


class ModelHolder:
    """`classifier`: an already loaded model to serve as it is (batch analysis loads one per process)."""

    def __init__(self, uri: str, settings: Settings, metrics=None, poll_s: float | None = None, classifier=None):
        self.uri, self.settings, self.metrics = uri, settings, metrics
        self.fixed = classifier is not None
        self.poll_s = 0.0 if self.fixed else settings.serve.poll_s if poll_s is None else poll_s
        self.classifier = classifier
        self.version = classifier.version if classifier is not None else ""
        self.failures = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: dict[str, tuple[int, float]] = {}  # version -> (failures, monotonic time of next try)

    @property
    def ready(self) -> bool:
        return self.classifier is not None

    def _current_version(self) -> str | None:
        if not self.uri.startswith("models:/") or "@" not in self.uri:
            return None
        alias = self.uri.split("@", 1)[1]
        info = registry.alias_version(self.settings, alias)
        return info.version if info else None

    def load(self, version: str | None = None) -> bool:
        """Load (or reload) the model; keep the current one when it fails. A version that failed is tried
        again only after a backoff that doubles with each failure (from poll_s up to MAX_BACKOFF_S)."""
        if self.fixed:
            return True
        try:
            clf = registry.load_classifier(self.uri, self.settings)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old model
            self.failures += 1
            self.last_error = f"{exc.__class__.__name__}: {exc}"
            key = version or "?"
            count = self._failed.get(key, (0, 0.0))[0] + 1
            wait = min(max(self.poll_s, 1.0) * 2 ** (count - 1), MAX_BACKOFF_S)
            self._failed[key] = (count, time.monotonic() + wait)
            log.error("model load failed (%s); %s; version %s has failed %d time(s), next try in %.0f s",
                      self.last_error, f"still serving version {self.version}" if self.ready else "no model yet",
                      key, count, wait)
            if self.metrics:
                self.metrics.reloads.labels(result="failure").inc()
            if not self.ready:  # nothing serving yet (a restart): the version that last loaded here will do
                try:
                    clf = registry.load_classifier(self.uri, self.settings, last_good_only=True)
                except Exception:  # noqa: BLE001 - none on this machine
                    return False
                log.warning("serving the last good version %s from the cache until %s loads", clf.version, key)
                self._swap(clf)
            return False
        self._failed.pop(version or "?", None)
        self._swap(clf)
        if self.metrics:
            self.metrics.reloads.labels(result="success").inc()
        return True

    def _swap(self, clf) -> None:
        self.classifier, self.version = clf, clf.version  # one reference swap: atomic between frames
        if self.metrics:
            self.metrics.model.info({"version": str(self.version), "uri": self.uri})
        log.info("serving model %s (%s)", self.version, self.uri)

    def check(self) -> bool:
        """Reload when the alias now points at another version; True when a swap happened."""
        try:
            latest = self._current_version()
        except Exception as exc:  # noqa: BLE001 - registry down: keep serving
            log.warning("cannot poll %s: %s", self.uri, exc)
            return False
        if latest is None:
            if not self.ready:
                log.warning("no version of %s yet: waiting for one to be promoted", self.uri)
            return False
        if latest == self.version and self.ready:
            return False
        failed = self._failed.get(latest)
        if failed is not None and time.monotonic() < failed[1]:
            return False  # backing off from a version that failed to load
        log.info("alias moved: %s -> %s; loading in the background", self.version or "none", latest)
        before = self.version
        return self.load(latest) and self.version != before

    def start_polling(self) -> None:
        if self.poll_s <= 0 or not self.uri.startswith("models:/"):
            return

        def loop():
            while not self._stop.wait(self.poll_s):
                self.check()

        self._thread = threading.Thread(target=loop, name="fer-model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.ready
