"""The realtime benchmark (same as `fer bench realtime VIDEO`): full Haar, track mode, and track mode without
holding steady faces, as JSON lines; `--repeat N` runs the set N times (this VM's speed drifts from minute
to minute, so compare lines of one sitting).

Usage: python bench/realtime.py --model FILE.keras [--video PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        s = load_settings(None, [f'home="{home}"'], environ={})
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeat):
            for mode, detector, hold in (("full", "full", True), ("track", "track", True),
                                         ("track-no-hold", "track", False)):
                result = realtime(s, args.video, args.model, detector, hold=hold)
                runs.setdefault(mode, []).append(result)
                print(json.dumps({"bench": "realtime", **result}), flush=True)
    if args.repeat > 1:
        for mode, results in runs.items():
            print(json.dumps({"bench": "realtime-median", "mode": mode, "runs": len(results),
                              **{k: statistics.median(r[k] for r in results)
                                 for k in ("fps", "p50_ms", "p95_ms", "kept", "naive_fps", "speedup")}}), flush=True)


if __name__ == "__main__":
    main()
