"""The data layer on the real data in ../shared/data, with exact counts."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from fer_core import crop, detect, storage
from fer_core.data import dataset, expw, fer2013
from tests import helpers

pytestmark = pytest.mark.integration
FER_COUNTS = {"angry": 4462, "disgust": 492, "fear": 4593, "happy": 8110, "sad": 5483, "surprise": 3586,
              "neutral": 5572}
EXPW_COUNTS = {"angry": 641, "disgust": 667, "fear": 652, "happy": 635, "sad": 646, "surprise": 655, "neutral": 658}


@pytest.fixture(scope="module")
def real():
    helpers.require_shared(helpers.FER2013_CSV, helpers.EXPW_ROOT)


def test_real_fer2013_every_row(real):
    table, rejects = fer2013.read(str(helpers.FER2013_CSV))
    assert len(rejects) == 0
    assert table.meta["usage"].value_counts().to_dict() == {"Training": 28709, "PublicTest": 3589}
    assert dataset.class_counts(table.labels) == FER_COUNTS


def test_real_expw_every_face(real):
    table, rejects = expw.read(str(helpers.EXPW_ROOT))
    assert len(rejects) == 0 and len(table) == 4554
    assert table.meta["group"].nunique() == 4326
    assert dataset.class_counts(table.labels) == EXPW_COUNTS
    assert 40 < table.pixels.mean() < 200  # real faces, not blank crops


def test_real_expw_faces_from_haar_boxes(real, settings_factory):
    """data.expw_boxes="haar": the same faces and labels, the ones Haar finds cropped from Haar's box (as
    `fer predict` crops them), the others from their labelled box; the default keeps earlier version ids."""
    labelled, _ = expw.read(str(helpers.EXPW_ROOT), limit=120, workers=2)
    haar, rejects = expw.read(str(helpers.EXPW_ROOT), limit=120, workers=2, box_source="haar")
    assert len(rejects) == 0 and haar.meta["image"].tolist() == labelled.meta["image"].tolist()
    assert np.array_equal(haar.labels, labelled.labels)
    boxes, _ = expw.read_boxes(str(helpers.EXPW_ROOT), limit=120)
    detector, found, same = detect.preset("still"), 0, 0
    for i, box in enumerate(boxes):
        gray = cv2.imread(str(helpers.EXPW_ROOT / expw.IMAGES / box.image), cv2.IMREAD_GRAYSCALE)
        in_image = [b for b in boxes if b.image == box.image]
        mine = expw.haar_boxes(gray, in_image, detector)[in_image.index(box)]
        want = expw.crop_face(gray, box, 0.10) if mine is None else crop.crop_face(gray, mine, 0.10)
        assert np.array_equal(haar.pixels[i], want), box
        found += mine is not None
        same += np.array_equal(haar.pixels[i], labelled.pixels[i])
    assert 0.5 < found / len(boxes) < 1.0 and same == len(boxes) - found
    default = settings_factory('data.expw="x"')
    assert "expw_boxes" not in dataset.build_key(default)["data"]
    haar_key = dataset.build_key(settings_factory('data.expw_boxes="haar"'))["data"]
    assert haar_key["expw_boxes"] == "haar"
    assert haar_key["expw_detector"] == json.loads(json.dumps(detect.PRESETS["still"]))  # its settings name the version


@pytest.mark.slow
def test_real_full_build(real, settings_factory):
    # The seed's recipe (configs/seed.toml): undersampling, then SMOTE on the training split
    s = settings_factory(f'data.fer2013="{helpers.FER2013_CSV}"', f'data.expw="{helpers.EXPW_ROOT}"',
                         "balance.undersample={happy = 0.7, neutral = 0.7, sad = 0.25}", "balance.smote=true")
    ds = dataset.build(s)
    c = ds.stats["counts"]
    assert c["raw_fer2013"] == FER_COUNTS and c["raw_expw"] == EXPW_COUNTS
    assert sum(c["merged"].values()) == 32298 + 4554
    assert sum(c["fer2013_publictest"].values()) == 3589
    pool = {k: FER_COUNTS[k] + EXPW_COUNTS[k] for k in FER_COUNTS}
    # PublicTest rows are held out before undersampling; 70% of happy/neutral and 25% of sad are dropped
    public = c["fer2013_publictest"]
    for k, drop in {"happy": 0.7, "neutral": 0.7, "sad": 0.25, "angry": 0.0}.items():
        assert c["undersampled"][k] == round((pool[k] - public[k]) * (1 - drop))
    for k in FER_COUNTS:
        assert c["train"][k] + c["val"][k] + c["test"][k] == c["undersampled"][k]
    assert set(c["smote"].values()) == {max(c["train"].values())}
    manifest = pd.read_csv(f"{ds.path}/manifest.csv")
    e = manifest[manifest.source == "expw"]
    assert (e.groupby(e.image.str.split("#").str[0]).split.nunique() == 1).all()
    assert dataset.build(s).stats["reused"]
    # Every class's share of each split stays within a point of its share of the pool
    total = sum(c["undersampled"].values())
    for split in ("train", "val", "test"):
        n = sum(c[split].values())
        for k in FER_COUNTS:
            assert abs(c[split][k] / n - c["undersampled"][k] / total) < 0.01, (split, k)
    # Another balancing of the same inputs (the default: no undersampling, no SMOTE): every face both
    # versions hold is in the same split
    other = dataset.build(settings_factory(f'data.fer2013="{helpers.FER2013_CSV}"', f'data.expw="{helpers.EXPW_ROOT}"'))
    m2 = pd.read_csv(f"{other.path}/manifest.csv")
    both = manifest[manifest.source != "smote"].merge(m2, on="image", suffixes=("", "_other"))
    assert len(both) > 20000 and (both.split == both.split_other).all()


@pytest.mark.slow
def test_real_subset_through_gcs(real, settings_factory, gcs_bucket, tmp_path):
    lines = (helpers.EXPW_ROOT / "label" / "label.lst").read_text().splitlines()[:300]
    for name in sorted({line.split()[0] for line in lines}):
        storage.upload_file(helpers.EXPW_ROOT / "origin" / name, f"{gcs_bucket}/expw/origin/{name}")
    storage.write_text(f"{gcs_bucket}/expw/label/label.lst", "\n".join(lines) + "\n")
    storage.upload_file(helpers.FER2013_CSV, f"{gcs_bucket}/fer2013.csv.gz")
    s = settings_factory(f'data.fer2013="{gcs_bucket}/fer2013.csv.gz"', f'data.expw="{gcs_bucket}/expw"',
                         "data.limit=2000", f'data.output="{gcs_bucket}/datasets"')
    ds = dataset.build(s)
    assert sum(ds.stats["counts"]["raw_expw"].values()) == 300
    assert sum(ds.stats["counts"]["raw_fer2013"].values()) == 2000
    local, _ = expw.read(str(helpers.EXPW_ROOT), limit=300)
    remote, _ = expw.read(f"{gcs_bucket}/expw")
    assert np.array_equal(local.pixels, remote.pixels)
