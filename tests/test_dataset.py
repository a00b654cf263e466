import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_core import balance, storage
from fer_core.data import dataset
from fer_core.data.table import DataQualityError, FaceTable
from fer_core.labels import EMOTIONS
from tests import helpers

SEED_RECIPE = ("balance.undersample={happy = 0.7, neutral = 0.7, sad = 0.25}", "balance.smote=true")
STAGES = {"raw_fer2013", "raw_expw", "merged", "undersampled", "train", "val", "test", "smote"}


def _settings(settings_factory, data, *extra):
    return settings_factory(f'data.fer2013="{data["fer2013"]}"', f'data.expw="{data["expw"]}"', *extra)


def test_build_writes_a_complete_version(settings_factory, small_data):
    s = _settings(settings_factory, small_data, *SEED_RECIPE)
    ds = dataset.build(s)
    out = Path(ds.path)
    assert ds.version.startswith("ds-") and out.name == ds.version
    assert {p.name for p in out.iterdir()} == {"faces.npz", "manifest.csv", "stats.json", "rejects.csv", "plots"}
    assert {p.name for p in (out / "plots").iterdir()} == {f"distribution_{s}.png" for s in dataset.PLOT_STAGES}
    c = ds.stats["counts"]
    assert set(c) >= STAGES
    assert sum(c["raw_fer2013"].values()) == 7 * 12 + 7 * 3 and sum(c["raw_expw"].values()) == 70
    assert sum(c["merged"].values()) == 84 + 21 + 70
    # undersampling drops 70% of happy and neutral, 25% of sad from the pool (PublicTest held out)
    assert c["undersampled"]["happy"] == round(22 * 0.3) and c["undersampled"]["sad"] == round(22 * 0.75)
    assert c["fer2013_publictest"] == dict.fromkeys(EMOTIONS, 3)
    # SMOTE balanced the training split to its largest class, and touched nothing else
    assert len(set(c["smote"].values())) == 1 and max(c["smote"].values()) == max(c["train"].values())
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == sum(sum(c[k].values()) for k in ("smote", "val", "test", "fer2013_publictest"))
    synthetic = manifest[manifest.synthetic]
    assert set(synthetic.split) == {"train"} and (synthetic.source == "smote").all()
    assert len(synthetic) == sum(c["smote"].values()) - sum(c["train"].values())
    assert ds.splits["train"][0].dtype == np.uint8 and ds.splits["train"][0].shape[1:] == (48, 48)


def test_no_expw_image_in_two_splits(settings_factory, small_data):
    ds = dataset.build(_settings(settings_factory, small_data, "balance.smote=false"))
    manifest = pd.read_csv(Path(ds.path) / "manifest.csv")
    expw = manifest[manifest.source == "expw"].copy()
    expw["group"] = expw.image.str.split("#").str[0]
    assert (expw.groupby("group").split.nunique() == 1).all()
    assert set(expw.split) == {"train", "val", "test"}


def test_same_inputs_reuse_the_version(settings_factory, small_data):
    s = _settings(settings_factory, small_data)
    first = dataset.build(s)
    second = dataset.build(s)
    assert second.version == first.version and second.stats["reused"] and not first.stats["reused"]
    for name in first.splits:
        assert np.array_equal(first.splits[name][0], second.splits[name][0])
    changed = dataset.build(_settings(settings_factory, small_data, "split.seed=7"))
    assert changed.version != first.version
    helpers.write_fer2013_csv(small_data["fer2013"], per_class=13, usage_counts={"PublicTest": 3})
    assert dataset.build(s).version != first.version
    leftovers = [p.name for p in Path(s.datasets_root).iterdir() if p.name.startswith(".")]
    assert leftovers == []  # atomic writes leave no temp folders behind


