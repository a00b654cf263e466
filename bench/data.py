"""Build a dataset from all of ../shared/data and print wall time and peak RSS as JSON.

Usage: python bench/data.py [--fer2013 PATH] [--expw PATH]   (target: peak RSS <= 4 GB)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core.config import load_settings  # noqa: E402
from fer_core.data import dataset  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fer2013", default=str(SHARED / "fer2013" / "fer2013.csv.gz"))
    ap.add_argument("--expw", default=str(SHARED / "expw"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        s = load_settings(None, [f'home="{home}"', f'data.fer2013="{args.fer2013}"', f'data.expw="{args.expw}"'],
                          environ={})
        t0 = time.perf_counter()
        ds = dataset.build(s)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        dataset.build(s)
        reuse_seconds = time.perf_counter() - t1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"bench": "data", "version": ds.version, "build_seconds": round(seconds, 2),
                      "reuse_seconds": round(reuse_seconds, 2), "peak_rss_mb": round(peak_mb, 1),
                      "target_peak_rss_mb": 4096, "faces": {k: sum(v.values()) for k, v in ds.stats["counts"].items()}}))


if __name__ == "__main__":
    main()
