"""Many videos at once: `fer analyze V1 V2 ... | FOLDER | gs://PREFIX --out DIR`, each video a task on a Dask
cluster (`dask.address`), or on a local cluster of worker processes, one per core, when none is set.

Each worker process loads the model once and reuses it for every video it is given; each video's outcome
comes back on its own, so a corrupt file is reported in `index.csv` while the others finish. The model
version is pinned before the first task, so a promotion in the middle of a batch does not mix versions.
Outputs: `DIR/<video stem>/` (timeline, per-second timeline, summary, plot, annotated video) for each
video, `DIR/index.csv` (one row per video) and `DIR/comparison.png` (mean emotion probabilities side by side).
Output folders must be reachable by the workers (a shared file system for a remote cluster).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any

from fer_core import progress, registry, storage
from fer_core.config import Settings
from fer_core.labels import EMOTIONS

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
INDEX_FIELDS = ["video", "status", "frames", "corrupt_frames", "seconds", "duration_s", "faces", "face_ids", "dominant",
                *[f"mean_{e}" for e in EMOTIONS], "model_version", "output", "error"]
_LOADED: dict[str, Any] = {}  # model URI -> classifier, per worker process


def expand_inputs(inputs: list[str]) -> list[str]:
    """Video files as given, the videos inside folders, and the videos under `gs://` prefixes, in order."""
    videos: list[str] = []
    for item in inputs:
        if storage.is_gcs(item) and PurePosixPath(item).suffix.lower() not in VIDEO_SUFFIXES:
            videos += [storage.join(item, rel) for rel, _, _ in storage.list_files(item)
                       if PurePosixPath(rel).suffix.lower() in VIDEO_SUFFIXES]
        elif Path(item).is_dir():
            videos += sorted(str(p) for p in Path(item).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            videos.append(item)
    if not videos:
        raise FileNotFoundError(f"no videos in {' '.join(inputs)} (looked for {', '.join(VIDEO_SUFFIXES)})")
    return videos


def output_names(videos: list[str]) -> list[str]:
    """A folder name per video: its stem, made unique with -2, -3... when stems repeat."""
    seen: dict[str, int] = {}
    names = []
    for v in videos:
        stem = PurePosixPath(v).stem if storage.is_gcs(v) else Path(v).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def pin_version(settings: Settings, model_uri: str) -> str:
    """`models:/NAME@ALIAS` -> `models:/NAME/VERSION` as of now; anything else unchanged."""
    if model_uri.startswith("models:/") and "@" in model_uri:
        name, alias = model_uri[len("models:/"):].split("@", 1)
        info = registry.alias_version(settings.model_copy(update={"registry": settings.registry.model_copy(
            update={"model_name": name})}), alias)
        if info is None:
            raise registry.RegistryError(f"model {name} has no version with alias {alias!r}")
        return f"models:/{name}/{info.version}"
    return model_uri


def analyze_task(settings_json: str, video: str, out_dir: str, model_uri: str, detector: str) -> dict[str, Any]:
    """One video on a worker process; never raises: a failure is the video's result."""
    import cv2

    from serving.analyze import analyze

    settings = Settings.model_validate_json(settings_json)
    progress.configure(quiet=True)  # many processes share a terminal: the client shows one bar
    cv2.setNumThreads(1)  # one video per core
    try:
        if model_uri not in _LOADED:
            _LOADED[model_uri] = registry.load_classifier(model_uri, settings)
        with storage.local_copy(video) as local:
            summary = analyze(settings, str(local), out_dir, model_uri, detector, classifier=_LOADED[model_uri])
        return {**summary, "video": video, "status": "ok", "output": out_dir, "pid": os.getpid()}
    except Exception as exc:  # noqa: BLE001 - reported per video, the batch goes on
        return {"video": video, "status": "failed", "output": out_dir, "pid": os.getpid(),
                "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}


def _client(settings: Settings, n_videos: int):
    from distributed import Client, LocalCluster

    if settings.dask.address:
        return Client(settings.dask.address), None
    workers = settings.dask.workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=max(1, min(workers, n_videos)), threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return Client(cluster), cluster


def analyze_many(settings: Settings, inputs: list[str], out_dir: str, model_uri: str,
                 detector: str = "blazeface") -> dict[str, Any]:
    from distributed import as_completed

    videos = expand_inputs(inputs)
    names = output_names(videos)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pinned = pin_version(settings, model_uri)
    client, cluster = _client(settings, len(videos))
    try:
        payload = settings.model_dump_json()
        futures = [client.submit(analyze_task, payload, video, str(out / name), pinned, detector,
                                 key=f"fer-analyze-{i:05d}-{name}", pure=False)
                   for i, (video, name) in enumerate(zip(videos, names, strict=True))]
        by_key: dict[str, dict[str, Any]] = {}
        with progress.bar(total=len(futures), desc="videos", unit="video") as bar:
            for future in as_completed(futures):
                by_key[future.key] = future.result()
                bar.update(1)
        results = [by_key[f.key] for f in futures]
        scheduler = client.scheduler.address
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    _write_index(out / "index.csv", results)
    ok = [r for r in results if r["status"] == "ok"]
    if ok:
        (out / "comparison.png").write_bytes(plot_comparison(ok))
    failed = [{"video": r["video"], "error": r["error"]} for r in results if r["status"] != "ok"]
    for f in failed:
        log.error("%s: %s", f["video"], f["error"])
    return {"videos": len(results), "ok": len(ok), "failed": failed, "model": pinned, "scheduler": scheduler,
            "index": str(out / "index.csv"), "comparison": str(out / "comparison.png") if ok else "",
            "results": [{k: r.get(k) for k in ("video", "status", "frames", "faces", "dominant", "output")}
                        for r in results]}


def _write_index(path: Path, results: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, INDEX_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in results:
        row = {k: r.get(k, "") for k in INDEX_FIELDS}
        row.update({f"mean_{e}": r.get("mean_probability", {}).get(e, "") for e in EMOTIONS})
        writer.writerow(row)
    storage.write_text(str(path), buf.getvalue())


def plot_comparison(results: list[dict[str, Any]]) -> bytes:
    """Mean probability of each emotion, one group of bars per emotion, one bar per video."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(EMOTIONS) * max(1, len(results)) ** 0.5), 4.5))
    width = 0.8 / len(results)
    x = np.arange(len(EMOTIONS))
    for i, r in enumerate(results):
        label = Path(str(r["video"])).name
        ax.bar(x + i * width - 0.4 + width / 2, [r["mean_probability"][e] for e in EMOTIONS], width, label=label)
    ax.set_xticks(x, EMOTIONS)
    ax.set_ylabel("mean probability over faces")
    ax.set_title(f"Emotions across {len(results)} videos")
    if len(results) <= 12:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
