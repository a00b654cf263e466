"""Many videos: N copies of the real face video analysed in this process, one after another, against a local
Dask cluster of 2 worker processes (`serving.batch`, as `fer analyze FOLDER` runs them). Prints JSON with
videos/s for each.

    python bench/analyze_many.py [--copies 8] [--workers 2] [--model FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import progress, registry  # noqa: E402
from fer_core.config import load_settings  # noqa: E402
from serving.analyze import analyze  # noqa: E402
from serving.batch import analyze_many  # noqa: E402

VIDEO = ROOT.parent / "shared" / "data" / "videos" / "faces_596x336.mp4"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--video", default=str(VIDEO))
    ap.add_argument("--model", default=str(ROOT / "fer_core" / "assets" / "baseline.keras"))
    a = ap.parse_args()
    progress.configure(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        for i in range(a.copies):
            shutil.copy(a.video, folder / f"copy{i:03d}.mp4")
        s = load_settings(None, [f'home="{tmp}/home"', f"dask.workers={a.workers}"])
        clf = registry.load_classifier(a.model, s)
        started = time.perf_counter()
        for i, video in enumerate(sorted(folder.iterdir())):
            analyze(s, str(video), f"{tmp}/serial/{i}", a.model, classifier=clf)
        serial = time.perf_counter() - started
        started = time.perf_counter()
        result = analyze_many(s, [str(folder)], f"{tmp}/dask", a.model)
        dask_s = time.perf_counter() - started
    print(json.dumps({"bench": "analyze_many", "copies": a.copies, "video": Path(a.video).name,
                      "in_process_s": round(serial, 2), "in_process_videos_per_s": round(a.copies / serial, 3),
                      "dask_workers": a.workers, "dask_s": round(dask_s, 2),
                      "dask_videos_per_s": round(a.copies / dask_s, 3), "dask_ok": result["ok"],
                      "speedup": round(serial / dask_s, 2),
                      "note": "dask_s includes starting the local cluster and each worker's model load"}))


if __name__ == "__main__":
    main()
