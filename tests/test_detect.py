"""Haar detection taken apart (fer_core.detect.LocalHaar) and the worker's `track` face finder.

The claim under test: scanning a region level by level gives exactly the raw hits that OpenCV's full-frame
detectMultiScale has there, so `track` mode returns the reference's boxes wherever it looks.
"""

import cv2
import matplotlib.cbook
import numpy as np
import pytest

from bench.cut_video import write_cut_video
from fer_core import crop, detect
from serving.pipeline import FaceFinder
from tests import helpers


def _photo_frame(width: int = 420, height: int = 300, x: int = 120, y: int = 20) -> np.ndarray:
    """A gray frame with a real face photograph (it ships with matplotlib) pasted at (x, y)."""
    photo = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_GRAYSCALE)
    photo = cv2.resize(photo, (200, 260), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width), 90, np.uint8)
    frame[y:y + photo.shape[0], x:x + photo.shape[1]] = photo[: height - y, : width - x]
    return frame


def _video_frames(every: int = 1) -> list[np.ndarray]:
    helpers.require_shared(helpers.VIDEO)
    cap = cv2.VideoCapture(str(helpers.VIDEO))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            return frames[::every]
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))


def _raw_by_levels(local: detect.LocalHaar, gray: np.ndarray) -> list[tuple]:
    h, w = gray.shape
    hits = []
    for f in detect.pyramid_factors(w, h, local.detector.min_size, local.detector.scale_factor):
        hits += local.scan_level(gray, f, [(0, 0, round(w / f), round(h / f))])
    return sorted(map(tuple, hits))


def _frames_for_exactness() -> list[np.ndarray]:
    frames = [_photo_frame(), _photo_frame(x=30, y=40)]
    if helpers.shared_missing(helpers.VIDEO) is None:
        frames += _video_frames(every=23)
    return frames


def test_level_by_level_scan_is_exactly_the_full_frame_scan():
    """Every raw window hit of detectMultiScale, no more and no fewer; grouped, the same boxes."""
    local = detect.LocalHaar(detect.HaarDetector(1.1, 5, 48, 0))
    for gray in _frames_for_exactness():
        full = local.raw(gray)
        assert len(full) > 5
        assert _raw_by_levels(local, gray) == sorted(map(tuple, full.tolist()))
        reference = local.detector.detect(gray)
        assert sorted(map(tuple, local.group(full).tolist())) == sorted(map(tuple, reference.tolist()))


def test_the_cheap_half_resolution_scan_points_at_every_reference_face():
    """`seeds` only says where to scan exactly; it must not miss a face the reference finds."""
    local = detect.LocalHaar(detect.HaarDetector(1.1, 5, 48, 0))
    faces = 0
    for gray in _frames_for_exactness():
        reference = local.detector.detect(gray)
        seeds = local.seeds(gray)
        faces += len(reference)
        if len(reference):
            assert (detect.iou(reference, seeds).max(axis=1) >= 0.3).all()
    assert faces >= 2  # the two photograph frames' faces at least (the video's too, where it is at hand)


def test_a_region_scan_finds_only_the_full_frame_hits_and_the_same_face():
    local = detect.LocalHaar(detect.HaarDetector(1.1, 5, 48, 0))
    gray = _photo_frame()
    full = local.raw(gray)
    box = local.detector.detect(gray)[0]
    plan = local.plan(gray.shape, box[None], ratio=1.3, pad=0.15, motion=6, inner=True)
    near = sorted(hit for f, regions in plan for hit in local.scan_level(gray, f, regions))
    assert near and set(near) <= set(map(tuple, full.tolist()))
    grouped = local.group(np.asarray(near))  # the hits of nearby sizes only: the same face, averaged over fewer
    assert len(grouped) == 1 and detect.iou(grouped, box[None])[0, 0] > 0.9


