"""The model zoo: build, train briefly, save and reload to identical predictions; fast inference agrees."""

import io
import json
import zipfile
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from fer_core import augment, calibrate, evaluate, models, train
from fer_core.classify import Classifier, keras_to_tflite
from fer_core.config import AugmentSettings
from tests import helpers


def _real_subset(n_per_class: int = 12):
    """A small class-balanced subset of real ExpW faces (or test-written faces when ../shared is missing)."""
    from fer_core.data import expw

    if helpers.shared_missing(helpers.EXPW_ROOT) is None:
        table, _ = expw.read(str(helpers.EXPW_ROOT), limit=600)
        idx = np.concatenate([np.flatnonzero(table.labels == k)[:n_per_class] for k in range(7)])
        return table.pixels[idx], table.labels[idx]
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), n_per_class)
    return np.stack([helpers.face_pattern(int(k), rng) for k in y]), y


@pytest.mark.slow
@pytest.mark.parametrize("name", models.ZOO)
def test_zoo_model_trains_saves_and_reloads(name, settings_factory, tmp_path):
    x, y = _real_subset()
    s = settings_factory(f"train.model={name}", "train.epochs=2", "train.fine_tune_epochs=1", "train.batch_size=16",
                         "train.input_size=32", "train.weights=\"\"")
    result = train.train(s, {"train": (x, y), "val": (x[::4], y[::4])}, tmp_path / "run")
    assert result.epochs_run == 2 and len(result.history["loss"]) == 2
    assert np.isfinite(result.history["loss"]).all()
    reloaded = models.load(str(result.model_path))  # safe_mode=True
    a = result.model.predict(x[:8], verbose=0)
    b = reloaded.predict(x[:8], verbose=0)
    assert np.allclose(a, b, atol=1e-6) and np.allclose(a.sum(1), 1, atol=1e-5)
    assert reloaded.input.shape == (None, 48, 48) and reloaded.input.dtype == "uint8"
    if name != "compact":
        assert models.is_transfer(models.unwrap(reloaded))
        assert models.unwrap(reloaded).get_layer("resize").output.shape[1:3] == (32, 32)


def test_an_equalising_model_answers_the_same_whatever_the_exposure(settings_factory, tmp_path):
    """train.equalize: the trained, saved and served model equalises each face first, so a face shot darker
    and with less contrast (levels v -> v // 2 + 20, which keeps their order and merges none of a face with
    only even levels) gets the same answer; the same network trained without it answers otherwise."""
    x, y = _real_subset(6)
    x = (x // 2) * 2  # even levels only: halving then merges no two of them
    darker = x // 2 + 20
    answers = {}
    for equalize in (True, False):
        s = settings_factory("train.epochs=1", "train.width=16", "train.batch_size=16", "train.calibrate=false",
                             f"train.equalize={str(equalize).lower()}")
        result = train.train(s, {"train": (x, y), "val": (x[::4], y[::4])}, tmp_path / str(equalize))
        served = Classifier.from_file(result.model_path)
        answers[equalize] = served.predict(x), served.predict(darker)
        assert (models.unwrap(models.load(str(result.model_path))).layers[2].name == "equalize") is equalize
    np.testing.assert_allclose(*answers[True], atol=1e-6)
    assert np.abs(answers[False][0] - answers[False][1]).max() > 1e-3


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="zoo has compact"):
        models.build("alexnet")


def test_widths_below_the_onednn_floor_are_refused_clearly(settings_factory):
    from fer_core.config import MIN_COMPACT_WIDTH, ConfigError

    with pytest.raises(ConfigError, match=f"train.width: Input should be greater than or equal to {MIN_COMPACT_WIDTH}"):
        settings_factory("train.width=8")
    with pytest.raises(ValueError, match="oneDNN"):
        models.build_compact(width=12)
    assert models.build_compact(width=MIN_COMPACT_WIDTH).count_params() > 0


DEMO_TRAINING = """
import sys
import numpy as np
from fer_cli.demo import DEMO_OVERRIDES
from fer_core import train
from fer_core.config import load_settings
from tests.helpers import face_pattern

s = load_settings(None, [f'home="{sys.argv[1]}"', *DEMO_OVERRIDES, "train.epochs=2"], environ={})
rng = np.random.default_rng(0)
y = np.arange(7 * 30) % 7
x = np.stack([face_pattern(int(k), rng) for k in y])
result = train.train(s, {"train": (x, y), "val": (x[::3], y[::3])}, sys.argv[1] + "/run")
print("trained", s.train.width, result.epochs_run)
"""


