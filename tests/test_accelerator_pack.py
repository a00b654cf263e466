"""tools/accelerator_pack.py: what travels to a lent GPU machine, packed and checked here."""

import json

import keras
import numpy as np
import pytest

from fer_core.labels import NUM_CLASSES
from tests.helpers import load_script


@pytest.fixture(scope="module")
def pack():
    return load_script("tools/accelerator_pack.py")


def _dataset(folder, rng):
    folder.mkdir()
    y = np.arange(84) % NUM_CLASSES
    x = rng.integers(0, 255, (84, 48, 48), dtype=np.uint8)
    np.savez(folder / "faces.npz", x_train=x[:70], y_train=y[:70], x_val=x[70:], y_val=y[70:],
             x_test=x[:7], y_test=y[:7])
    return x, y


def test_packs_the_arrays_and_the_shipped_teacher_for_the_trainer(pack, tmp_path, monkeypatch):
    """The packed arrays are the dataset's, read back by the trainer; the shipped champion, carried as the teacher,
    distils a student there (here on the CPU's backend, at toy size)."""
    x, y = _dataset(tmp_path / "ds-0123456789ab", np.random.default_rng(0))
    monkeypatch.chdir(tmp_path)
    manifest = pack.main(["--dataset", "ds-0123456789ab", "--no-wheels", "--teacher",
                          str(pack.Path(pack.__file__).resolve().parents[1] / "fer_core/assets/baseline.keras")])
    assert manifest["dataset_version"] == "ds-0123456789ab" and manifest["arrays"]["train"] == 70
    assert manifest["carry"] == [".gpu"] and 0 < manifest["carry_bytes"] + manifest["tree_bytes"] < pack.CARRY_LIMIT
    assert manifest["tree_bytes"] > 1_000_000  # the shipped models travel with every call
    assert "DATASET=ds-0123456789ab" in manifest["command"] and "--teacher .gpu/teacher.keras" in manifest["command"]
    assert json.loads((tmp_path / ".gpu" / "manifest.json").read_text()) == manifest
    trainer = load_script("tools/accelerator_train.py")
    arrays = trainer.load_arrays(".gpu/faces.npz.xz")
    assert set(arrays) == {"x_train", "y_train", "x_val", "y_val"}  # the test faces stay here
    assert np.array_equal(arrays["x_train"], x[:70]) and np.array_equal(arrays["y_val"], y[70:])
    summary = trainer.main(["--data", ".gpu/faces.npz.xz", "--out", "runs/s1", "--width", "16", "--minutes", "0.01",
                            "--batch", "35", "--max-epochs", "1", "--teacher", ".gpu/teacher.keras"])
    assert summary["epochs"] == 1 and summary["dataset_version"] == ""  # read from .gpu, named by DATASET there


def test_refuses_what_is_not_a_dataset_and_a_carry_over_the_limit(pack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="not found"):
        pack.main(["--dataset", "nowhere", "--no-wheels"])
    (tmp_path / "ds-x").mkdir()
    np.savez(tmp_path / "ds-x" / "faces.npz", x_train=np.zeros((1, 48, 48), np.uint8))
    with pytest.raises(SystemExit, match="lacks y_train, x_val, y_val"):
        pack.main(["--dataset", "ds-x", "--no-wheels"])
    _dataset(tmp_path / "ds-y", np.random.default_rng(1))
    monkeypatch.setattr(pack, "CARRY_LIMIT", 1000)
    with pytest.raises(SystemExit, match="together, over the device.s 64 MiB"):
        pack.main(["--dataset", "ds-y", "--no-wheels"])


def test_pins_the_wheels_to_what_is_installed_here(pack):
    pins = dict(pin.split("==") for pin in pack.wheel_pins())
    assert pins["keras"] == keras.__version__ and set(pins) == set(pack.DEVICE_WHEELS)