@pytest.mark.parametrize("hold", [False, True])
def test_track_mode_finds_new_faces_and_lets_go_of_gone_ones(hold):
    """A face appears after 10 empty frames (found by the periodic full scan) and leaves at frame 40.

    Cuts are not looked for here (a face pasted into an empty frame is one, found at once: the test below).
    Scanned frames give the reference's box; with `hold`, a steady face keeps last frame's box on every other
    frame, never two frames running.
    """
    empty = np.full((300, 420), 90, np.uint8)
    frames = [empty] * 10 + [_photo_frame(x=100 + i) for i in range(30)] + [empty] * 10
    finder = FaceFinder("track", scan_every=4, hold=hold, cut_change=float("inf"))
    found = [finder.find(f) for f in frames]
    finder.close()
    assert not any(len(b) for b in found[:10])
    first = next(i for i, b in enumerate(found) if len(b))
    assert 10 < first <= 10 + 2 * 4  # seen by a scan, joined when it is done (by the next scan at the latest)
    reference = detect.HaarDetector(1.1, 5, 48, 0)
    exact = [detect.iou(reference.detect(frames[i]), found[i]).max() > 0.9 for i in range(first, 40)]
    if hold:
        assert all(a or b for a, b in zip(exact, exact[1:], strict=False))  # never two inexact frames in a row
        held = [i for i in range(first + 1, 40) if (found[i] == found[i - 1]).all()]
        assert 8 <= len(held) <= 15  # about every other frame of the 29 after the first
        assert all(detect.iou(reference.detect(frames[i - 1]), found[i]).max() > 0.9 for i in held)
    else:
        assert all(exact)
    assert not any(len(b) for b in found[42:])


def _jump(**options) -> tuple[list[np.ndarray], list[np.ndarray], FaceFinder]:
    """A face that jumps 200 px at frame 20 (a cut) through a `track` finder that would not scan the whole frame
    again before frame 48."""
    frames = [_photo_frame(x=10 + i) for i in range(20)] + [_photo_frame(x=210 - i, y=40) for i in range(30)]
    finder = FaceFinder("track", scan_every=48, **options)
    found = []
    for gray in frames:
        found.append(finder.find(gray))
    finder.close()
    return frames, found, finder


def test_track_mode_finds_a_face_on_the_frame_of_a_cut():
    """The picture changes at once: everything tracked is dropped (no box held over from the last shot) and the
    cut's own frame is scanned as a first frame is, so the face is there on every frame, in its new place."""
    frames, found, finder = _jump()
    reference = detect.HaarDetector(1.1, 5, 48, 0)
    assert all(len(boxes) == 1 for boxes in found)
    for i in (0, 20):  # a first frame's scan: the levels around the cheap scan's seeds, near the reference's box
        assert detect.iou(reference.detect(frames[i]), found[i])[0, 0] > 0.8
    assert finder.scans["cut"] == 1


@pytest.mark.integration
def test_track_mode_keeps_the_faces_of_a_video_with_cuts(tmp_path):
    """The real video cut every 20 frames between two framings (bench/cut_video.py): track mode keeps nearly
    every reference face (it kept 18% when it waited for its periodic scan), missing chiefly the boxes Haar
    nests inside a face, which it looks for every sixth frame."""
    helpers.require_shared(helpers.VIDEO)
    video = write_cut_video(helpers.VIDEO, tmp_path / "cuts.avi", every=20, shift=-220)
    assert video["cuts"] == 5
    cap = cv2.VideoCapture(video["out"])
    reference, finder, kept, total = FaceFinder("full"), FaceFinder("track"), 0, 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        ref, mine = reference.find(gray), finder.find(gray)
        total += len(ref)
        if len(ref) and len(mine):
            kept += int((detect.iou(ref, mine).max(axis=1) >= 0.5).sum())
    finder.close()
    assert finder.scans["cut"] == 5
    assert total > 100 and kept / total >= 0.85


@pytest.mark.integration
def test_track_mode_keeps_the_reference_faces_of_the_real_video():
    """Track mode against full Haar on every frame of the real video: the share of reference boxes it also
    returns (IoU >= 0.5)."""
    frames = _video_frames()
    reference = FaceFinder("full")
    finder = FaceFinder("track")
    kept = total = 0
    for gray in frames:
        ref, mine = reference.find(gray), finder.find(gray)
        total += len(ref)
        if len(ref) and len(mine):
            kept += int((detect.iou(ref, mine).max(axis=1) >= 0.5).sum())
    finder.close()
    assert total > 100 and kept / total >= 0.95


def test_profile_boxes_are_added_only_where_no_face_is():
    frontal = np.array([[10, 10, 50, 50]])
    overlapping = np.array([[14, 12, 50, 50]])  # the same face seen by the profile cascade
    elsewhere = np.array([[200, 40, 60, 60], [205, 42, 60, 60]])  # a turned face, found twice
    boxes = detect.add_unseen(frontal, overlapping, elsewhere)
    assert boxes.tolist() == [[10, 10, 50, 50], [200, 40, 60, 60]]
    assert detect.add_unseen(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)


