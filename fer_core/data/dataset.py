"""Versioned datasets: ingest -> merge -> undersample -> split -> SMOTE, written as one artifact.

The version is a hash of the raw inputs' fingerprints and the build settings, so building the same
inputs with the same settings again finds the existing version and reuses it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_core import balance, storage
from fer_core.config import Settings
from fer_core.data import expw, fer2013
from fer_core.data.table import FaceTable, Rejects, check_quality
from fer_core.labels import EMOTIONS

log = logging.getLogger(__name__)

ARRAYS = "faces.npz"
MANIFEST = "manifest.csv"
STATS = "stats.json"  # written last: its presence marks a complete version
REJECTS = "rejects.csv"
PLOT_STAGES = ("raw_fer2013", "raw_expw", "merged", "undersampled", "smote")


@dataclass
class Dataset:
    """A built dataset: named splits of (faces, labels) plus its stats."""

    version: str
    path: str
    stats: dict[str, Any]
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    sources: dict[str, np.ndarray] = field(default_factory=dict)  # split -> source of each face

    @property
    def test_sets(self) -> list[str]:
        return [name for name in self.splits if name == "test" or name.startswith("fer2013_")]

    def eval_sets(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The held-out sets a model is scored on: the test split, the fixed FER2013 test usages, and the
        test split's ExpW faces alone (`expw_test`), since in-the-wild faces are the harder domain."""
        out = {name: self.splits[name] for name in self.test_sets}
        src = self.sources.get("test")
        if "test" in self.splits and src is not None and len(src) == len(self.splits["test"][1]):
            mask = src == "expw"
            if mask.any() and not mask.all():
                x, y = self.splits["test"]
                out["expw_test"] = (x[mask], y[mask])
        return out

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "path": self.path, "counts": self.stats["counts"],
                "rejects": self.stats["rejects"], "fingerprint": self.stats["fingerprint"],
                "reused": self.stats.get("reused", False)}


def fingerprint_source(path: str) -> str:
    """A cheap content fingerprint of a raw source: file hash, or the listing of a folder."""
    if not path:
        return ""
    if path.lower().endswith(fer2013.CSV_SUFFIXES):
        return storage.fingerprint_file(path)
    h = hashlib.sha256()
    for rel, size, marker in storage.list_files(path):
        if rel.endswith(expw.LABEL_FILE):
            h.update(storage.fingerprint_file(storage.join(path, rel)).encode())
        # Local listings carry mtimes, which say nothing about content: use name and size there.
        h.update(f"{rel}\t{size}\t{marker if storage.is_gcs(path) else ''}\n".encode())
    return f"listing:{h.hexdigest()}"


# Bumped whenever reading or splitting changes what a version holds, so that versions built by earlier
# code are rebuilt rather than reused. 2: row-exact FER2013 parsing (rows named by line), failed reads no
# longer dropped as missing images, splits a function of each face's identity. 3: a box grown past the image is
# padded (edge-replicated), not clipped, before the resize (`fer_core.crop`): 14% of ExpW's faces change.
DATASET_FORMAT = 3


def build_key(settings: Settings) -> dict[str, Any]:
    data = settings.data.model_dump(mode="json")
    for transient in ("output", "workers", "fer2013", "expw"):
        data.pop(transient)
    if data["expw_boxes"] == "labelled":  # the default before the setting existed: earlier versions keep their ids
        data.pop("expw_boxes")
    else:  # the crops come from the detector's boxes: other detector settings make another version
        from fer_core import detect

        data["expw_detector"] = dict(detect.PRESETS["still"])
    return {"format": DATASET_FORMAT, "data": data, "balance": settings.balance.model_dump(mode="json"),
            "split": settings.split.model_dump(mode="json")}


def faces_digest(table: FaceTable) -> str:
    """What was read: a hash of every accepted face (name, label, pixels), recorded with the version."""
    h = hashlib.sha256()
    h.update("\n".join(table.meta["image"].astype(str)).encode())
    h.update(np.ascontiguousarray(table.labels, np.int64).tobytes())
    h.update(np.ascontiguousarray(table.pixels).tobytes())
    return f"sha256:{h.hexdigest()}"


def check_inputs(settings: Settings) -> None:
    """Fail now, with the path in the message, when an input is missing or none is set: commands call it
    before starting Prefect or loading TensorFlow, so a typo costs a second, not a minute."""
    d = settings.data
    if not d.fer2013 and not d.expw:
        raise ValueError("no input data: set data.fer2013 and/or data.expw")
    for path in (d.fer2013, d.expw):
        if path and not storage.exists(path):
            raise storage.StorageError(f"input not found: {path}")
    if d.fer2013 and not d.fer2013.lower().endswith(fer2013.CSV_SUFFIXES) and storage.is_file(d.fer2013):
        raise storage.StorageError(f"data.fer2013={d.fer2013}: FER2013 is read from a CSV file (.csv or .csv.gz) "
                                   "or a folder of <emotion>/ images, optionally under train/ and test/")
    if d.expw and not storage.exists(storage.join(d.expw, expw.LABEL_FILE)):
        raise storage.StorageError(f"data.expw={d.expw}: not an ExpW folder (it needs {expw.LABEL_FILE} "
                                   "and the images under origin/)")


