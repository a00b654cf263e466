"""tools/accelerator_train.py: the accelerator training script, run here on the CPU backend at toy size."""

import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from fer_core import models
from fer_core.labels import NUM_CLASSES
from tests.helpers import load_script


@pytest.fixture(scope="module")
def tool():
    return load_script("tools/accelerator_train.py")


def test_distill_loss_is_label_loss_when_teacher_agrees(tool):
    rng = np.random.default_rng(0)
    labels = np.eye(NUM_CLASSES, dtype="float32")[rng.integers(0, NUM_CLASSES, 16)]
    student = rng.dirichlet(np.ones(NUM_CLASSES), 16).astype("float32")
    other = rng.dirichlet(np.ones(NUM_CLASSES), 16).astype("float32")
    label_only = float(tool.distill_loss(1.0, 4.0, 0.1)(labels, np.concatenate([student, other], 1)))
    agreeing = float(tool.distill_loss(0.5, 4.0, 0.1)(labels, np.concatenate([student, student], 1)))
    disagreeing = float(tool.distill_loss(0.5, 4.0, 0.1)(labels, np.concatenate([student, other], 1)))
    assert agreeing == pytest.approx(0.5 * label_only, rel=1e-4)  # KL(teacher || student) = 0
    assert disagreeing > agreeing + 1e-3
    assert float(tool.student_accuracy(ops.convert_to_tensor(labels), ops.convert_to_tensor(
        np.concatenate([labels, other], 1)))) == 1.0


def test_trains_a_loadable_compact_model_and_distils(tool, tmp_path):
    rng = np.random.default_rng(1)
    y = np.arange(140) % NUM_CLASSES
    x = rng.integers(0, 255, (140, 48, 48), dtype=np.uint8)
    (tmp_path / "ds-0123456789ab").mkdir()
    data = tmp_path / "ds-0123456789ab" / "faces.npz"
    np.savez(data, x_train=x[:112], y_train=y[:112], x_val=x[112:], y_val=y[112:])
    common = ["--data", str(data), "--width", "16", "--minutes", "0.01", "--batch", "32", "--max-epochs", "2"]
    summary = tool.main([*common, "--out", str(tmp_path / "plain")])
    assert summary["epochs"] >= 1 and summary["params"] == models.build_compact(width=16).count_params()
    student = models.load(str(tmp_path / "plain" / "best.keras"))
    assert student.name == "compact" and student.predict(x[:4], verbose=0).shape == (4, NUM_CLASSES)
    record = json.loads((tmp_path / "plain" / "history.json").read_text())
    assert record["history"][0]["epoch"] == 1
    progress = [json.loads(line) for line in (tmp_path / "plain" / "epochs.jsonl").read_text().splitlines()]
    assert progress == record["history"]  # written as it went, the same figures
    assert record["dataset_version"] == "ds-0123456789ab"  # the folder it was read from, for the card
    shipped = load_script("scripts/ship_baseline.py").training_record(str(tmp_path / "plain" / "history.json"), "cmd")
    assert shipped["command"] == "cmd" and shipped["run_id"] == "" and shipped["run_name"] == "plain"
    assert shipped["metrics"]["epochs_run"] == summary["epochs"] and shipped["params"]["train.width"] == "16"
    assert shipped["dataset_version"] == "ds-0123456789ab" and "accelerator_train" in shipped["trained"]
    distilled = tool.main([*common, "--out", str(tmp_path / "distilled"),
                           "--teacher", str(tmp_path / "plain" / "best.keras")])
    assert distilled["teacher"] and (tmp_path / "distilled" / "best.keras").is_file()


def test_trains_in_bfloat16_and_its_network_loads_in_float32(tool, tmp_path):
    """--precision mixed_bfloat16 (for a GPU's bfloat16 units) trains the student computing in bfloat16; the saved
    network loads computing in float32, as the pipeline assembles and serves it."""
    from fer_core import train

    try:
        train.check_precision("mixed_bfloat16")
    except ValueError as e:
        pytest.skip(f"this CPU has no bfloat16 convolutions: {e}")
    rng = np.random.default_rng(2)
    data = tmp_path / "faces.npz"
    y = np.arange(70) % NUM_CLASSES
    np.savez(data, x_train=rng.integers(0, 255, (56, 48, 48), dtype=np.uint8), y_train=y[:56],
             x_val=rng.integers(0, 255, (14, 48, 48), dtype=np.uint8), y_val=y[56:])
    summary = tool.main(["--data", str(data), "--width", "16", "--minutes", "0.01", "--batch", "16",
                         "--max-epochs", "1", "--precision", "mixed_bfloat16", "--out", str(tmp_path / "half")])
    assert summary["epochs"] == 1
    saved = keras.saving.load_model(tmp_path / "half" / "best.keras", compile=False)
    assert saved.get_layer("block1_sep1").compute_dtype == "bfloat16"
    network = models.load(str(tmp_path / "half" / "best.keras"))
    assert {layer.compute_dtype for layer in network.layers} - {"uint8"} == {"float32"}
    with pytest.raises(SystemExit):
        tool.main(["--data", str(data), "--out", str(tmp_path / "x"), "--precision", "float8"])


def test_members_script_trains_each_seed_and_packs_them(tmp_path):
    """tools/accelerator_members.sh end to end, on the CPU's backend at toy size: one run a seed, at once."""
    rng = np.random.default_rng(2)
    buf = io.BytesIO()
    np.savez(buf, x_train=rng.integers(0, 255, (64, 48, 48), dtype=np.uint8), y_train=np.arange(64) % NUM_CLASSES,
             x_val=rng.integers(0, 255, (21, 48, 48), dtype=np.uint8), y_val=np.arange(21) % NUM_CLASSES)
    data = tmp_path / "faces.npz.xz"
    data.write_bytes(lzma.compress(buf.getvalue()))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "RUNS": str(tmp_path / "runs"), "OUT": str(tmp_path / "out"),
           "DATASET": "ds-0123456789ab", "TRAIN_ARGS": "--width 16 --max-epochs 2",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["bash", "tools/accelerator_members.sh", str(data), "0.01", "3", "4"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(tmp_path / "out" / "members.tar") as tar:
        names = set(tar.getnames())
        assert {"s3/best.keras", "s3/history.json", "s4/best.keras", "s4/history.json"} <= names
        record = json.load(tar.extractfile("s4/history.json"))
    assert record["args"]["seed"] == 4 and record["dataset_version"] == "ds-0123456789ab"
    assert record["args"]["width"] == 16 and record["args"]["max_epochs"] == 2  # TRAIN_ARGS reached every run
    assert [json.loads(line)["run"] for line in done.stdout.splitlines() if line.startswith("{")] == ["s3", "s4"]
