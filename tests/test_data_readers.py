import cv2
import numpy as np
import pytest

from fer_core import storage
from fer_core.data import expw, fer2013
from fer_core.data.table import DataQualityError, Rejects, check_quality
from tests import helpers


def test_fer2013_csv_reads_rows_with_stable_names(tmp_path):
    path = helpers.write_fer2013_csv(tmp_path / "f.csv.gz", per_class=2, usage_counts={"PublicTest": 1}, gz=True)
    table, rejects = fer2013.read(str(path))
    assert len(rejects) == 0
    assert len(table) == 21 and table.pixels.shape == (21, 48, 48) and table.pixels.dtype == np.uint8
    assert table.meta["usage"].value_counts().to_dict() == {"Training": 14, "PublicTest": 7}
    assert table.meta["image"].iloc[0] == "fer2013/Training/00000.png"
    assert table.meta["image"].iloc[-1] == "fer2013/PublicTest/00020.png"
    again, _ = fer2013.read(str(path))
    assert np.array_equal(again.pixels, table.pixels)


def test_fer2013_every_reject_reason(tmp_path):
    good = " ".join(["7"] * 2304)
    bad_lines = [
        f"9,{good},Training",                       # label outside 0-6
        f"x,{good},Training",                       # label not a number
        f"3,{good},Validation",                     # unknown usage
        f"3,{' '.join(['1'] * 2000)},Training",     # pixel count
        f"3,{' '.join(['300'] * 2304)},Training",   # value out of range
        f"3,{' '.join(['a'] * 2304)},PublicTest",   # not integers
    ]
    path = helpers.write_fer2013_csv(tmp_path / "f.csv", per_class=1, extra_lines=bad_lines)
    table, rejects = fer2013.read(str(path))
    assert len(table) == 7
    assert rejects.counts() == {"bad_label": 2, "bad_pixels": 3, "bad_usage": 1}
    frame = rejects.frame()
    assert frame["where"].str.contains(r"f\.csv:line \d+").all()
    assert set(frame.loc[frame.reason == "bad_pixels", "detail"]) >= {"2000 pixels, expected 2304"}


def test_fer2013_not_a_csv(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        fer2013.read(str(p))
    with pytest.raises(storage.StorageError):
        fer2013.read(str(tmp_path / "missing.csv"))


def test_fer2013_image_folder_layout(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for emotion in ("happy", "sad"):
            d = tmp_path / split / emotion
            d.mkdir(parents=True)
            for i in range(2):
                cv2.imwrite(str(d / f"{i}.png"), helpers.face_pattern(3, rng))
    (tmp_path / "train" / "happy" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "train" / "bored").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "bored" / "0.png"), helpers.face_pattern(0, rng))
    table, rejects = fer2013.read(str(tmp_path))
    assert len(table) == 8
    assert sorted(table.meta["usage"].unique()) == ["PublicTest", "Training"]
    assert rejects.counts() == {"bad_label": 1, "unreadable_image": 1}


def test_expw_crops_with_margin_clipped(tmp_path):
    img = np.zeros((100, 100), np.uint8)
    img[20:60, 30:70] = 200
    box = expw.Box("a.jpg", 0, top=20, left=30, right=70, bottom=60, confidence=1.0, label=3, line=1)
    face = expw.crop_face(img, box, margin=0.10)
    assert face.shape == (48, 48)
    assert face[0, 0] < 50 and face[24, 24] == 200  # the margin shows background around the box
    crossing = expw.Box("a.jpg", 0, top=-30, left=80, right=140, bottom=40, confidence=1, label=0, line=2)
    assert expw.crop_face(img, crossing, 0.1).shape == (48, 48)
    outside = expw.Box("a.jpg", 0, top=150, left=150, right=190, bottom=190, confidence=1, label=0, line=3)
    assert expw.crop_face(img, outside, 0.1) is None
    assert expw.crop_face(img, expw.Box("a.jpg", 0, 10, 10, 10, 40, 1, 0, 4), 0.1) is None


def test_expw_reader_every_reject_reason(tmp_path):
    root = helpers.write_expw(tmp_path / "expw", images_per_class=2, faces_per_image=2, extra_lines=[
        "img_0_0.jpg 5 10 10 10 20 50.0 1",          # empty box
        "img_0_0.jpg 6 500 500 600 600 50.0 1",      # box wholly outside the image
        "missing.jpg 0 1 1 40 40 50.0 2",            # missing image
        "broken.jpg 0 1 1 40 40 50.0 2",             # unreadable image
        "img_0_1.jpg 7 10 10 40 40 50.0 9",          # label outside 0-6
        "too few fields",                            # malformed
    ])
    (root / "origin" / "broken.jpg").write_bytes(b"garbage")
    table, rejects = expw.read(str(root), workers=2)
    assert len(table) == 28
    assert rejects.counts() == {"bad_label": 1, "empty_box": 2, "malformed_line": 1, "missing_image": 1,
                                "unreadable_image": 1}
    assert table.meta["group"].nunique() == 14  # two faces per image
    assert table.meta["image"].str.match(r"expw/img_\d_\d\.jpg#\d").all()


def test_expw_min_confidence_and_limit(tmp_path):
    root = helpers.write_expw(tmp_path / "expw", images_per_class=3)
    table, _ = expw.read(str(root), min_confidence=51.5)
    assert len(table) == 7 and (table.meta["confidence"] >= 51.5).all()
    table, _ = expw.read(str(root), limit=5)
    assert len(table) == 5


def test_expw_missing_label_file(tmp_path):
    with pytest.raises(storage.StorageError, match="label file not found"):
        expw.read(str(tmp_path))


def test_reject_ratio_threshold():
    rejects = Rejects()
    for i in range(5):
        rejects.add("fer2013", f"row {i}", "bad_pixels")
    check_quality(rejects, accepted=95, max_ratio=0.05, what="x")
    with pytest.raises(DataQualityError, match=r"5 of 80 inputs rejected .*bad_pixels: 5"):
        check_quality(rejects, accepted=75, max_ratio=0.05, what="x")
