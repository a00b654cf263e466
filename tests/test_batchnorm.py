"""Batch-norm statistics re-estimated on clean faces (fer_core.batchnorm) and `fer train` applying it."""

from __future__ import annotations

import keras
import numpy as np

from fer_core import batchnorm, card, models, train
from tests.test_models import _real_subset


def _norm_model(frozen: bool = False) -> keras.Model:
    """uint8 faces -> float -> one batch-norm layer over the 48 columns (its statistics are easy to compute)."""
    inputs = keras.Input(shape=(48, 48), dtype="uint8")
    x = keras.layers.Rescaling(1.0)(inputs)
    norm = keras.layers.BatchNormalization(axis=-1, name="norm")
    norm.trainable = not frozen
    return keras.Model(inputs, norm(x))


def test_refresh_sets_the_statistics_of_the_clean_faces():
    """The moving mean and variance become the faces' own (equal batches: the mean of the batches' figures);
    with mirrors, of the faces and their mirror images; the layer's momentum comes back. A frozen layer (a
    pretrained base's) keeps its statistics: the layers after it learned against them."""
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8)
    faces[:, :, :24] //= 2  # the left half darker, so a mirror changes each column's statistics
    frozen = _norm_model(frozen=True)
    assert batchnorm.refresh(frozen, faces) == 0
    assert np.allclose(frozen.get_layer("norm").moving_mean.numpy(), 0.0)  # Keras's initial statistics
    model = _norm_model()
    norm = model.get_layer("norm")
    assert batchnorm.refresh(model, faces, mirrors=False, batch=64) == 1
    pixels = faces.astype(np.float64).reshape(-1, 48)
    assert np.allclose(norm.moving_mean.numpy(), pixels.mean(axis=0), rtol=1e-5)
    assert np.allclose(norm.moving_variance.numpy(), pixels.var(axis=0), rtol=1e-4)
    assert norm.momentum == 0.99
    batchnorm.refresh(model, faces, mirrors=True, batch=32)  # 4 equal batches of faces and mirrors
    both = np.concatenate([faces, faces[:, :, ::-1]]).astype(np.float64).reshape(-1, 48)
    assert np.allclose(norm.moving_mean.numpy(), both.mean(axis=0), rtol=1e-5)
    assert np.allclose(norm.moving_mean.numpy(), norm.moving_mean.numpy()[::-1], rtol=1e-5)  # symmetric now


def test_every_member_of_an_ensemble_is_refreshed():
    """Nested networks (ensemble members inside a flip wrapper) are found and refreshed, each one."""
    nets = [models.build("compact", width=16) for _ in range(2)]
    wrapped = models.with_flip_average(models.ensemble(nets))
    layers = batchnorm.layers_of(wrapped)
    assert len(layers) == 2 * len(batchnorm.layers_of(nets[0])) > 0
    before = [layer.moving_mean.numpy().copy() for layer in layers]
    faces = np.random.default_rng(1).integers(0, 256, (40, 48, 48), dtype=np.uint8)
    assert batchnorm.refresh(models.unwrap(wrapped), faces, batch=16) == len(layers)
    assert all(not np.allclose(b, layer.moving_mean.numpy()) for b, layer in zip(before, layers, strict=True))


def test_train_saves_the_network_with_statistics_of_clean_faces(settings_factory, tmp_path):
    """`fer train` refreshes before saving: refreshing the saved network again on the same sample changes
    nothing, while a network saved with `train.bn_refresh_faces=0` keeps its training-time statistics, which
    a refresh does change (augmented batches, weights moving: not the clean faces' statistics)."""
    x, y = _real_subset()
    splits = {"train": (x, y), "val": (x, y)}
    common = ("train.epochs=2", "train.batch_size=16", "train.width=16")

    def refreshed_again_differs(result) -> bool:
        net = models.unwrap(models.load(str(result.model_path)))
        before = [layer.moving_mean.numpy().copy() for layer in batchnorm.layers_of(net)]
        pick = np.sort(np.random.default_rng(42).permutation(len(x))[:16384])  # the sample train.finish takes
        batchnorm.refresh(net, x[pick], mirrors=True, seed=42)
        return not all(np.allclose(b, layer.moving_mean.numpy(), rtol=1e-4, atol=1e-4)
                       for b, layer in zip(before, batchnorm.layers_of(net), strict=True))

    refreshed = train.train(settings_factory(*common), splits, tmp_path / "a")
    assert not refreshed_again_differs(refreshed)
    layers = len(batchnorm.layers_of(models.unwrap(refreshed.model)))
    assert refreshed.extra["bn_refresh"] == {"layers": layers, "faces": len(x), "mirrors": True}
    assert f"{layers} layers re-estimated on {len(x)} clean" in card.bn_refresh_line(refreshed.extra["bn_refresh"])
    kept = train.train(settings_factory(*common, "train.bn_refresh_faces=0"), splits, tmp_path / "b")
    assert refreshed_again_differs(kept)
    assert kept.extra["bn_refresh"] == {}