def test_profile_cascade_keeps_every_frontal_face_and_finds_turned_ones():
    """On real ExpW photographs: with the profile cascade, every frontal box is still there, and some faces
    that only the profile cascade sees (looking either way) are added."""
    helpers.require_shared(helpers.EXPW_ROOT)
    frontal, both = detect.preset("still"), detect.preset("still")
    assert both.profile  # the still preset scans for profiles
    frontal.profile = False
    frontal.rotations = both.rotations = ()  # the turned scans are tested on their own below
    added = 0
    for path in sorted((helpers.EXPW_ROOT / "origin").glob("*.jpg"))[:40]:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        a, b = frontal.detect(gray), both.detect(gray)
        assert {tuple(x) for x in a} <= {tuple(x) for x in b}, path.name
        added += len(b) - len(a)
    assert added > 0


def test_the_command_lines_face_detectors_are_the_ones_detect_knows():
    from fer_cli.commands import FACE_DETECTORS

    assert set(FACE_DETECTORS) == {*detect.PRESETS, *detect.DETECTORS}
    assert FACE_DETECTORS[0] == detect.STILL_DETECTOR


def test_turned_scans_find_a_tilted_face_where_it_is():
    """A real face photograph tilted by 30 degrees: the upright cascade misses it; scanning the frame turned
    back finds it, and the box it adds is centred on the face in the unturned frame."""
    frame = _photo_frame(width=460, height=420, x=130, y=80)
    upright = detect.HaarDetector(min_neighbors=5, min_size=60)
    (face,) = upright.detect(frame)
    centre = face[:2] + face[2:] / 2
    tilt = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 30, 1.0)  # about the face: it stays put
    tilted = cv2.warpAffine(frame, tilt, frame.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
    assert len(upright.detect(tilted)) == 0
    turning = detect.HaarDetector(min_neighbors=5, min_size=60, rotations=(-30.0,))
    boxes = turning.detect(tilted)
    assert len(boxes) == 1
    found = boxes[0][:2] + boxes[0][2:] / 2
    assert np.abs(found - centre).max() <= 0.15 * face[2]
    assert 0.7 <= boxes[0][2] / face[2] <= 1.4


class _Counting:
    """A real classifier that counts the faces it is asked about."""

    def __init__(self, classifier):
        self.classifier, self.faces = classifier, 0

    def predict(self, faces):
        self.faces += len(faces)
        return self.classifier.predict(faces)


def test_a_held_face_keeps_last_frames_answer_until_the_model_changes(tiny_model_path):
    """With `hold`, a steady face is neither scanned nor classified every other frame: its box and its emotions
    are last frame's (the face moves a pixel a frame, so a fresh answer would differ). The classifier is asked
    about the other faces only; after a model swap, every face is classified anew."""
    from types import SimpleNamespace

    from fer_core.classify import Classifier
    from serving.pipeline import FramePipeline

    real = Classifier.from_file(tiny_model_path)
    holder = SimpleNamespace(classifier=_Counting(real))
    pipeline = FramePipeline(FaceFinder("track", scan_every=4, hold=True, cut_change=float("inf")), holder)
    frames = [cv2.cvtColor(_photo_frame(x=100 + i), cv2.COLOR_GRAY2BGR) for i in range(24)]
    results, held = [], []
    for i, frame in enumerate(frames[:20]):
        results.append(pipeline.process(i, i / 25, frame))
        held.append(pipeline.finder.held(len(results[-1].detections)))
    faces = sum(len(r.detections) for r in results)
    n_held = sum(int(h.sum()) for h in held)
    assert n_held >= 6 and pipeline.held_answers == n_held and holder.classifier.faces == faces - n_held
    for i in range(1, 20):
        now, before = results[i].detections, results[i - 1].detections
        for j in np.flatnonzero(held[i]):
            same = (before.boxes == now.boxes[j]).all(axis=1)
            assert same.any() and np.array_equal(now.probs[j], before.probs[same][0])
        fresh = ~held[i]
        if fresh.any():  # classified now: this frame's pixels, not last frame's answer
            gray = cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY)
            expected = real.predict(crop.crop_faces(gray, now.boxes[fresh], 0.10))
            assert np.allclose(now.probs[fresh], expected, atol=1e-6)
    held_after_swap = 0
    for i, frame in enumerate(frames[20:], start=20):  # a new model object before each frame: nothing held over
        holder.classifier = swapped = _Counting(real)
        result = pipeline.process(i, i / 25, frame)
        held_after_swap += int(pipeline.finder.held(len(result.detections)).sum())
        assert swapped.faces == len(result.detections) > 0
    assert held_after_swap >= 1  # the finder held a face on one of those frames, and it was classified anyway
    pipeline.finder.close()
