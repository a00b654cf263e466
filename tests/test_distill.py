"""Distillation (fer_core.distill, train.teacher): the student learns the teacher's answers, not only the labels."""

import numpy as np
import pytest

from fer_core import distill, models, train
from tests.test_models import _real_subset


def test_soft_targets_mix_the_label_and_the_teacher():
    labels = np.array([0, 3, 6])
    teacher = np.full((3, 7), 1 / 7, dtype=np.float32)
    mixed = distill.soft_targets(labels, teacher, 0.5)
    assert np.allclose(mixed.sum(1), 1.0)
    assert np.allclose(mixed[1], [1 / 14] * 3 + [0.5 + 1 / 14] + [1 / 14] * 3)
    assert np.allclose(distill.soft_targets(labels, teacher, 1.0), np.eye(7)[labels])
    assert np.allclose(distill.soft_targets(labels, teacher, 0.0), teacher)
    with pytest.raises(ValueError, match="distill_alpha"):
        distill.soft_targets(labels, teacher, 1.5)


@pytest.mark.slow
def test_a_student_learns_what_its_teacher_says(settings_factory, tmp_path):
    """A teacher trained on labels shifted by one emotion: a student given the true labels but taught by that
    teacher alone (alpha 0) answers with the teacher's shifted emotions. The run records how the teacher did
    on the faces it taught; an ensemble as train.init_from gives its first network."""
    x, y = _real_subset()
    shifted = (y + 1) % 7
    # each face five times an epoch, batches of 4: enough steps for BatchNorm's moving statistics to settle,
    # so that the trained networks answer in inference mode as they did in training
    repeat = 5
    common = ("train.epochs=6", "train.batch_size=4", "train.width=16", "augment.enabled=false",
              "train.calibrate=false", "train.flip_average=false", "train.learning_rate=0.003",
              "train.lr_schedule=cosine", "train.early_stopping_patience=1000")
    teacher = train.train(settings_factory(*common), {"train": (np.tile(x, (repeat, 1, 1)), np.tile(shifted, repeat)),
                                                      "val": (x, shifted)}, tmp_path / "teacher")
    says = teacher.model.predict(x, verbose=0).argmax(1)
    assert np.mean(says == shifted) > 0.8  # the teacher learned the shifted labels

    # validated against the teacher's answers: the checkpoint kept is the one closest to the teacher
    splits = {"train": (np.tile(x, (repeat, 1, 1)), np.tile(y, repeat)), "val": (x, says)}
    taught = train.train(settings_factory(*common, f'train.teacher="{teacher.model_path}"', "train.distill_alpha=0",
                                          "train.seed=3"), splits, tmp_path / "taught")
    taught_says = taught.model.predict(x, verbose=0).argmax(1)
    assert np.mean(taught_says == says) > 0.7 and np.mean(taught_says == y) < 0.3
    summary = taught.extra["distillation"]
    assert summary["teacher_train_accuracy"] == pytest.approx(np.mean(says == y), abs=1e-6)
    assert 1 / 7 < summary["teacher_train_confidence"] <= 1.0

    # statistics as trained (no batch-norm refresh in either run), so the warm start is exactly the first network
    both = train.train(settings_factory("train.model=ensemble",
                                        f'train.members=["{taught.model_path}", "{teacher.model_path}"]',
                                        "train.calibrate=false", "train.flip_average=false",
                                        "train.bn_refresh_faces=0"), splits, tmp_path / "e")
    warm = train.train(settings_factory(*common[1:], "train.epochs=0", f'train.init_from="{both.model_path}"',
                                        "train.bn_refresh_faces=0"), splits, tmp_path / "warm")
    assert all(np.allclose(a, b) for a, b in zip(warm.model.get_weights(), taught.model.get_weights(), strict=True))


def test_the_pipeline_trains_again_when_a_named_model_file_changes(settings_factory, tmp_path):
    """The pipeline reuses a finished training with the same key: a teacher, warm start or member retrained at
    the same path must change the key, and an unchanged one must not."""
    from flows.retrain import train_key

    teacher, start = tmp_path / "teacher.keras", tmp_path / "start.keras"
    teacher.write_bytes(b"first teacher")
    start.write_bytes(b"a warm start")
    settings = settings_factory(f'train.teacher="{teacher}"', f'train.init_from="{start}"')
    key = train_key(settings, "ds-1")
    assert train_key(settings, "ds-1") == key and train_key(settings, "ds-2") != key
    teacher.write_bytes(b"retrained teacher")
    assert train_key(settings, "ds-1") != key
    teacher.write_bytes(b"first teacher")
    assert train_key(settings, "ds-1") == key
    start.write_bytes(b"another warm start")
    assert train_key(settings, "ds-1") != key


def test_the_teachers_answers_are_kept_for_a_resumed_run(tmp_path):
    """Asked once per teacher file and faces: the cached answers come back for the same pair, fresh ones for
    other faces or a changed teacher."""
    teacher = tmp_path / "teacher.keras"
    models.build("compact", width=16).save(teacher)
    faces = np.random.default_rng(0).integers(0, 256, (20, 48, 48), dtype=np.uint8)
    cache = tmp_path / "run" / "teacher_answers.npz"
    cache.parent.mkdir()
    first = distill.cached_teacher_probabilities(str(teacher), faces, cache)
    assert first.shape == (20, 7) and np.allclose(first.sum(1), 1, atol=1e-5) and cache.is_file()
    with np.load(cache) as saved:
        key = str(saved["key"])
    marked = np.full((20, 7), 1 / 7, dtype=np.float32)  # stands for answers kept from before a stop
    np.savez(cache, key=key, probs=marked)
    assert np.array_equal(distill.cached_teacher_probabilities(str(teacher), faces, cache), marked)
    others = faces[::-1].copy()
    assert np.allclose(distill.cached_teacher_probabilities(str(teacher), others, cache),
                       distill.teacher_probabilities(models.load(str(teacher)), others), atol=1e-6)
    np.savez(cache, key=key, probs=marked)
    models.build("compact", width=16).save(teacher)  # another network at the same path
    again = distill.cached_teacher_probabilities(str(teacher), faces, cache)
    assert np.allclose(again, distill.teacher_probabilities(models.load(str(teacher)), faces), atol=1e-6)
    assert not np.allclose(again, marked)