def test_rejects_reported_and_threshold_fails_the_build(settings_factory, tmp_path):
    csv = helpers.write_fer2013_csv(tmp_path / "f.csv", per_class=10,
                                    extra_lines=[f"3,{' '.join(['1'] * 10)},Training"] * 3)
    s = settings_factory(f'data.fer2013="{csv}"', "data.max_reject_ratio=0.1")
    ds = dataset.build(s)
    assert ds.stats["rejects"] == {"bad_pixels": 3}
    rejects = pd.read_csv(Path(ds.path) / "rejects.csv")
    assert list(rejects.reason) == ["bad_pixels"] * 3 and rejects["where"].str.contains("line").all()
    strict = settings_factory(f'data.fer2013="{csv}"', "data.max_reject_ratio=0.01")
    with pytest.raises(DataQualityError, match="bad_pixels: 3"):
        dataset.build(strict)


def test_missing_inputs_are_clear_errors(settings_factory, tmp_path):
    with pytest.raises(ValueError, match="no input data"):
        dataset.build(settings_factory())
    with pytest.raises(storage.StorageError, match="input not found"):
        dataset.build(settings_factory(f'data.fer2013="{tmp_path / "nope.csv"}"'))


def test_a_wrong_source_is_an_error_not_an_empty_dataset(settings_factory, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not faces")
    with pytest.raises(storage.StorageError, match="read from a CSV file"):
        dataset.build(settings_factory(f'data.fer2013="{notes}"'))
    with pytest.raises(storage.StorageError, match="not an ExpW folder"):
        dataset.build(settings_factory(f'data.expw="{tmp_path}"'))
    empty = tmp_path / "no_faces"
    (empty / "happy").mkdir(parents=True)
    (empty / "happy" / "readme.md").write_text("a folder of emotions with no images")
    with pytest.raises(DataQualityError, match="no faces found"):
        dataset.build(settings_factory(f'data.fer2013="{empty}"'))
    assert not list((tmp_path / "home").glob("datasets/ds-*"))  # nothing written for any of them


def test_smote_only_adds_training_rows_and_keeps_uint8():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 5 + [2] * 8)
    pixels = np.stack([helpers.face_pattern(int(y), rng) for y in labels])
    meta = pd.DataFrame({"image": [f"i{i}" for i in range(len(labels))], "source": "fer2013", "face_id": 0,
                         "label": labels, "usage": "Training", "confidence": np.nan})
    out = balance.smote(FaceTable(meta, pixels), k=5, seed=0)
    assert np.bincount(out.labels).tolist() == [20, 20, 20]
    assert out.pixels.dtype == np.uint8
    assert np.array_equal(out.pixels[: len(labels)], pixels)  # originals untouched, synthetic appended
    assert out.meta["synthetic"].sum() == 60 - len(labels)


def test_source_weights_repeat_a_sources_faces_and_nothing_else():
    x = np.arange(10, dtype=np.uint8)[:, None, None] * np.ones((1, 48, 48), np.uint8)
    y = np.arange(10) % 7
    src = np.array(["fer2013"] * 6 + ["expw"] * 4)
    wx, wy = balance.weight_sources(x, y, src, {"expw": 2.5}, seed=0)
    ids = wx[:, 0, 0].tolist()
    assert sorted(set(ids)) == list(range(10))  # nothing lost
    assert all(ids.count(i) == 1 for i in range(6))  # other sources once
    assert sorted(ids.count(i) for i in range(6, 10)) == [2, 2, 3, 3]  # 4 faces x 2.5 = 10 showings
    assert np.array_equal(wy, y[wx[:, 0, 0]])  # labels follow their faces
    again, _ = balance.weight_sources(x, y, src, {"expw": 2.5}, seed=0)
    assert np.array_equal(again, wx)  # seeded
    with pytest.raises(ValueError, match=">= 1"):
        balance.weight_sources(x, y, src, {"expw": 0.5}, seed=0)


