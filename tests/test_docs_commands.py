"""Every `fer` command and every repository script (`python experiments/X.py ...`) in the README's and docs'
code blocks parses with today's arguments: a renamed flag or subcommand breaks this test, not the reader who
copies the line to reproduce a figure."""

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
import sys
from pathlib import Path
from unittest import mock

import pytest

from fer_cli.main import _registered_commands, build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
FER = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:\S*/)?fer (?=[a-z])")  # env assignments, then fer or .venv/bin/fer
SCRIPT = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:nice (?:-n \d+ )?)?(?:\S*/)?python3? "
                    r"(?P<script>(?:experiments|bench|tools|scripts)/\w+\.py)(?= |$)")
ASSIGNMENT = re.compile(r"^(?P<name>[a-z_]\w*)=(?P<q>[\"'])(?P<value>.*?)(?P=q)\s*(?:#.*)?$")


def commands_in(text: str, command: re.Pattern = FER) -> list[str]:
    """The commands of a Markdown text's shell code blocks that `command` matches (`fer ...` by default),
    continuations joined, comments dropped, as what follows the match."""
    found = []
    for lang, body in FENCE.findall(text):
        if lang not in ("", "bash", "sh", "console", "shell"):
            continue
        variables: dict[str, str] = {}  # common="--set ..." earlier in the block, used as $common
        for line in re.sub(r"\s*\\\n\s*", " ", body).splitlines():
            line = line.strip().removeprefix("$ ")
            assigned = ASSIGNMENT.match(line)
            if assigned:
                variables[assigned["name"]] = assigned["value"]
                continue
            line = re.sub(r"\$\{?(\w+)\}?", lambda m, known=variables: known.get(m[1], m[0]), line)
            for part in re.split(r"\s(?:&&|\|\||;|\|)\s", line):
                part = part.strip().lstrip("(")
                match = command.match(part)
                if match:
                    rest = part[match.start("script"):] if "script" in command.groupindex else part[match.end():]
                    found.append(rest.split(" #", 1)[0].strip().removesuffix(" &"))  # & runs it in the background
    return found


def test_commands_are_found():
    assert commands_in("```bash\ncommon='--set x.y=2'\nfer train $common\n```") == ["train --set x.y=2"]
    assert commands_in("```bash\nFER_HOME=/x .venv/bin/fer demo && fer models list --json  # a comment\n"
                       "fer pipeline run \\\n  --set a.b=1\n```\n") == ["demo", "models list --json",
                                                                         "pipeline run --set a.b=1"]
    assert len(commands_in((ROOT / "README.md").read_text())) >= 5


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_documented_command_parses(doc):
    parser = build_parser(_registered_commands())
    refused = []
    for command in commands_in(doc.read_text()):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(shlex.split(command))
        except SystemExit as exc:  # argparse's refusal (2); 0 is a documented --help
            if exc.code:
                refused.append(f"fer {command}: {err.getvalue().strip().splitlines()[-1]}")
    assert not refused, "\n".join(refused)


class _Parsed(Exception):
    """Raised once a script's arguments have parsed: the test stops it before it does any work."""


def _script_parses(script: str, args: list[str]) -> str:
    """'' when `script`'s main() accepts `args`, else argparse's message; the script does no work either way."""
    spec = importlib.util.spec_from_file_location(f"doc_script_{Path(script).stem}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, *a, **k):
        parse(self, *a, **k)
        raise _Parsed

    err = io.StringIO()
    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop), \
            mock.patch.object(sys, "argv", [script, *args]), \
            contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            module.main()
        except _Parsed:
            return ""
        except SystemExit as exc:
            return "" if not exc.code else err.getvalue().strip().splitlines()[-1]
    return "main() returned without parsing its arguments"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_documented_script_parses(doc, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # the scripts import fer_core from the checkout
    refused = []
    for line in commands_in(doc.read_text(), SCRIPT):
        script, *args = shlex.split(line)
        message = _script_parses(script, args)
        if message:
            refused.append(f"python {line}: {message}")
    assert not refused, "\n".join(refused)