def test_demo_training_configuration_trains_in_a_fresh_process(tmp_path):
    """The demo's own training settings in a fresh interpreter, where an oneDNN crash would kill the process
    (segfault or abort) instead of failing an assertion."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", DEMO_TRAINING, str(tmp_path)], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained 16 2" in proc.stdout


def test_model_owns_its_preprocessing(tiny_model_path):
    model = models.unwrap(models.load(str(tiny_model_path)))
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["face", "add_channel", "standardise"]
    assert not any("random" in n or n == "augment" for n in names)  # no augmentation in the saved model


def test_tflite_classifier_agrees_with_keras(tiny_model_path, tmp_path):
    model = models.load(str(tiny_model_path))
    clf = Classifier.from_file(tiny_model_path, cache_dir=tmp_path)
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5, 8, 16, 17, 70, 200):  # every bucket, partial and chunked batches
        faces = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
        assert np.allclose(clf.predict(faces), model.predict(faces, verbose=0), atol=1e-4)
    assert len(list(tmp_path.glob("*.tflite"))) == 1
    Classifier.from_file(tiny_model_path, cache_dir=tmp_path)  # second load hits the cache
    with pytest.raises(ValueError, match="faces must be"):
        clf.predict(np.zeros((2, 32, 32), np.uint8))


def test_quantized_tflite_forms_are_smaller_and_close_to_float(tiny_model_path):
    """bench/quantize.py's forms: half-size weights (float16), int8 weights (dynamic) and int8 weights and
    activations (int8, ranges from representative faces) shrink the model and stay close to the float form's
    probabilities, float16 closest."""
    model = models.load(str(tiny_model_path))
    rng = np.random.default_rng(2)
    faces = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8)
    flat = keras_to_tflite(model)
    reference = Classifier(flat).predict(faces)
    for form, tolerance in (("float16", 0.01), ("dynamic", 0.1), ("int8", 0.1)):
        content = keras_to_tflite(model, quantize=form, representative=faces[:32])
        assert len(content) < 0.6 * len(flat), form
        assert np.abs(Classifier(content).predict(faces) - reference).max() < tolerance, form
    with pytest.raises(ValueError, match="representative"):
        keras_to_tflite(model, quantize="int8")
    with pytest.raises(ValueError, match="quantize must be"):
        keras_to_tflite(model, quantize="int4")


def test_flip_average_is_the_mean_over_the_mirror_image(tiny_model_path, tmp_path):
    """The saved model averages the face and its mirror image: a mirrored face gets the same answer, the
    output is the plain model's mean over both, and it survives saving (safe mode) and TFLite."""
    saved = models.load(str(tiny_model_path))
    assert saved.name.endswith("_flip_cal")  # flip-averaged, then calibrated (the defaults)
    plain = models.unwrap(saved)
    assert plain is not saved and plain.name == "compact" and models.unwrap(plain) is plain
    assert len(saved.get_weights()) == len(plain.get_weights())  # no weights of its own
    flipped = models.with_flip_average(plain)
    assert [layer.name for layer in flipped.layers][1] == "mirror"
    faces = np.random.default_rng(3).integers(0, 256, (16, 48, 48), dtype=np.uint8)
    mirrored = faces[:, :, ::-1]
    expected = (plain.predict(faces, verbose=0) + plain.predict(mirrored, verbose=0)) / 2
    assert not np.allclose(plain.predict(faces, verbose=0), plain.predict(mirrored, verbose=0), atol=1e-3)
    assert np.allclose(flipped.predict(faces, verbose=0), expected, atol=1e-6)
    assert np.allclose(flipped.predict(mirrored, verbose=0), expected, atol=1e-6)
    calibrated = calibrate.tempered(expected, models.temperature_of(saved))
    assert np.allclose(saved.predict(mirrored, verbose=0), calibrated, atol=1e-5)
    assert np.allclose(Classifier.from_keras(saved).predict(mirrored), calibrated, atol=1e-4)


def _convolutions(content: bytes) -> int:
    import tensorflow as tf

    return sum(op["op_name"] == "CONV_2D" for op in tf.lite.Interpreter(model_content=content)._get_ops_details())


