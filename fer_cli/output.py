"""Where results go: stdout carries only machine-readable JSON (and human tables); logs go to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

_stream: TextIO = sys.stdout


def bind(stream: TextIO) -> None:
    """Results go to `stream` (the real stdout, captured before libraries' prints are redirected)."""
    global _stream
    _stream = stream


def emit(payload: Any) -> None:
    json.dump(payload, _stream, indent=2, default=str)
    _stream.write("\n")
    _stream.flush()


def say(text: str) -> None:
    """A line of human-readable output on stdout."""
    _stream.write(text + "\n")
    _stream.flush()
