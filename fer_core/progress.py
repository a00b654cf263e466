"""Progress on a terminal for long work (dataset builds, training, video analysis), quiet elsewhere.

Bars go to stderr with their rate and ETA, only when stderr is a terminal and `fer -q` was not given, so
logs, CI output and the JSON on stdout stay clean. One switch for the process: `configure(quiet=...)`.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_quiet = False


def configure(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


def bar(iterable: Iterable[T] | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
        ) -> tqdm:
    """A tqdm bar on stderr (disabled when quiet or not a terminal); usable as an iterator or with update()."""
    size = shutil.get_terminal_size(fallback=(100, 24))  # a terminal that reports no size (0x0) gets 100x24
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled(),
                ncols=size.columns, nrows=size.lines, leave=False)


def track(iterable: Iterable[T], *, total: float | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    yield from bar(iterable, total=total, desc=desc, unit=unit)


def keras_callback(epochs: int, steps: int):
    """Training progress: one bar over all batches of all epochs, with loss and accuracy, or None."""
    if not enabled():
        return None
    import keras

    class EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = bar(total=epochs * steps, desc="training", unit="batch")

        def on_epoch_begin(self, epoch, logs=None):
            self.bar.set_description(f"epoch {epoch + 1}/{epochs}")

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if "loss" in k or "accuracy" in k},
                                     refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            if logs:
                self.bar.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(
                    f"{k} {float(v):.4f}" for k, v in logs.items() if "loss" in k or "accuracy" in k), file=sys.stderr)

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochBar()
