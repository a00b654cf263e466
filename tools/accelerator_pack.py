"""Pack what a lent GPU machine needs to train compact networks, on any fresh machine, in one command.

Why: a device loan is short (minutes) and every session may start on a new machine, without the last one's
packed arrays or wheels. The device copies the working tree plus the ignored paths named in `carry` (64 MiB at
most), has no TensorFlow and reaches no network. This writes, from a dataset version that `fer data build`
made:

- `.gpu/faces.npz.xz`: the training and validation faces (xz: about 52 MB for all of ../shared/data);
- `.gpu/teacher.keras`: a model to distil from, when `--teacher` names one (e.g. the shipped champion);
- `.gpu/manifest.json`: the dataset version, the arrays' sha256, the commit, what to run there;
- `.whl/`: wheels of keras and pydantic (and what they need that the device lacks) for the device's Python,
  pinned to the versions installed here, so the device trains with this machine's keras.

    python tools/accelerator_pack.py --dataset <home>/datasets/ds-... [--teacher fer_core/assets/baseline.keras]

then `run` with the printed `carry` and command (tools/accelerator_members.sh; docs/EXPERIMENTS.md, "Ten
networks on a lent GPU").
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repository's root

from fer_core import tracking  # noqa: E402

ARRAYS = ("x_train", "y_train", "x_val", "y_val")
CARRY_LIMIT = 64 * 2**20  # the device's limit on the working tree and what it carries, together
# What the GPU machine lacked for tools/accelerator_train.py (it has jax, numpy, ml_dtypes, h5py, rich, absl):
DEVICE_WHEELS = ("keras", "namex", "optree", "pydantic", "pydantic_core", "annotated-types", "typing-inspection",
                 "typing_extensions")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pack_arrays(faces: Path, out: Path) -> dict:
    """The four training arrays of a dataset version's faces.npz, xz-compressed (tools/accelerator_train.py reads it)."""
    with np.load(faces) as z:
        missing = [k for k in ARRAYS if k not in z.files]
        if missing:
            raise SystemExit(f"{faces} lacks {', '.join(missing)}: not a dataset version's faces.npz")
        arrays = {k: z[k] for k in ARRAYS}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(lzma.compress(raw))
    tmp.replace(out)
    return {"path": str(out), "bytes": out.stat().st_size, "sha256": hashlib.sha256(raw).hexdigest(),
            "train": int(len(arrays["y_train"])), "val": int(len(arrays["y_val"]))}


def wheel_pins(names: tuple[str, ...] = DEVICE_WHEELS) -> list[str]:
    """Each package at the version installed here, so the device runs what the tests here ran."""
    return [f"{name}=={version(name)}" for name in names]


def download_wheels(pins: list[str], dest: Path, python_version: str) -> list[str]:
    """Binary wheels for the device's Python and platform, without their dependencies (the pins are the list)."""
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(dest),
                    *pins], check=True)
    return sorted(p.name for p in dest.glob("*.whl"))


def size_of(paths: list[Path]) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def tree_bytes() -> int:
    """The working tree that travels with every device call: tracked and untracked files git does not ignore."""
    root = Path(__file__).resolve().parents[1]
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], capture_output=True,
                            text=True, cwd=root).stdout
    return size_of([root / f for f in listed.split("\0") if f and (root / f).is_file()])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="a dataset version's folder (holds faces.npz)")
    p.add_argument("--out", default=".gpu", help="where the arrays, teacher and manifest go (an ignored folder)")
    p.add_argument("--wheels", default=".whl", help="where the device's wheels go (an ignored folder)")
    p.add_argument("--teacher", default="", help="a .keras model to distil from, copied as OUT/teacher.keras")
    p.add_argument("--python-version", default="3.12", help="the device's Python")
    p.add_argument("--no-wheels", action="store_true", help="pack the data only (wheels already in WHEELS)")
    a = p.parse_args(argv)

    dataset, out, wheels = Path(a.dataset), Path(a.out), Path(a.wheels)
    faces = dataset / "faces.npz"
    if not faces.is_file():
        raise SystemExit(f"{faces} not found: build the dataset first (fer data build --set data.fer2013=...)")
    manifest: dict = {"dataset_version": dataset.resolve().name, "git_commit": tracking.git_commit(),
                      "arrays": pack_arrays(faces, out / "faces.npz.xz")}
    if a.teacher:
        shutil.copyfile(a.teacher, out / "teacher.keras")
        manifest["teacher"] = {"from": a.teacher, "path": str(out / "teacher.keras")}
    if not a.no_wheels:
        manifest["wheels"] = download_wheels(wheel_pins(), wheels, a.python_version)
    carry = [str(out), str(wheels)] if wheels.is_dir() else [str(out)]
    manifest["carry"] = carry
    manifest["carry_bytes"] = size_of([Path(c) for c in carry])
    manifest["tree_bytes"] = tree_bytes()
    travels = manifest["carry_bytes"] + manifest["tree_bytes"]
    if travels > CARRY_LIMIT:
        raise SystemExit(f"the carry and the working tree are {travels / 2**20:.1f} MiB together, over the device's "
                         "64 MiB: pack fewer faces or leave the teacher out")
    train_args = f'TRAIN_ARGS="--teacher {out}/teacher.keras" ' if a.teacher else ""
    manifest["command"] = (f"{train_args}DATASET={manifest['dataset_version']} FER_GIT_COMMIT={manifest['git_commit']} "
                           f"bash tools/accelerator_members.sh {out}/faces.npz.xz MINUTES SEED [SEED...]")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    print(json.dumps(manifest, indent=2))
    return manifest


if __name__ == "__main__":
    main()
