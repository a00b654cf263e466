"""Every `fer` command in the README's and docs' code blocks parses with today's CLI: a renamed flag or
subcommand breaks this test, not the reader who copies the line."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from fer_cli.main import _registered_commands, build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
FER = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:\S*/)?fer (?=[a-z])")  # env assignments, then fer or .venv/bin/fer


ASSIGNMENT = re.compile(r"^(?P<name>[a-z_]\w*)=(?P<q>[\"'])(?P<value>.*?)(?P=q)\s*(?:#.*)?$")


def commands_in(text: str) -> list[str]:
    """The `fer ...` commands of a Markdown text's shell code blocks, continuations joined, comments dropped."""
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
                match = FER.match(part)
                if match:
                    found.append(part[match.end():].split(" #", 1)[0].strip())
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