def test_cli_data_build_prints_the_contract(small_data, tmp_path):
    env_home = tmp_path / "clihome"
    cmd = [sys.executable, "-m", "fer_cli", "data", "build", "--set", f"home={env_home}",
           "--set", f"data.fer2013={small_data['fer2013']}", "--set", f"data.expw={small_data['expw']}"]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert {"version", "path", "counts", "rejects"} <= set(out) and set(out["counts"]) >= STAGES
    stats = subprocess.run([sys.executable, "-m", "fer_cli", "data", "stats", out["version"], "--set",
                            f"home={env_home}"], check=True, capture_output=True, text=True)
    assert json.loads(stats.stdout)["version"] == out["version"]
    bad = subprocess.run(cmd[:5] + ["--set", f"data.fer2013={tmp_path / 'nope.csv'}"], capture_output=True, text=True)
    assert bad.returncode == 1 and "input not found" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.integration
def test_build_from_gcs_emulator(settings_factory, small_data, gcs_bucket):
    for local in [small_data["fer2013"], *small_data["expw"].rglob("*")]:
        if local.is_file():
            rel = local.relative_to(small_data["fer2013"].parent)
            storage.upload_file(local, f"{gcs_bucket}/raw/{rel.as_posix()}")
    s = settings_factory(f'data.fer2013="{gcs_bucket}/raw/fer2013.csv"', f'data.expw="{gcs_bucket}/raw/expw"',
                         f'data.output="{gcs_bucket}/datasets"')
    ds = dataset.build(s)
    assert ds.path.startswith(gcs_bucket) and sum(ds.stats["counts"]["raw_expw"].values()) == 70
    local = dataset.build(_settings(settings_factory, small_data))
    for name in ds.splits:  # the same faces whichever storage they came from
        assert np.array_equal(ds.splits[name][0], local.splits[name][0])
    assert dataset.build(s).stats["reused"]
    loaded = dataset.load(ds.version, s)
    assert loaded.stats["counts"] == ds.stats["counts"]


@pytest.mark.integration
def test_unreachable_bucket_is_a_clear_error(settings_factory, gcs_emulator):
    s = settings_factory('data.fer2013="gs://no-such-bucket-here/fer.csv"')
    with pytest.raises(storage.StorageError):
        dataset.build(s)


def test_expw_faces_of_the_test_split_are_their_own_eval_set(settings_factory, small_data):
    s = settings_factory(f'data.fer2013="{small_data["fer2013"]}"', f'data.expw="{small_data["expw"]}"')
    built = dataset.build(s)
    manifest = pd.read_csv(Path(built.path) / "manifest.csv")
    expected = manifest[(manifest["split"] == "test") & (manifest["source"] == "expw")]["label"].to_numpy()
    for ds in (built, dataset.load(built.version, s)):
        sets = ds.eval_sets()
        assert {"test", "fer2013_publictest", "expw_test"} <= set(sets)
        assert 0 < len(sets["expw_test"][1]) < len(sets["test"][1])
        assert np.array_equal(sets["expw_test"][1], expected)  # the same faces, in manifest order


def _via(proxy_url: str):
    """Point google-cloud-storage at another endpoint for the duration of a block."""
    import contextlib
    import os

    @contextlib.contextmanager
    def ctx():
        old = os.environ["STORAGE_EMULATOR_HOST"]
        os.environ["STORAGE_EMULATOR_HOST"] = proxy_url
        storage.reset_client()
        try:
            yield
        finally:
            os.environ["STORAGE_EMULATOR_HOST"] = old
            storage.reset_client()

    return ctx()


