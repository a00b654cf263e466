"""The one crop function: training (ExpW boxes), fer predict, the evaluation and the worker crop alike."""

import cv2
import numpy as np

from fer_core import crop, evaluate
from fer_core.data import expw


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (120, 160), dtype=np.uint8)


def test_margin_grows_the_box_on_every_side_and_clips_to_the_image():
    assert crop.grow((40, 30, 50, 40), 0.1, 160, 120) == (35, 26, 95, 74)
    assert crop.grow((0, 0, 50, 40), 0.2, 160, 120) == (0, 0, 60, 48)  # clipped at the top-left corner
    assert crop.grow((150, 110, 50, 40), 0.0, 160, 120) == (150, 110, 160, 120)


def test_crop_is_the_grown_region_resized_with_inter_area():
    gray = _image()
    faces = crop.crop_faces(gray, np.array([[40, 30, 50, 40], [40, 30, 50, 40]]), 0.1)
    expected = cv2.resize(gray[26:74, 35:95], (48, 48), interpolation=cv2.INTER_AREA)
    assert faces.shape == (2, 48, 48) and faces.dtype == np.uint8 and (faces[0] == expected).all()
    # a box outside the image gives a black face, not an error (the worker keeps its batch shape)
    outside = crop.crop_faces(gray, np.array([[500, 500, 20, 20]]), 0.1)
    assert (outside == 0).all() and crop.crop_face(gray, (10, 10, 0, 5), 0.1) is None


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
