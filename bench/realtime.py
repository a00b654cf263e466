"""The realtime benchmark (same as `fer bench realtime VIDEO`), for both Haar modes, as JSON lines.

Usage: python bench/realtime.py --model FILE.keras [--video PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core.config import load_settings  # noqa: E402
from serving.bench import realtime  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", default=str(ROOT.parent / "shared" / "data" / "videos" / "faces_596x336.mp4"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        s = load_settings(None, [f'home="{home}"'], environ={})
        for detector in ("full", "track"):
            print(json.dumps({"bench": "realtime", **realtime(s, args.video, args.model, detector)}), flush=True)


if __name__ == "__main__":
    main()