def test_a_flip_wrapper_of_the_earlier_form_converts_to_one_pass(tiny_model_path):
    """Models saved before 2026-12-04 call their network on the faces and on the mirrors apart (twice the
    operations); `with_batched_flip` rebuilds that as one batch with the same answers and temperature, and the
    TFLite conversion does so, so a flip-averaged model has the plain network's convolutions, once."""
    saved = models.load(str(tiny_model_path))
    plain = models.unwrap(saved)
    inputs = keras.Input(shape=(48, 48), dtype="uint8", name="face")
    earlier = keras.Model(inputs, keras.layers.Average()([plain(inputs), plain(models.MirrorFaces()(inputs))]),
                          name=f"compact{models.FLIPPED}")
    earlier = models.with_temperature(earlier, 1.3)
    rebuilt = models.with_batched_flip(earlier)
    assert models.temperature_of(rebuilt) == 1.3
    assert any(isinstance(layer, models.WithMirrors) for layer in models.without_temperature(rebuilt).layers)
    assert models.with_batched_flip(saved) is saved and models.with_batched_flip(plain) is plain  # nothing to do
    faces = np.random.default_rng(5).integers(0, 256, (16, 48, 48), dtype=np.uint8)
    expected = earlier.predict(faces, verbose=0)
    assert np.allclose(rebuilt.predict(faces, verbose=0), expected, atol=1e-6)
    content = keras_to_tflite(earlier)
    assert _convolutions(content) == _convolutions(keras_to_tflite(plain)) > 0
    assert np.allclose(Classifier(content).predict(faces), expected, atol=1e-4)


def test_temperature_fit_recovers_a_known_miscalibration():
    """Labels drawn from softmax(z / 2.5) while the model says softmax(z): the model is over-confident by a
    temperature of 2.5, and the fit finds it; a calibrated model gets about 1; the ECE falls."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 7))
    model_probs = calibrate.tempered(np.exp(logits), 1.0)
    truth = calibrate.tempered(model_probs, 2.5)
    y = np.array([rng.choice(7, p=p) for p in truth])
    t = calibrate.fit_temperature(model_probs, y)
    assert t == pytest.approx(2.5, rel=0.05)
    assert calibrate.fit_temperature(truth, y) == pytest.approx(1.0, rel=0.05)
    after = calibrate.tempered(model_probs, t)
    assert (after.argmax(1) == model_probs.argmax(1)).all()  # no prediction changes
    assert evaluate.expected_calibration_error(y, after) < 0.02 < evaluate.expected_calibration_error(y, model_probs)
    with pytest.raises(ValueError, match="positive"):
        models.Temperature(0.0)


def test_each_source_weighs_the_same_in_the_temperature_fit():
    """Two domains miscalibrated in opposite directions, one nine times the other's size: weighted by source,
    the fit is the one the two would give at equal sizes, not the majority's."""
    rng = np.random.default_rng(1)

    def domain(n: int, true_t: float):
        probs = calibrate.tempered(np.exp(rng.normal(0, 3, (n, 7))), 1.0)
        return probs, np.array([rng.choice(7, p=p) for p in calibrate.tempered(probs, true_t)])

    (pa, ya), (pb, yb) = domain(1000, 2.0), domain(9000, 0.7)
    probs, y = np.concatenate([pa, pb]), np.concatenate([ya, yb])
    groups = np.array(["expw"] * 1000 + ["fer2013"] * 9000)
    w = calibrate.group_weights(groups)
    assert w[groups == "expw"].sum() == pytest.approx(w[groups == "fer2013"].sum())
    equal_sizes = calibrate.fit_temperature(np.concatenate([pa, pb[:1000]]), np.concatenate([ya, yb[:1000]]))
    assert calibrate.fit_temperature(probs, y, w) == pytest.approx(equal_sizes, rel=0.08)
    assert calibrate.fit_temperature(probs, y) < 0.85 * equal_sizes  # unweighted: the majority's


