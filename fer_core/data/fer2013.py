"""FER2013 reader: the Kaggle CSV (`emotion,pixels,Usage`, plain or gzip) and the `<split>/<emotion>/*` folders."""

from __future__ import annotations

import gzip
import io
import math
import warnings
from pathlib import PurePosixPath

import cv2
import numpy as np
import pandas as pd

from fer_core import progress, storage
from fer_core.data.table import FACE, FaceTable, Rejects
from fer_core.labels import NUM_CLASSES, label_index

USAGES = ("Training", "PublicTest", "PrivateTest")
_PIXELS = FACE * FACE
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CSV_SUFFIXES = (".csv", ".gz")  # FER2013 as a CSV file, gzipped or not (a name ending .csv.gz ends .gz)


def image_name(usage: str, row: int) -> str:
    """The stable name of a CSV row (its line number less the header's and 1): how manifests, rejects and
    the split of a face refer to it."""
    return f"fer2013/{usage}/{row:05d}.png"


# Joins the rows of a chunk in one string for one fast parse; its positions in the parsed numbers are the row
# boundaries, so every row's own count and range are checked (never a chunk's total). No pixel is this big,
# so a row that contains it is caught by the count of markers and parsed on the slow path.
_ROW_END = 1 << 40


def _parse_rows(pixel_strings: list[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Parse pixel strings row-exactly: vectorised counts and ranges per row, per-row text parsing only for
    the rows (or a chunk with text) that the fast path cannot explain."""
    n = len(pixel_strings)
    out = np.zeros((n, _PIXELS), np.uint8)
    if not n:
        return out, []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flat = np.fromstring(f" {_ROW_END} ".join(map(str, pixel_strings)) + f" {_ROW_END}", dtype=np.int64,
                                 sep=" ")
    except ValueError:  # text that is not a number
        return _parse_rows_slowly(pixel_strings, out)
    ends = np.flatnonzero(flat == _ROW_END)
    if len(ends) != n:  # a token that is not an integer stopped the parse: find the rows row by row
        return _parse_rows_slowly(pixel_strings, out)
    starts = np.r_[0, ends[:-1] + 1]
    counts = ends - starts
    bad: list[tuple[int, str]] = [(int(i), f"{counts[i]} pixels, expected {_PIXELS}")
                                  for i in np.flatnonzero(counts != _PIXELS)]
    ok = np.flatnonzero(counts == _PIXELS)
    values = flat[starts[ok, None] + np.arange(_PIXELS)]
    in_range = (values.min(axis=1) >= 0) & (values.max(axis=1) <= 255)
    for i in np.flatnonzero(~in_range):
        row = values[i]
        bad.append((int(ok[i]), f"pixel values outside 0-255 ({row.min()}..{row.max()})"))
    out[ok[in_range]] = values[in_range]
    return out, sorted(bad)


def _parse_rows_slowly(pixel_strings: list[str], out: np.ndarray) -> tuple[np.ndarray, list[tuple[int, str]]]:
    bad: list[tuple[int, str]] = []
    for i, text in enumerate(pixel_strings):
        try:
            values = np.array(str(text).split(), dtype=np.int64)
        except (ValueError, OverflowError):
            bad.append((i, "pixels are not integers"))
            continue
        if values.size != _PIXELS:
            bad.append((i, f"{values.size} pixels, expected {_PIXELS}"))
        elif values.min() < 0 or values.max() > 255:
            bad.append((i, f"pixel values outside 0-255 ({values.min()}..{values.max()})"))
        else:
            out[i] = values
    return out, bad


def _well_formed_lines(raw: bytes, path: str, rejects: Rejects) -> tuple[bytes, np.ndarray]:
    """The header and every line with the header's number of fields, and each kept data line's number;
    a line with another number of fields is one reject with its line number, not a failed file."""
    lines = raw.split(b"\n")
    if lines and lines[-1].strip() == b"":
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: not a FER2013 CSV: the file is empty")
    fields = lines[0].count(b",")
    keep, numbers = [lines[0]], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if line.count(b",") != fields:
            rejects.add("fer2013", f"{path}:line {number}", "malformed_line",
                        f"{line.count(b',') + 1} fields, expected {fields + 1}")
            continue
        keep.append(line)
        numbers.append(number)
    return b"\n".join(keep), np.asarray(numbers, np.int64)


def read_csv(path: str, limit: int = 0, chunk_rows: int = 2048) -> tuple[FaceTable, Rejects]:
    """Read a FER2013 CSV into a face table; bad lines and rows are skipped and reported with their line
    numbers. A row is named by its line (`image_name`), so names stay put when other lines are bad."""
    raw = storage.read_bytes(path)
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rejects = Rejects()
    raw, line_numbers = _well_formed_lines(raw, path, rejects)
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a FER2013 CSV: {exc}") from exc
    del raw
    missing = {"emotion", "pixels"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: not a FER2013 CSV: missing column(s) {sorted(missing)}")
    if len(frame) != len(line_numbers):  # quoted line breaks: the line numbers no longer name the rows
        raise ValueError(f"{path}: not a FER2013 CSV: {len(frame)} rows in {len(line_numbers)} lines")
    if "Usage" not in frame.columns:
        frame["Usage"] = "Training"
    where = lambda i: f"{path}:line {line_numbers[i]}"  # noqa: E731
    labels = pd.to_numeric(frame["emotion"], errors="coerce")
    keep = np.ones(len(frame), bool)
    for i in np.flatnonzero(~labels.between(0, NUM_CLASSES - 1) | (labels % 1 != 0)):
        rejects.add("fer2013", where(i), "bad_label", f"emotion={frame['emotion'].iat[i]!r}")
        keep[i] = False
    for i in np.flatnonzero(keep & ~frame["Usage"].isin(USAGES).to_numpy()):
        rejects.add("fer2013", where(i), "bad_usage", f"Usage={frame['Usage'].iat[i]!r}")
        keep[i] = False
    rows = np.flatnonzero(keep)
    if limit:
        rows = rows[:limit]
    pixel_strings = frame["pixels"].to_numpy()
    pixels = np.zeros((len(rows), _PIXELS), np.uint8)
    good = np.ones(len(rows), bool)
    for start in progress.track(range(0, len(rows), chunk_rows), desc="FER2013 rows", unit="chunk",
                                total=math.ceil(len(rows) / chunk_rows)):
        part = rows[start:start + chunk_rows]
        parsed, bad = _parse_rows([pixel_strings[i] for i in part])
        pixels[start:start + len(part)] = parsed
        for j, reason in bad:
            rejects.add("fer2013", where(part[j]), "bad_pixels", reason)
            good[start + j] = False
    rows, pixels = rows[good], pixels[good]
    usage = frame["Usage"].to_numpy()[rows]
    meta = pd.DataFrame({
        "image": [image_name(u, int(n) - 2) for u, n in zip(usage, line_numbers[rows], strict=True)],
        "source": "fer2013",
        "face_id": 0,
        "label": labels.to_numpy()[rows].astype(np.int64),
        "usage": usage,
        "confidence": np.nan,
    })
    return FaceTable(meta, pixels.reshape(-1, FACE, FACE)), rejects


def _decode_face(data: bytes) -> np.ndarray | None:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        return None
    if img.shape != (FACE, FACE):
        img = cv2.resize(img, (FACE, FACE), interpolation=cv2.INTER_AREA)
    return img


def read_folder(root: str, limit: int = 0) -> tuple[FaceTable, Rejects]:
    """Read `<split>/<emotion>/*.png|jpg` (or `<emotion>/*` with no split level)."""
    rejects = Rejects()
    faces, rows = [], []
    for rel, _size, _ in storage.list_files(root):
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).suffix.lower() not in IMAGE_SUFFIXES or len(parts) < 2:
            continue
        try:
            label = label_index(parts[-2])
        except ValueError:
            rejects.add("fer2013", rel, "bad_label", f"folder {parts[-2]!r}")
            continue
        usage = {"train": "Training", "training": "Training", "test": "PublicTest", "publictest": "PublicTest",
                 "privatetest": "PrivateTest", "val": "PublicTest"}.get(parts[0].lower(), "Training") \
            if len(parts) >= 3 else "Training"
        face = _decode_face(storage.read_bytes(storage.join(root, rel)))
        if face is None:
            rejects.add("fer2013", rel, "unreadable_image", "cannot decode")
            continue
        faces.append(face)
        rows.append({"image": f"fer2013/{rel}", "source": "fer2013", "face_id": 0, "label": label,
                     "usage": usage, "confidence": np.nan})
        if limit and len(rows) >= limit:
            break
    if not rows:
        return FaceTable.empty(), rejects
    return FaceTable(pd.DataFrame(rows), np.stack(faces)), rejects


def read(path: str, limit: int = 0) -> tuple[FaceTable, Rejects]:
    """Read FER2013 from a CSV file or an image folder, whichever `path` is."""
    lowered = path.lower()
    if lowered.endswith(CSV_SUFFIXES):
        return read_csv(path, limit)
    return read_folder(path, limit)