@pytest.mark.integration
def test_transient_gcs_read_errors_are_retried_not_dropped(settings_factory, small_data, gcs_bucket, gcs_emulator,
                                                          monkeypatch):
    """Every ExpW image download first gets a 503 from the server: the reads are retried (google-cloud-storage's
    policy) and every face is kept; a read that keeps failing fails the build, naming the object."""
    for local in small_data["expw"].rglob("*"):
        if local.is_file():
            storage.upload_file(local, f"{gcs_bucket}/expw/{local.relative_to(small_data['expw']).as_posix()}")
    s = settings_factory(f'data.expw="{gcs_bucket}/expw"', f'data.output="{gcs_bucket}/datasets"', "data.workers=4")
    with helpers.FlakyProxy(gcs_emulator, match="origin", failures=1) as proxy, _via(proxy.url):
        ds = dataset.build(s)
    assert proxy.failed and all(n == 1 for n in proxy.failed.values())
    assert ds.stats["rejects"] == {} and ds.stats["faces_read"]["expw"]["n"] == 70
    from fer_core.data import expw

    monkeypatch.setattr(storage, "GCS_RETRY_TIMEOUT_S", 4.0)
    with helpers.FlakyProxy(gcs_emulator, match="img_3_1", failures=100) as proxy, _via(proxy.url), \
            pytest.raises(storage.StorageError, match=r"cannot read gs://.*img_3_1\.jpg"):
        expw.read(f"{gcs_bucket}/expw", workers=2)


def test_transient_local_read_errors_are_retried_then_fail_clearly(small_data, monkeypatch):
    """A local read that fails with EIO (a network or FUSE file system) is retried; one that keeps failing
    fails the read naming the file. Only a file that is not there is a 'missing_image' reject."""
    import errno

    from fer_core.data import expw

    real = Path.read_bytes
    failures: dict[str, int] = {}

    def flaky(self, limit: int):
        def read(path):
            if path.suffix == ".jpg" and failures.get(str(path), 0) < limit:
                failures[str(path)] = failures.get(str(path), 0) + 1
                raise OSError(errno.EIO, "Input/output error", str(path))
            return real(path)
        return read

    monkeypatch.setattr(Path, "read_bytes", flaky(None, 2))
    table, rejects = expw.read(str(small_data["expw"]), workers=2)
    assert len(table) == 70 and len(rejects) == 0 and set(failures.values()) == {2}
    failures.clear()
    monkeypatch.setattr(Path, "read_bytes", flaky(None, storage.LOCAL_READ_ATTEMPTS))
    with pytest.raises(storage.StorageError, match=r"cannot read .*\.jpg after 4 attempts"):
        expw.read(str(small_data["expw"]), workers=2)
    monkeypatch.setattr(Path, "read_bytes", real)
    (small_data["expw"] / "origin" / "img_0_0.jpg").unlink()
    table, rejects = expw.read(str(small_data["expw"]), workers=2)
    assert rejects.counts() == {"missing_image": 2} and len(table) == 68


def test_a_faces_split_is_a_function_of_its_identity(settings_factory, small_data):
    """Two versions with different balancing from the same inputs put every common face in the same split,
    and an ExpW image's faces stay together."""
    a = dataset.build(settings_factory(f'data.fer2013="{small_data["fer2013"]}"', f'data.expw="{small_data["expw"]}"'))
    b = dataset.build(settings_factory(f'data.fer2013="{small_data["fer2013"]}"', f'data.expw="{small_data["expw"]}"',
                                       "balance.undersample={happy = 0.5}", "balance.smote=false"))
    assert a.version != b.version
    ma, mb = (pd.read_csv(Path(d.path) / "manifest.csv") for d in (a, b))
    both = ma[ma.source != "smote"].merge(mb, on="image", suffixes=("", "_b"))
    assert len(both) > 50 and (both.split == both.split_b).all()
    e = ma[ma.source == "expw"]
    assert (e.groupby(e.image.str.split("#").str[0]).split.nunique() == 1).all()
    c = dataset.build(settings_factory(f'data.fer2013="{small_data["fer2013"]}"', f'data.expw="{small_data["expw"]}"',
                                       "split.seed=7"))
    mc = pd.read_csv(Path(c.path) / "manifest.csv")
    moved = ma[ma.source != "smote"].merge(mc, on="image", suffixes=("", "_c"))
    assert (moved.split != moved.split_c).any()  # the seed, and only the seed, redraws