def test_a_trained_model_is_saved_calibrated_and_without_training_state(settings_factory, tmp_path):
    """The saved model: the trained network's answers re-scaled by the temperature fitted on the validation
    split (its figures reported), the same predictions, no optimizer inside (config or weights), and it
    reloads in safe mode with TFLite agreeing."""
    import h5py

    x, y = _real_subset()
    result = train.train(settings_factory("train.epochs=2", "train.batch_size=16", "train.width=16"),
                         {"train": (x, y), "val": (x[::2], y[::2])}, tmp_path / "run")
    c = result.extra["calibration"]
    assert c["temperature"] == models.temperature_of(result.model) and c["temperature"] != 1.0
    assert c["val_nll"] <= c["val_nll_before_calibration"]
    saved = models.load(str(result.model_path))
    network = models.with_flip_average(models.unwrap(saved))
    raw = network.predict(x, verbose=0)
    probs = saved.predict(x, verbose=0)
    assert np.allclose(probs, calibrate.tempered(raw, c["temperature"]), atol=1e-5)
    assert (probs.argmax(1) == raw.argmax(1)).all()
    assert np.allclose(Classifier.from_keras(saved).predict(x), probs, atol=1e-4)
    with zipfile.ZipFile(result.model_path) as z:
        assert "optimizer" not in z.read("config.json").decode()
        with h5py.File(io.BytesIO(z.read("model.weights.h5"))) as h5:
            names: list[str] = []
            h5.visit(names.append)
    assert names and not [n for n in names if "optimizer" in n]
    plain = train.train(settings_factory("train.epochs=0", "train.width=16", "train.calibrate=false",
                                         f'train.init_from="{result.model_path}"'),
                        {"train": (x, y), "val": (x[::2], y[::2])}, tmp_path / "plain")
    assert models.temperature_of(plain.model) is None and not plain.extra["calibration"]
    assert np.allclose(plain.model.predict(x, verbose=0), raw, atol=1e-6)


def test_augmentation_only_in_training():
    aug = augment.build_augmenter(AugmentSettings(), seed=3)
    assert [type(layer).__name__ for layer in aug.layers] == ["RandomFaceAffine", "RandomBrightnessScale"]
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1)).astype("float32")
    assert np.array_equal(np.asarray(aug(faces, training=False)), faces)
    changed = np.asarray(aug(faces, training=True))
    assert changed.shape == faces.shape and not np.allclose(changed, faces)
    assert changed.min() >= 0 and changed.max() <= 255
    layer = augment.RandomBrightnessScale(0.8, 1.2)
    assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config()["high"] == 1.2


def test_affine_augmentation_is_one_resampling():
    """One composed warp keeps faces sharp; the seed's settings are the defaults."""
    cfg = AugmentSettings()
    assert (cfg.rotation_deg, cfg.shift, cfg.zoom, cfg.flip, cfg.brightness) == (20.0, 0.1, 0.1, True, (0.8, 1.2))
    rng = np.random.default_rng(0)
    faces = np.stack([helpers.face_pattern(k % 7, rng) for k in range(64)]).astype("float32")[..., None]
    warped = np.asarray(augment.RandomFaceAffine(seed=1)(faces, training=True))
    chained = keras.Sequential([keras.layers.RandomRotation(20 / 360, fill_mode="reflect", seed=1),
                                keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=2),
                                keras.layers.RandomZoom(0.1, 0.1, fill_mode="reflect", seed=3)])
    blurred = np.asarray(chained(faces, training=True))

    def sharpness(b):
        return np.abs(np.diff(b, axis=2)).mean()

    assert sharpness(warped) > 1.15 * sharpness(blurred)
    assert sharpness(warped) < sharpness(faces)
    flip_only = augment.RandomFaceAffine(rotation_deg=0, shift=0, zoom=0, flip=True, seed=2)
    out = np.asarray(flip_only(faces, training=True))
    flipped = [np.allclose(o, f[:, ::-1], atol=1e-3) for o, f in zip(out, faces, strict=True)]
    same = [np.allclose(o, f, atol=1e-3) for o, f in zip(out, faces, strict=True)]
    assert all(a or b for a, b in zip(flipped, same, strict=True)) and 10 < sum(flipped) < 54
    assert len(augment.build_augmenter(AugmentSettings(flip=False, rotation_deg=0, shift=0, zoom=0,
                                                       brightness=(1.0, 1.0))).layers) == 0


def test_random_erasing_covers_one_rectangle_of_some_faces():
    """augment.erase: that share of faces gets one rectangle of noise whose area is within erase_area."""
    flat = np.full((400, 48, 48, 1), 128.0, "float32")  # noise shows against a flat face (128 is rarely drawn)
    cfg = AugmentSettings(flip=False, rotation_deg=0, shift=0, zoom=0, brightness=(1.0, 1.0), erase=0.5)
    aug = augment.build_augmenter(cfg, seed=5)
    assert [type(layer).__name__ for layer in aug.layers] == ["RandomErasing"]
    assert np.array_equal(np.asarray(aug(flat, training=False)), flat)
    out = np.asarray(aug(flat, training=True))[..., 0]
    changed = out != 128.0
    erased = changed.any(axis=(1, 2))
    assert 0.40 < erased.mean() < 0.60  # 0.5 of 400 faces: a standard error of 0.025
    assert out.min() >= 0 and out.max() <= 255
    for mask in changed[erased]:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.mean() > 0.9  # one rectangle (a few noise pixels may land on 128 exactly)
        assert box.size <= 0.33 * 48 * 48 + 2 * 48 + 1  # each side at most sqrt(0.33) of 48, rounded up
    assert len(augment.build_augmenter(AugmentSettings(erase=0.0)).layers) == 2  # off by default


