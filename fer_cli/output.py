"""Where results go: stdout carries only machine-readable JSON (and human tables); logs go to stderr."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, TextIO

_stream: TextIO = sys.stdout


def bind(stream: TextIO) -> None:
    """Results go to `stream` (the real stdout, captured before libraries' prints are redirected)."""
    global _stream
    _stream = stream


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers, and strict parsers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def emit(payload: Any) -> None:
    json.dump(_finite(payload), _stream, indent=2, default=str, allow_nan=False)
    _stream.write("\n")
    _stream.flush()


def say(text: str) -> None:
    """A line of human-readable output on stdout."""
    _stream.write(text + "\n")
    _stream.flush()