def compute_version(settings: Settings) -> tuple[str, dict[str, str]]:
    check_inputs(settings)
    fingerprints = {"fer2013": fingerprint_source(settings.data.fer2013), "expw": fingerprint_source(settings.data.expw)}
    payload = json.dumps({"inputs": fingerprints, "settings": build_key(settings)}, sort_keys=True)
    return "ds-" + hashlib.sha256(payload.encode()).hexdigest()[:12], fingerprints


def class_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(EMOTIONS))
    return {name: int(n) for name, n in zip(EMOTIONS, counts, strict=True)}


def _plot_distribution(counts: dict[str, int], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    bars = ax.bar(list(counts), list(counts.values()), color="#4C72B0")
    ax.bar_label(bars, fontsize=8)
    ax.set_title(title)
    ax.set_ylabel("faces")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _manifest(named: dict[str, FaceTable]) -> pd.DataFrame:
    frames = []
    for split_name, table in named.items():
        meta = table.meta.copy()
        meta["split"] = split_name
        if "synthetic" not in meta.columns:
            meta["synthetic"] = False
        frames.append(meta)
    manifest = pd.concat(frames, ignore_index=True)
    manifest["emotion"] = [EMOTIONS[i] for i in manifest["label"].astype(int)]
    cols = ["image", "source", "face_id", "label", "emotion", "usage", "confidence", "split", "synthetic"]
    return manifest[cols]


def _write_version(target: str, files: dict[str, bytes]) -> None:
    """Write all files so that a reader sees either no version or a complete one."""
    if storage.is_gcs(target):
        for name in sorted(files, key=lambda n: n == STATS):  # stats.json last
            storage.write_bytes(storage.join(target, name), files[name])
        return
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        if final.exists():  # a half-written leftover without stats.json
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_sources(settings: Settings, expw_read: tuple[FaceTable, Rejects] | None = None,
                  ) -> tuple[dict[str, FaceTable], Rejects]:
    d = settings.data
    tables: dict[str, FaceTable] = {}
    rejects = Rejects()
    if d.fer2013:
        t, r = fer2013.read(d.fer2013, limit=d.limit)
        check_quality(r, len(t), d.max_reject_ratio, f"FER2013 {d.fer2013}")
        tables["fer2013"], _ = t, rejects.extend(r)
    if d.expw:
        t, r = expw_read or expw.read(d.expw, limit=d.limit, margin=d.margin, min_confidence=d.min_confidence,
                                      workers=d.workers, box_source=d.expw_boxes)
        check_quality(r, len(t), d.max_reject_ratio, f"ExpW {d.expw}")
        tables["expw"], _ = t, rejects.extend(r)
    return tables, rejects


def is_built(settings: Settings) -> bool:
    """Whether the version for these inputs and settings exists already (then `build` reuses it)."""
    version, _ = compute_version(settings)
    return storage.exists(storage.join(settings.datasets_root, version, STATS))


def build(settings: Settings, force: bool = False, expw_read: tuple[FaceTable, Rejects] | None = None) -> Dataset:
    """Build (or reuse) the dataset version for these inputs and settings. `expw_read`: the ExpW faces and
    rejects already read elsewhere (the flow decodes a large folder in shards on a Dask cluster)."""
    started = time.time()
    version, fingerprints = compute_version(settings)
    target = storage.join(settings.datasets_root, version)
    if not force and storage.exists(storage.join(target, STATS)):
        log.info("dataset %s already built at %s: reusing it", version, target)
        ds = load(target)
        ds.stats["reused"] = True
        return ds

    tables, rejects = _read_sources(settings, expw_read)
    s = settings.split
    merged = FaceTable.concat(list(tables.values()))
    counts: dict[str, dict[str, int]] = {f"raw_{name}": class_counts(t.labels) for name, t in tables.items()}
    for name in ("raw_fer2013", "raw_expw"):
        counts.setdefault(name, class_counts(np.zeros(0, np.int64)))
    counts["merged"] = class_counts(merged.labels)

    fixed = merged.meta["usage"].isin(s.fixed_test_usages).to_numpy() & (merged.meta["source"] == "fer2013").to_numpy()
    holdouts = {f"fer2013_{u.lower()}": merged.where(fixed & (merged.meta["usage"] == u).to_numpy())
                for u in s.fixed_test_usages}
    holdouts = {k: v for k, v in holdouts.items() if len(v)}
    pool = merged.where(~fixed)
    undersampled = balance.undersample(pool, settings.balance.undersample, seed=s.seed)
    counts["undersampled"] = class_counts(undersampled.labels)
    parts = balance.split(undersampled, s.val, s.test, seed=s.seed)
    for name, part in parts.items():
        counts[name] = class_counts(part.labels)
    train = balance.smote(parts["train"], settings.balance.smote_k, s.seed) if settings.balance.smote else parts["train"]
    counts["smote"] = class_counts(train.labels)
    for name, part in holdouts.items():
        counts[name] = class_counts(part.labels)

    named = {"train": train, "val": parts["val"], "test": parts["test"], **holdouts}
    arrays: dict[str, np.ndarray] = {}
    for name, table in named.items():
        arrays[f"x_{name}"], arrays[f"y_{name}"] = table.pixels, table.labels.astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    stats = {
        "version": version, "fingerprint": fingerprints, "settings": build_key(settings),
        "faces_read": {name: {"n": len(t), "digest": faces_digest(t)} for name, t in tables.items()},
        "sources": {"fer2013": settings.data.fer2013, "expw": settings.data.expw},
        "counts": counts, "rejects": rejects.counts(), "n_rejects": len(rejects),
        "splits": list(named), "build_seconds": round(time.time() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    files = {ARRAYS: buf.getvalue(),
             MANIFEST: _manifest(named).to_csv(index=False).encode(),
             REJECTS: rejects.frame().to_csv(index=False).encode(),
             STATS: json.dumps(stats, indent=2).encode()}
    for stage in PLOT_STAGES:
        if sum(counts[stage].values()):
            files[f"plots/distribution_{stage}.png"] = _plot_distribution(counts[stage], f"{stage} ({version})")
    _write_version(target, files)
    log.info("dataset %s written to %s in %.1fs", version, target, time.time() - started)
    return Dataset(version, target, {**stats, "reused": False},
                   {name: (arrays[f"x_{name}"], arrays[f"y_{name}"].astype(np.int64)) for name in named},
                   {name: table.meta["source"].to_numpy(str) for name, table in named.items()})


def resolve(version_or_path: str, settings: Settings | None = None) -> str:
    """A dataset location from a version name (under the datasets root) or a path."""
    if storage.exists(storage.join(version_or_path, STATS)):
        return version_or_path
    if settings is not None:
        candidate = storage.join(settings.datasets_root, version_or_path)
        if storage.exists(storage.join(candidate, STATS)):
            return candidate
    raise storage.StorageError(f"no dataset version {version_or_path!r} (looked for {STATS})")


def load_stats(version_or_path: str, settings: Settings | None = None) -> dict[str, Any]:
    return json.loads(storage.read_text(storage.join(resolve(version_or_path, settings), STATS)))


def load(version_or_path: str, settings: Settings | None = None) -> Dataset:
    path = resolve(version_or_path, settings)
    stats = json.loads(storage.read_text(storage.join(path, STATS)))
    with np.load(io.BytesIO(storage.read_bytes(storage.join(path, ARRAYS)))) as npz:
        splits = {name: (npz[f"x_{name}"], npz[f"y_{name}"].astype(np.int64)) for name in stats["splits"]}
    return Dataset(stats["version"], path, stats, splits, _sources(path))


def _sources(path: str) -> dict[str, np.ndarray]:
    """Each split's face sources, from the manifest (its rows follow the arrays' order, split by split)."""
    return manifest_column(path, "source")


def manifest_column(path: str, column: str) -> dict[str, np.ndarray]:
    """One manifest column per split (`image`: each face's identity; `source`: where it came from), in the
    order of the split's arrays; empty when the version has no usable manifest."""
    try:
        manifest = pd.read_csv(io.BytesIO(storage.read_bytes(storage.join(path, MANIFEST))),
                               usecols=[column, "split"], dtype=str)
    except (OSError, ValueError) as exc:
        log.warning("no usable manifest in %s (%s): per-face %s unavailable", path, exc, column)
        return {}
    return {name: group[column].to_numpy(str) for name, group in manifest.groupby("split", sort=False)}


def expw_faces(path: str, split: str = "test") -> list[tuple[str, int]]:
    """(image name, face id) of each ExpW face of a split, in the order of the split's arrays (faces are named
    `expw/<image>#<face>`): where in its source image each held-out face came from."""
    names = manifest_column(path, "image").get(split, [])
    return [(image, int(face)) for image, face in
            (str(n)[len("expw/"):].rsplit("#", 1) for n in names if str(n).startswith("expw/"))]


def expw_images(path: str, splits: tuple[str, ...] = ("test",)) -> set[str]:
    """The ExpW image names behind the faces of these splits: the whole images to run through the detector for
    an end-to-end figure on held-out faces."""
    return {image for split in splits for image, _ in expw_faces(path, split)}