def test_low_resolution_blurs_that_share_of_faces_and_no_other():
    """augment.low_res: that share of faces is shrunk to one of the sizes and enlarged back (blurred: less
    pixel-to-pixel contrast, the same mean light), the others untouched; off by default; sizes are checked."""
    rng = np.random.default_rng(4)
    faces = np.stack([helpers.face_pattern(k % 7, rng) for k in range(400)]).astype("float32")[..., None]
    cfg = AugmentSettings(flip=False, rotation_deg=0, shift=0, zoom=0, brightness=(1.0, 1.0), low_res=0.5)
    aug = augment.build_augmenter(cfg, seed=6)
    assert [type(layer).__name__ for layer in aug.layers] == ["RandomLowResolution"]
    assert np.array_equal(np.asarray(aug(faces, training=False)), faces)
    out = np.asarray(aug(faces, training=True))
    blurred = np.abs(out - faces).reshape(len(faces), -1).max(axis=1) > 1e-3
    assert 0.40 < blurred.mean() < 0.60  # 0.5 of 400 faces: a standard error of 0.025

    def sharpness(b):
        return np.abs(np.diff(b, axis=2)).mean(axis=(1, 2, 3))

    assert (sharpness(out[blurred]) < 0.9 * sharpness(faces[blurred])).all()
    assert np.allclose(out[blurred].mean(axis=(1, 2, 3)), faces[blurred].mean(axis=(1, 2, 3)), atol=3.0)
    one_size = np.asarray(augment.RandomLowResolution(1.0, sizes=(24,), seed=1)(faces[:2], training=True))
    expected = [cv2.resize(cv2.resize(f[..., 0], (24, 24), interpolation=cv2.INTER_AREA), (48, 48),
                           interpolation=cv2.INTER_LINEAR) for f in faces[:2]]
    assert np.abs(one_size[..., 0] - np.stack(expected)).mean() < 4.0  # a 2:1 shrink, as OpenCV makes it
    layer = augment.RandomLowResolution(0.3, sizes=(20, 30))
    assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config()["sizes"] == [20, 30]
    assert AugmentSettings().low_res == 0.0
    with pytest.raises(ValueError, match="low_res_sizes"):
        AugmentSettings(low_res_sizes=(48,))


def test_tf_data_pipeline_batches_and_augments():
    x = np.random.default_rng(0).integers(0, 256, (10, 48, 48), dtype=np.uint8)
    y = np.arange(10) % 7
    ds = train.make_dataset(x, y, 4, training=True, augmenter=augment.build_augmenter(AugmentSettings()))
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0][0].dtype == "uint8" and batches[0][1].shape == (4, 7)
    plain = list(train.make_dataset(x, y, 4, training=False))
    assert np.array_equal(np.concatenate([b[0] for b in plain]), x)


def test_class_weights_balance_counts():
    w = train.class_weights(np.array([0, 0, 0, 1]))
    assert w[0] == pytest.approx(4 / 6) and w[1] == pytest.approx(2.0) and w[5] == 0


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, after_epoch: int):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after_epoch:
            raise KeyboardInterrupt("simulated interruption")


def test_interrupted_run_resumes_from_checkpoint(settings_factory, tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), 6)
    x = np.stack([helpers.face_pattern(int(k), rng) for k in y])
    # statistics as trained (no batch-norm refresh), so the saved model is exactly the best epoch's network
    s = settings_factory("train.epochs=3", "train.batch_size=16", "train.width=16", "augment.enabled=false",
                         "train.early_stopping_patience=10", "train.bn_refresh_faces=0")
    splits = {"train": (x, y), "val": (x, y)}
    with pytest.raises(KeyboardInterrupt):
        train.train(s, splits, tmp_path / "run", callbacks=[_Interrupt(2)])
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["epoch"] == 2
    resumed = train.train(s, splits, tmp_path / "run")
    assert resumed.epochs_run == 1  # only epoch 3 was left
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["epoch"] == 3
    assert (tmp_path / "run" / "best.keras").is_file()
    # the saved model carries the best validation epoch's weights, not merely the last epoch's (and is saved
    # with flip averaging, the default)
    best = models.with_flip_average(models.load(str(tmp_path / "run" / "best.keras")))
    saved = models.load(str(resumed.model_path))
    want = calibrate.tempered(best.predict(x, verbose=0), models.temperature_of(saved))
    assert np.allclose(want, saved.predict(x, verbose=0), atol=1e-5)


