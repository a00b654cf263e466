"""The one crop function: training (ExpW boxes), fer predict, the evaluation and the worker crop alike."""

import cv2
import numpy as np
import pytest

from fer_core import crop, evaluate
from fer_core.data import expw


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (120, 160), dtype=np.uint8)


def test_margin_grows_the_box_on_every_side_even_past_the_image():
    assert crop.grow((40, 30, 50, 40), 0.1) == (35, 26, 95, 74)
    assert crop.grow((0, 0, 50, 40), 0.2) == (-10, -8, 60, 48)  # not clipped: the crop pads instead


def _extent(face: np.ndarray) -> float:
    """Height over width of the bright ring in a crop."""
    rows, cols = np.flatnonzero((face > 120).any(axis=1)), np.flatnonzero((face > 120).any(axis=0))
    return (rows.max() - rows.min() + 1) / (cols.max() - cols.min() + 1)


def test_a_face_the_frame_cuts_keeps_its_shape():
    """A ring near the top of the image, its box grown past the edge: clipping the box and resizing squashes
    the ring into an ellipse; the crop replicates the image's edge instead (the padded whole image's crop)."""
    gray = np.full((120, 160), 40, np.uint8)
    cv2.circle(gray, (30, 26), 16, 220, 2)
    box = (10, 0, 40, 40)  # grown by 20%: (2, -8, 58, 48), eight rows above the image
    face = crop.crop_face(gray, box, 0.2)
    padded = cv2.copyMakeBorder(gray, 8, 0, 0, 0, cv2.BORDER_REPLICATE)
    assert (face == cv2.resize(padded[0:56, 2:58], (48, 48), interpolation=cv2.INTER_AREA)).all()
    assert abs(_extent(face) - 1) < 0.08  # round stays round
    squashed = cv2.resize(gray[0:48, 2:58], (48, 48), interpolation=cv2.INTER_AREA)  # the crop before
    assert _extent(squashed) > 1.12


def test_crop_is_the_grown_region_resized_with_inter_area():
    gray = _image()
    faces = crop.crop_faces(gray, np.array([[40, 30, 50, 40], [40, 30, 50, 40]]), 0.1)
    expected = cv2.resize(gray[26:74, 35:95], (48, 48), interpolation=cv2.INTER_AREA)
    assert faces.shape == (2, 48, 48) and faces.dtype == np.uint8 and (faces[0] == expected).all()
    # a box outside the image gives a black face, not an error (the worker keeps its batch shape)
    outside = crop.crop_faces(gray, np.array([[500, 500, 20, 20]]), 0.1)
    assert (outside == 0).all() and crop.crop_face(gray, (10, 10, 0, 5), 0.1) is None


def test_a_face_seen_smaller_is_what_the_crop_makes_of_a_small_face_in_a_frame():
    """`as_seen_at` (the pipeline's `<set>_at_<N>px` sets, `fer evaluate --face-size`) is exactly the crop of the
    same face drawn N pixels wide in a frame, and it loses the more of the face, the smaller N is."""
    face = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (48, 48), dtype=np.uint8), (3, 3), 0)
    lost = {48: 0.0}
    for side in (40, 24, 12):
        frame = np.full((120, 160), 40, np.uint8)
        frame[30:30 + side, 50:50 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        seen = crop.as_seen_at(face[None], side)
        assert seen.shape == (1, 48, 48) and seen.dtype == np.uint8
        assert (seen[0] == crop.crop_face(frame, (50, 30, side, side), 0.0)).all(), side
        lost[side] = float(np.abs(seen[0].astype(np.float32) - face).mean())
    assert lost[48] < lost[40] < lost[24] < lost[12]
    assert (crop.as_seen_at(face[None], 48)[0] == face).all()
    for bad in (7, 49):
        with pytest.raises(ValueError, match="face side"):
            crop.as_seen_at(face[None], bad)


def test_training_crops_expw_boxes_with_the_same_function():
    gray = _image()
    box = expw.Box("a.jpg", 0, top=30, left=40, right=90, bottom=70, confidence=50.0, label=3, line=1)
    assert (expw.crop_face(gray, box, 0.1) == crop.crop_faces(gray, np.array([[40, 30, 50, 40]]), 0.1)[0]).all()


def test_each_detector_box_matches_one_labelled_face_best_overlap_first():
    labelled = np.array([[0, 0, 100, 100], [10, 0, 100, 100], [300, 300, 50, 50]])
    predicted = np.array([[12, 0, 100, 100], [0, 2, 100, 100]])
    # both predicted boxes overlap both faces; face 1 overlaps box 0 best (IoU 0.96), face 0 takes box 1
    assert evaluate.match_boxes(labelled, predicted, 0.5) == [1, 0, None]
    assert evaluate.match_boxes(labelled, predicted[:1], 0.5) == [None, 0, None]
    assert evaluate.match_boxes(labelled, np.zeros((0, 4)), 0.5) == [None, None, None]
