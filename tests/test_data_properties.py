"""Property-based tests of both readers: random good and bad lines in random order. Every good row comes
out with exactly its own pixels and label, under the name of its own line; every bad one is rejected with
its reason, and nothing else is lost."""

import tempfile
from pathlib import Path

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer_core.data import expw, fer2013

GOOD, SHORT, LONG, RANGE, TEXT, FIELDS, LABEL, USAGE = range(8)
REASONS = {SHORT: "bad_pixels", LONG: "bad_pixels", RANGE: "bad_pixels", TEXT: "bad_pixels", FIELDS: "malformed_line",
           LABEL: "bad_label", USAGE: "bad_usage"}


def _line(kind: int, pixels: np.ndarray, label: int) -> str:
    values = [str(v) for v in pixels]
    if kind == SHORT:
        values = values[:-1]
    elif kind == LONG:
        values = [*values, "7"]
    elif kind == RANGE:
        values[5] = "256"
    elif kind == TEXT:
        values[9] = "x"
    text = " ".join(values)
    if kind == FIELDS:
        return f"{label},{text},Training,extra"
    if kind == LABEL:
        return f"7,{text},Training"
    return f"{label},{text},{'Validation' if kind == USAGE else 'Training'}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from([GOOD] * 4 + list(REASONS)), min_size=1, max_size=30),
       seed=st.integers(0, 2**16), chunk=st.integers(1, 8))
def test_fer2013_rows_keep_their_own_pixels(tmp_path, kinds, seed, chunk, monkeypatch):
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, (len(kinds), 2304))
    labels = rng.integers(0, 7, len(kinds))
    path = tmp_path / f"f{seed}-{chunk}.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(
        _line(k, f, int(y)) for k, f, y in zip(kinds, faces, labels, strict=True)) + "\n")
    table, rejects = fer2013.read_csv(str(path), chunk_rows=chunk)
    good = [i for i, k in enumerate(kinds) if k == GOOD]
    assert list(table.meta["image"]) == [fer2013.image_name("Training", i) for i in good]
    assert np.array_equal(table.pixels.reshape(-1, 2304), faces[good].astype(np.uint8))
    assert list(table.labels) == [int(labels[i]) for i in good]
    frame = rejects.frame()
    bad = [(f"{path}:line {i + 2}", REASONS[k]) for i, k in enumerate(kinds) if k != GOOD]
    assert sorted(zip(frame["where"], frame["reason"], strict=True)) == sorted(bad)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(["good", "good", "good", "fields", "label", "coords", "empty", "missing",
                                       "corrupt"]), min_size=1, max_size=12),
       seed=st.integers(0, 2**16))
def test_expw_faces_keep_their_own_crops(tmp_path, kinds, seed):
    rng = np.random.default_rng(seed)
    root = Path(tempfile.mkdtemp(dir=tmp_path)) / "expw"
    (root / "origin").mkdir(parents=True)
    (root / "label").mkdir()
    lines, expected, bad = [], {}, []
    for i, kind in enumerate(kinds):
        name = f"img{i}.png"
        image = rng.integers(0, 256, (60, 60), dtype=np.uint8)
        if kind == "corrupt":
            (root / "origin" / name).write_bytes(b"not a png")
        elif kind != "missing":
            cv2.imwrite(str(root / "origin" / name), image)
        top, left, right, bottom = 10, 10, 40, 40
        if kind == "empty":
            right = left
        label = int(rng.integers(0, 7))
        if kind == "fields":
            lines.append(f"{name} 0 {top} {left} {right} {bottom} 0.9")
        elif kind == "label":
            lines.append(f"{name} 0 {top} {left} {right} {bottom} 0.9 9")
        elif kind == "coords":
            lines.append(f"{name} 0 top {left} {right} {bottom} 0.9 {label}")
        else:
            lines.append(f"{name} 0 {top} {left} {right} {bottom} 0.9 {label}")
        if kind == "good":
            expected[name] = (expw.crop_face(image, expw.Box(name, 0, top, left, right, bottom, 0.9, label, i + 1),
                                             0.1), label)
        else:
            bad.append(kind)
    (root / "label" / "label.lst").write_text("\n".join(lines) + "\n")
    table, rejects = expw.read(str(root))
    names = [Path(n).name.split("#")[0] for n in table.meta["image"]]
    assert sorted(names) == sorted(expected)
    for name, face, label in zip(names, table.pixels, table.labels, strict=True):
        assert np.array_equal(face, expected[name][0]) and label == expected[name][1]
    reasons = {"fields": "malformed_line", "label": "bad_label", "coords": "malformed_line", "empty": "empty_box",
               "missing": "missing_image", "corrupt": "unreadable_image"}
    assert sorted(rejects.frame()["reason"]) == sorted(reasons[k] for k in bad)
