"""Face ids across frames (serving.tracks): the same face keeps its id while it is followed, a new face or one
lost for too long gets a new one, and the per-face summary an analysis writes."""

import numpy as np

from serving.tracks import FaceStats, FaceTracks


def test_two_faces_passing_each_other_keep_their_ids_whatever_the_box_order():
    """Face A walks right, face B left, their boxes overlapping as they pass; boxes come in a shuffled order."""
    rng = np.random.default_rng(0)
    tracks = FaceTracks()
    seen = {"a": set(), "b": set()}
    for t in range(30):
        a, b = [40 + 6 * t, 50, 80, 80], [260 - 6 * t, 60, 80, 80]
        order = rng.permutation(2)
        boxes = np.array([a, b])[order]
        ids = tracks.update(boxes)
        seen["a"].add(int(ids[list(order).index(0)]))
        seen["b"].add(int(ids[list(order).index(1)]))
    assert seen == {"a": {0}, "b": {1}} and tracks.next_id == 2


def test_a_face_unseen_for_a_while_keeps_its_id_and_one_gone_too_long_or_far_gets_a_new_one():
    tracks = FaceTracks(max_missed=3)
    face = np.array([[100, 100, 60, 60]])
    none = np.zeros((0, 4))
    assert tracks.update(face).tolist() == [0]
    for _ in range(3):  # missed by the detector for 3 frames: still waited for
        assert tracks.update(none).tolist() == []
    assert tracks.update(face + 4).tolist() == [0]
    for _ in range(4):  # gone for 4 frames: let go
        tracks.update(none)
    assert tracks.update(face).tolist() == [1]
    assert tracks.update(face + [300, 0, 0, 0]).tolist() == [2]  # a jump (a cut): no overlap, a new face
    assert tracks.update(np.array([[100, 100, 60, 60], [400, 100, 60, 60]])).tolist() == [1, 2]


def test_face_stats_summarise_each_face_followed_long_enough():
    stats = FaceStats(3)
    for t in range(10):
        ids = [7, 3] if t < 2 else [7]
        probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])[: len(ids)]
        stats.add(t * 0.5, ids, probs)
    assert len(stats) == 2
    everyone = stats.summary(["a", "b", "c"])
    assert [f["face"] for f in everyone] == [7, 3]  # the longest followed first
    assert everyone[0] == {"face": 7, "first_s": 0.0, "last_s": 4.5, "frames": 10, "dominant": "a",
                           "mean_probability": {"a": 0.8, "b": 0.1, "c": 0.1}}
    assert everyone[1]["dominant"] == "c" and everyone[1]["last_s"] == 0.5
    assert [f["face"] for f in stats.summary(["a", "b", "c"], min_frames=3)] == [7]