def test_source_weights_need_the_faces_sources(settings_factory, tmp_path):
    x, y = _real_subset()
    s = settings_factory("train.epochs=1", "train.width=16", "train.source_weights={expw=2.0}")
    with pytest.raises(ValueError, match="sources"):
        train.train(s, {"train": (x, y), "val": (x, y)}, tmp_path / "run")


def test_time_budget_stops_training_mid_epoch(settings_factory, tmp_path):
    x, y = _real_subset()
    s = settings_factory("train.epochs=50", "train.batch_size=4", "train.width=16", "train.max_minutes=0.0005")
    result = train.train(s, {"train": (x, y), "val": (x[::4], y[::4])}, tmp_path / "run")
    assert result.extra["budget_spent"] and result.epochs_run == 1
    assert 0 < result.extra["images_seen"] < len(x)
    assert np.isfinite(result.history["val_loss"]).all()  # the cut epoch still validated


@pytest.mark.slow
def test_transfer_phases_follow_the_weights(settings_factory, tmp_path):
    """Pretrained weights (here a weights file, as imagenet cannot be downloaded): frozen, then fine-tuned
    at the low rate. No weights: the whole network trains from the start at the normal rate."""
    x, y = _real_subset(4)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights_file = tmp_path / "base.weights.h5"
    base.save_weights(weights_file)
    common = ("train.model=mobilenetv2", "train.epochs=2", "train.fine_tune_epochs=1", "train.batch_size=16",
              "train.input_size=32")
    pretrained = train.train(settings_factory(*common, f'train.weights="{weights_file}"'),
                             {"train": (x, y), "val": (x, y)}, tmp_path / "a")
    assert np.allclose(pretrained.history["learning_rate"], [1e-3, 1e-5])
    bn = "bn_Conv1"  # the first BatchNorm of MobileNetV2
    loaded_stats = base.get_layer(bn).moving_mean.numpy()
    assert np.allclose(models.unwrap(pretrained.model).get_layer("base").get_layer(bn).moving_mean.numpy(), loaded_stats)
    scratch = train.train(settings_factory(*common, 'train.weights=""'), {"train": (x, y), "val": (x, y)},
                          tmp_path / "b")
    assert np.allclose(scratch.history["learning_rate"], [1e-3, 1e-3])
    assert models.unwrap(scratch.model).get_layer("base").trainable
    # from scratch, BatchNorm learns its statistics (left at their initial zeros, the network cannot train;
    # at a momentum fast enough for short runs)
    scratch_bn = models.unwrap(scratch.model).get_layer("base").get_layer(bn)
    assert np.abs(scratch_bn.moving_mean.numpy()).max() > 1e-6 and scratch_bn.momentum == models.SCRATCH_BN_MOMENTUM
    assert models.unwrap(pretrained.model).get_layer("base").get_layer(bn).momentum == base.get_layer(bn).momentum


def test_warm_start_continues_from_a_saved_model(settings_factory, tmp_path):
    """train.init_from starts from a saved model's weights (with no epochs to run, the result is that model);
    a model of another shape is a clear error, not a silent fresh start."""
    x, y = _real_subset()
    splits = {"train": (x, y), "val": (x, y)}
    common = ("train.batch_size=16", "train.width=16")
    first = train.train(settings_factory("train.epochs=1", *common), splits, tmp_path / "a")
    expected = first.model.predict(x[:32], verbose=0)
    warm = train.train(settings_factory("train.epochs=0", *common, f'train.init_from="{first.model_path}"'),
                       splits, tmp_path / "b")
    assert np.allclose(warm.model.predict(x[:32], verbose=0), expected, atol=1e-6)
    fresh = train.train(settings_factory("train.epochs=0", *common), splits, tmp_path / "c")
    # the fresh start is not the trained model: compared by weights, since on test-written faces (no ../shared)
    # one epoch leaves the calibrated probabilities all near 1/7 either way
    same = [np.allclose(a, b, atol=1e-6) for a, b in zip(fresh.model.get_weights(), first.model.get_weights(),
                                                          strict=True)]
    assert not all(same)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(warm.model.get_weights(), first.model.get_weights(),
                                                           strict=True))
    wider = settings_factory("train.epochs=1", "train.width=24", f'train.init_from="{first.model_path}"')
    with pytest.raises(ValueError, match="init_from"):
        train.train(wider, splits, tmp_path / "d")


