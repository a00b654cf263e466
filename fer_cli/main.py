"""The `fer` command. The one place that sees fer_core, flows and serving; each command is a thin call.

Machine-readable results go to stdout as JSON; logs and messages go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable

from fer_cli import output
from fer_core.config import ConfigError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
log = logging.getLogger("fer")
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure the user can act on: printed as one line, no traceback."""


def build_parser(extra: list[Callable[[argparse._SubParsersAction], None]] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer", description="Facial-expression-recognition MLOps platform.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
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
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "urllib3", "alembic", "httpx", "mlflow.store"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from fer_core.data.table import DataQualityError
    from fer_core.registry import RegistryError
    from fer_core.storage import StorageError

    output.bind(sys.stdout)
    try:
        # Libraries print progress bars and links to stdout; keep stdout for our JSON alone.
        with contextlib.redirect_stdout(sys.stderr):
            return int(args.func(args) or 0)
    except (ConfigError, StorageError, DataQualityError, CommandError, FileNotFoundError, ValueError,
            RegistryError) as exc:
        print(f"fer: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
