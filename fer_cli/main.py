"""The `fer` command. The one place that sees fer_core, flows and serving; each command is a thin call.

Machine-readable results go to stdout as JSON; logs and messages go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable

from fer_cli import output
from fer_core import progress
from fer_core.config import ConfigError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
log = logging.getLogger("fer")
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure the user can act on: printed as one line, no traceback."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fer-platform")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(extra: list[Callable[[argparse._SubParsersAction], None]] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer", description="Facial-expression-recognition MLOps platform.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="debug logging on stderr, and the traceback of a failure")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
    parser.add_argument("--version", action="version", version=f"fer {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    for add in extra or []:
        add(sub)
    return parser


def _registered_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    from fer_cli import commands

    return commands.ALL


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(_registered_commands())
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "urllib3", "alembic", "httpx", "mlflow.store",
                  "distributed", "bokeh"):
        logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose else logging.ERROR)
    # Prefect logs a failed task's traceback itself; our one-line error says what failed, -v shows it all.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING" if args.verbose else "CRITICAL")
    progress.configure(quiet=args.quiet)
    output.bind(sys.stdout)
    try:
        # Libraries print progress bars and links to stdout; keep stdout for our JSON alone.
        with contextlib.redirect_stdout(sys.stderr):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("fer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line; -v adds the traceback
        if args.verbose:
            traceback.print_exc()
        print(f"fer: error: {describe(exc)}", file=sys.stderr)
        if not args.verbose:
            print("fer: run with -v for the traceback", file=sys.stderr)
        return 1


def describe(exc: BaseException) -> str:
    """One line that says what went wrong: our own errors as they are, anything else with its type."""
    from fer_core.data.table import DataQualityError
    from fer_core.registry import RegistryError
    from fer_core.storage import StorageError
    from serving.http import HttpBindError, TokenRequired
    from serving.sources import SourceError

    ours = (ConfigError, StorageError, DataQualityError, CommandError, RegistryError, SourceError, HttpBindError,
            TokenRequired)
    if isinstance(exc, ours):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc} (check the owner of FER_HOME and the paths given)"
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text[:400]}"


if __name__ == "__main__":
    sys.exit(main())