def test_an_ensemble_averages_its_members_and_loads_safely(settings_factory, tmp_path):
    """train.model=ensemble assembles trained members (no training): its answer is the mean of theirs (each
    averaged over the mirror image once, flip-averaged members unwrapped), it reloads in safe mode and
    TFLite agrees with Keras."""
    x, y = _real_subset()
    splits = {"train": (x, y), "val": (x, y)}
    common = ("train.epochs=1", "train.batch_size=16", "train.width=16")
    a = train.train(settings_factory(*common), splits, tmp_path / "a")  # flip-averaged, the default
    b = train.train(settings_factory(*common, "train.seed=7", "train.flip_average=false"), splits, tmp_path / "b")
    members = f'train.members=["{a.model_path}", "{b.model_path}"]'
    # batch-norm statistics as the members were saved, so the answer is exactly the mean of theirs
    result = train.train(settings_factory("train.model=ensemble", members, "train.bn_refresh_faces=0"), splits,
                         tmp_path / "e")
    assert result.epochs_run == 0 and result.extra["members"] == [str(a.model_path), str(b.model_path)]
    faces = x[:32]
    raw = [models.with_flip_average(models.unwrap(m.model)).predict(faces, verbose=0) for m in (a, b)]
    saved = models.load(str(result.model_path))
    assert models.unwrap(saved).name == "ensemble"  # members unwrapped, the whole flipped and calibrated once
    want = calibrate.tempered((raw[0] + raw[1]) / 2, models.temperature_of(saved))
    assert np.allclose(saved.predict(faces, verbose=0), want, atol=1e-5)
    assert np.allclose(Classifier.from_keras(saved).predict(faces), want, atol=1e-4)
    # an ensemble as a member gives its networks: [e, a] averages a, b and a, each a third
    nested = train.train(settings_factory("train.model=ensemble", f'train.members=["{result.model_path}", '
                                          f'"{a.model_path}"]', "train.bn_refresh_faces=0"), splits, tmp_path / "n")
    loaded = models.load(str(nested.model_path))
    assert len(models.ensemble_members(loaded)) == 3
    want = calibrate.tempered((2 * raw[0] + raw[1]) / 3, models.temperature_of(loaded))
    assert np.allclose(loaded.predict(faces, verbose=0), want, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        train.train(settings_factory("train.model=ensemble", f'train.members=["{a.model_path}"]'), splits,
                    tmp_path / "f")
    with pytest.raises(ValueError, match="not found"):
        train.train(settings_factory("train.model=ensemble", f'train.members=["{a.model_path}", "nope.keras"]'),
                    splits, tmp_path / "g")


def test_cosine_schedule_decays_to_a_hundredth(settings_factory, tmp_path):
    """train.lr_schedule=cosine: the rate falls from learning_rate to 1/100 of it over the epochs, whatever
    validation does (plateau, the default, would keep 1e-3 over three short epochs)."""
    x, y = _real_subset(4)
    common = ("train.epochs=3", "train.batch_size=16", "train.width=16", "train.learning_rate=0.001",
              "train.early_stopping_patience=10")
    cosine = train.train(settings_factory(*common, "train.lr_schedule=cosine"), {"train": (x, y), "val": (x, y)},
                         tmp_path / "a")
    assert np.allclose(cosine.history["learning_rate"], [1e-3, 5.05e-4, 1e-5], rtol=1e-4)
    assert train.cosine_rate(0, 40, 1e-3) > train.cosine_rate(20, 40, 1e-3) > train.cosine_rate(39, 40, 1e-3)
    with pytest.raises(ValueError):
        settings_factory("train.lr_schedule=step")


def test_sgd_with_nesterov_momentum_and_weight_decay(settings_factory, tmp_path):
    """train.optimizer=sgd trains with SGD, Nesterov momentum and the configured decay (the checkpoint a resume
    starts from carries them); the default stays Adam without decay; a decay shrinks the weights it trains."""
    x, y = _real_subset(4)
    common = ("train.epochs=2", "train.batch_size=16", "train.width=16", "train.learning_rate=0.01",
              "train.early_stopping_patience=10", "train.lr_schedule=cosine", "train.bn_refresh_faces=0")
    splits = {"train": (x, y), "val": (x, y)}
    sgd = settings_factory(*common, "train.optimizer=sgd", "train.weight_decay=0.0001")
    train.train(sgd, splits, tmp_path / "sgd")
    config = keras.models.load_model(tmp_path / "sgd" / "checkpoint_train.keras").optimizer.get_config()
    assert config["name"].lower() == "sgd" and config["nesterov"] and config["momentum"] == pytest.approx(0.9)
    assert config["weight_decay"] == pytest.approx(1e-4)
    adam = train.make_optimizer(settings_factory().train, 1e-3)
    assert isinstance(adam, keras.optimizers.Adam) and adam.weight_decay is None

    # decay alone (no gradient: the loss ignores the weights) shrinks a weight by lr * decay a step
    weight = keras.Variable(np.ones(3, np.float32))
    strong = train.make_optimizer(settings_factory("train.optimizer=sgd", "train.weight_decay=0.5").train, 0.1)
    strong.apply_gradients([(np.zeros(3, np.float32), weight)])
    assert np.allclose(weight.numpy(), 1 - 0.1 * 0.5)
    with pytest.raises(ValueError):
        settings_factory("train.optimizer=rmsprop")


def test_mixed_precision_trains_in_bfloat16_and_saves_a_float32_model(settings_factory, tmp_path):
    """train.precision=mixed_bfloat16: the network trains computing in bfloat16 (its weights float32, its output
    float32), and every saved form computes in float32 again: the served model, and the training checkpoint
    once loaded; their answers are the same network's in float32; the global policy is left as it was."""
    try:
        train.check_precision("mixed_bfloat16")
    except ValueError as e:
        pytest.skip(f"this CPU has no bfloat16 convolutions (the refusal has its own test): {e}")
    x, y = _real_subset(4)
    s = settings_factory("train.epochs=2", "train.batch_size=16", "train.width=16", "train.precision=mixed_bfloat16",
                         "train.bn_refresh_faces=0")
    built = models.build("compact", width=16, precision="mixed_bfloat16")
    assert built.get_layer("block1_sep1").compute_dtype == "bfloat16"
    assert built.get_layer("block1_sep1").variable_dtype == "float32"
    assert built.get_layer("emotion").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"

    result = train.train(s, {"train": (x, y), "val": (x, y)}, tmp_path / "run")
    assert np.isfinite(result.history["loss"]).all()
    checkpoint = keras.saving.load_model(tmp_path / "run" / "best.keras", compile=False)
    assert checkpoint.get_layer("block2_sep2").compute_dtype == "bfloat16"  # as it trained
    for served in (result.model, models.load(str(result.model_path)), models.load(str(tmp_path / "run" / "best.keras"))):
        network = models.unwrap(served)
        assert {layer.compute_dtype for layer in network.layers} - {"uint8"} == {"float32"}
    twin = models.build("compact", width=16, mean=result.extra["mean"], std=result.extra["std"])
    twin.set_weights(checkpoint.get_weights())
    loaded = models.load(str(tmp_path / "run" / "best.keras"))
    assert np.allclose(loaded.predict(x, verbose=0), twin.predict(x, verbose=0), atol=1e-6)
    half = checkpoint.predict(x, verbose=0)  # bfloat16 arithmetic: close, not equal
    assert 0 < np.abs(half - twin.predict(x, verbose=0)).max() < 0.05
    assert np.allclose(Classifier.from_keras(result.model).predict(x), result.model.predict(x, verbose=0), atol=1e-4)
    with pytest.raises(ValueError, match="precision"):
        models.build("compact", precision="bfloat16")
    with pytest.raises(ValueError):
        settings_factory("train.precision=float64")


def test_a_precision_the_cpu_cannot_compute_is_refused_before_training(tmp_path):
    """On a CPU without bfloat16 units (an AVX2 one; oneDNN told to use AVX2 alone stands in for it here),
    the check `fer train` makes first refuses train.precision=mixed_bfloat16 with an error that names the
    setting and its way out, not TensorFlow's at the first batch; float32 passes the same check."""
    import os
    import subprocess
    import sys

    code = ("from fer_core import train; train.check_precision('float32'); train.check_precision('mixed_bfloat16')")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "train.precision=mixed_bfloat16" in done.stderr and "use train.precision=float32" in done.stderr
