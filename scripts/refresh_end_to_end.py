"""Bring the shipped baseline's end-to-end figure up to date after `fer predict`'s default detector changed.

Every other figure of the card is about the classifier alone; the end-to-end one also depends on the detector,
so a card written before a detector change reports a figure `fer predict` no longer gives, and `fer models
bootstrap` registers it as the champion's metric. Measure the shipped model again with the command, then:

    fer evaluate --through-detector --data EXPW_ROOT --test-split-of DATASET \
        --model fer_core/assets/baseline.keras > e2e.json
    python scripts/refresh_end_to_end.py e2e.json --command "the fer evaluate command above"

The result must be of the shipped file, on the test split of the dataset its card names; the card's section and
baseline.json's `expw_test_e2e_*` metrics are replaced, and the figures they replace are kept in baseline.json
(`end_to_end_refreshed.previous`) and named in the card, so nothing measured is lost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core.assess import E2E_PREFIX as PREFIX  # noqa: E402
from fer_core.assess import end_to_end_metrics  # noqa: E402
from fer_core.card import E2E_HEADING, end_to_end_section  # noqa: E402
from fer_core.tracking import git_commit  # noqa: E402

ASSETS = ROOT / "fer_core" / "assets"


def replace_section(card: str, section: list[str]) -> str:
    """The card with its end-to-end section (heading to the next paragraph that starts another part) replaced."""
    lines = card.splitlines()
    start = lines.index(E2E_HEADING)
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith(("## ", "Per class on "))), len(lines))
    return "\n".join([*lines[:start], *section, "", *lines[end:]]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", help="the JSON `fer evaluate --through-detector` printed for the shipped model")
    ap.add_argument("--command", required=True, help="the command that printed it")
    ap.add_argument("--assets", default=str(ASSETS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    assets = Path(args.assets)
    result = json.loads(Path(args.result).read_text())
    info = json.loads((assets / "baseline.json").read_text())
    if Path(result.get("model", "")).resolve() != (assets / "baseline.keras").resolve():
        sys.exit(f"error: {args.result} measured {result.get('model')!r}, "
                 f"not the shipped {assets / 'baseline.keras'}")
    if result.get("test_split_of") != info["dataset_version"]:
        sys.exit(f"error: {args.result} is on the test split of {result.get('test_split_of')!r}; the card's "
                 f"figures are on {info['dataset_version']!r}'s")
    previous = {k: v for k, v in info["metrics"].items() if k.startswith(PREFIX)}
    info["metrics"].update(end_to_end_metrics(result))
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    info["end_to_end_refreshed"] = {"detector": result["detector_name"], "command": args.command, "date": when,
                                    "git_commit": git_commit(), "previous": previous}
    before = previous.get(f"{PREFIX}accuracy")
    note = (f"- measured again on {when} (commit `{info['end_to_end_refreshed']['git_commit'][:12]}`) after "
            f"`fer predict`'s detector changed, by `{args.command}`")
    if before is not None:
        note += f"; the figure it replaces (an earlier detector): end to end {before:.4f}"
    section = [*end_to_end_section(result), note]
    card = assets / "MODEL_CARD.md"
    card.write_text(replace_section(card.read_text(), section))
    (assets / "baseline.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({"end_to_end": result["accuracy"], "previous": before, "detector": result["detector_name"]}))


if __name__ == "__main__":
    main()
