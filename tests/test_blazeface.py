"""BlazeFace (`fer_core.blazeface`): the decoding around MediaPipe's model, and the model on real faces."""

from __future__ import annotations

import cv2
import matplotlib.cbook
import numpy as np
import pytest

from fer_core import blazeface, detect
from fer_core.blazeface import INPUT, BlazeFace
from tests import helpers


def _photo(color: bool = True) -> np.ndarray:
    path = str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return cv2.imread(path, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)


def test_anchors_are_the_centres_of_a_48_by_48_grid():
    a = blazeface.anchors()
    assert a.shape == (2304, 2)
    assert a[0] == pytest.approx([0.5 / 48, 0.5 / 48]) and a[1] == pytest.approx([1.5 / 48, 0.5 / 48])
    assert a[48] == pytest.approx([0.5 / 48, 1.5 / 48]) and a[-1] == pytest.approx([47.5 / 48, 47.5 / 48])


def test_decode_places_a_box_around_its_anchor_and_drops_low_scores():
    regressors = np.zeros((1, 2304, 16), np.float32)
    logits = np.full((1, 2304, 1), -10.0, np.float32)
    cell = 10 * 48 + 20  # anchor at x = 20.5/48, y = 10.5/48
    regressors[0, cell, :4] = [INPUT * 0.01, -INPUT * 0.02, INPUT * 0.2, INPUT * 0.1]  # dx, dy, w, h in pixels
    logits[0, cell, 0] = 2.0
    boxes, scores = blazeface.decode(regressors, logits, min_score=0.5)
    cx, cy = 20.5 / 48 + 0.01, 10.5 / 48 - 0.02
    assert boxes == pytest.approx(np.array([[cx - 0.1, cy - 0.05, cx + 0.1, cy + 0.05]]), abs=1e-6)
    assert scores == pytest.approx([1 / (1 + np.exp(-2.0))])


def test_weighted_nms_blends_overlapping_boxes_by_score_and_keeps_apart_ones():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [3.0, 3.0, 4.0, 4.0]])
    scores = np.array([0.6, 0.9, 0.7])
    kept, kept_scores = blazeface.weighted_nms(boxes, scores, threshold=0.3)
    assert kept_scores.tolist() == [0.9, 0.7]  # best first; the merged group keeps its best score
    blended_x0 = (0.1 * 0.9 + 0.0 * 0.6) / 1.5
    assert kept[0] == pytest.approx([blended_x0, 0.0, blended_x0 + 1.0, 1.0])
    assert kept[1] == pytest.approx([3.0, 3.0, 4.0, 4.0])
    empty, none = blazeface.weighted_nms(np.zeros((0, 4)), np.zeros(0))
    assert empty.shape == (0, 4) and none.shape == (0,)


def test_letterbox_maps_image_points_onto_the_input_and_back():
    image = np.zeros((100, 300, 3), np.uint8)
    image[40:60, 200:240] = 255
    tensor, scale, left, top = blazeface.letterbox(image)
    assert tensor.shape == (INPUT, INPUT, 3) and tensor.min() == -1.0 and tensor.max() == 1.0
    assert (scale, left, top) == (pytest.approx(INPUT / 300), 0, (INPUT - 64) // 2)
    ys, xs = np.nonzero(tensor[..., 0] > 0)
    back = (np.array([xs.min(), ys.min()]) - [left, top]) / scale
    assert back == pytest.approx([200, 40], abs=2)


def test_finds_the_one_face_of_a_portrait_where_haar_finds_it_in_colour_and_in_gray():
    haar = detect.preset("still").detect(_photo(color=False))
    assert len(haar) == 1
    for image in (_photo(), _photo(color=False)):
        boxes = BlazeFace().detect(image)
        assert len(boxes) == 1
        assert detect.iou(boxes, haar)[0, 0] > 0.5


def test_finds_no_face_in_a_blank_or_noise_image():
    rng = np.random.default_rng(0)
    assert len(BlazeFace().detect(np.full((240, 320, 3), 128, np.uint8))) == 0
    assert len(BlazeFace().detect(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))) == 0


def test_a_changed_model_file_is_refused(tmp_path, monkeypatch):
    doctored = tmp_path / "model.tflite"
    data = bytearray(blazeface.MODEL_FILE.read_bytes())
    data[-1] ^= 1
    doctored.write_bytes(bytes(data))
    monkeypatch.setattr(blazeface, "MODEL_FILE", doctored)
    blazeface.model_bytes.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="not the vendored BlazeFace model"):
            blazeface.model_bytes()
    finally:
        blazeface.model_bytes.cache_clear()


def test_combined_adds_the_second_detectors_boxes_only_where_no_box_is():
    class Fixed:
        def __init__(self, boxes):
            self.boxes = np.array(boxes, np.int32).reshape(-1, 4)

        def detect(self, image):
            return self.boxes

    first, second = Fixed([[10, 10, 50, 50]]), Fixed([[12, 12, 50, 50], [200, 10, 40, 40]])
    both = detect.Combined((first, second)).detect(np.zeros((10, 10), np.uint8))
    assert both.tolist() == [[10, 10, 50, 50], [200, 10, 40, 40]]
    assert isinstance(detect.preset("still+blazeface"), detect.Combined)
    with pytest.raises(ValueError, match="unknown detector"):
        detect.preset("blazeface+video")


def test_tiles_cover_the_image_and_their_boxes_return_to_image_coordinates():
    seen = []

    class OneBoxPerTile:
        def detect(self, image):
            seen.append(image.shape[:2])
            return np.array([[1, 2, 3, 4]], np.int32)

    boxes = detect.Tiled(OneBoxPerTile(), n=2, overlap=0.25).detect(np.zeros((100, 200, 3), np.uint8))
    assert seen == [(62, 125)] * 4  # half the image plus a quarter of that, each way
    assert boxes.tolist() == [[1, 2, 3, 4], [76, 2, 3, 4], [1, 40, 3, 4], [76, 40, 3, 4]]  # the last tiles end at the edge


def test_a_face_that_fills_the_picture_is_found_once_framed():
    photo = _photo()
    x, y, w, h = BlazeFace().detect(photo)[0]
    face = np.ascontiguousarray(photo[y:y + h, x:x + w])  # the picture is the face's own box
    assert len(BlazeFace().detect(face)) == 0
    framed = detect.Padded(BlazeFace()).detect(face)
    assert len(framed) == 1 and detect.iou(framed, [[0, 0, w, h]])[0, 0] > 0.7
    assert len(detect.preset("blazeface_views").detect(face)) == 1


def test_a_small_face_is_found_in_tiles():
    photo = _photo()
    whole = BlazeFace().detect(photo)[0]
    small = cv2.resize(photo, None, fx=1 / 8, fy=1 / 8, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 100, np.uint8)
    canvas[300:300 + small.shape[0], 400:400 + small.shape[1]] = small
    expected = whole / 8 + [400, 300, 0, 0]
    assert len(BlazeFace().detect(canvas)) == 0
    tiled = detect.Tiled(BlazeFace()).detect(canvas)
    assert len(tiled) == 1 and detect.iou(tiled, expected)[0, 0] > 0.5
    views = detect.preset("blazeface_views")
    assert len(views.detect(canvas)) == 1
    assert detect.describe(views)["detectors"][2] == {"kind": "Tiled", "detector": detect.describe(BlazeFace()),
                                                      "n": 2, "overlap": 0.25}


def test_mapped_boxes_match_most_labelled_expw_faces():
    """On real ExpW photographs (the first 60), BlazeFace's boxes, mapped to the labelled geometry, overlap at
    least 70% of the labelled faces with IoU >= 0.5 (the end-to-end evaluation's rule); unmapped, fewer do."""
    helpers.require_shared(helpers.EXPW_ROOT)
    from fer_core import evaluate

    by_image = dict(sorted(evaluate.labelled_faces(str(helpers.EXPW_ROOT)).items())[:60])
    mapped, unmapped = BlazeFace(), BlazeFace(box_scale=1.0, box_shift=0.0)
    hits = {"mapped": 0, "unmapped": 0}
    faces = 0
    for name, labelled in by_image.items():
        image = cv2.imread(str(helpers.EXPW_ROOT / "origin" / name))
        truth = np.array([[f.left, f.top, f.right - f.left, f.bottom - f.top] for f in labelled])
        faces += len(truth)
        for key, detector in (("mapped", mapped), ("unmapped", unmapped)):
            boxes = detector.detect(image)
            if len(boxes):
                hits[key] += int((detect.iou(truth, boxes).max(axis=1) >= 0.5).sum())
    assert hits["mapped"] >= 0.7 * faces
    assert hits["mapped"] > hits["unmapped"]


def test_fer_predict_with_blazeface_reports_its_box(tiny_model_path, tmp_path):
    """`fer predict --face-detector blazeface`: the one face of the portrait, in BlazeFace's mapped box; with
    --min-size above that face's side, no face."""
    import json
    import subprocess
    import sys

    path = str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    want = BlazeFace().detect(_photo())[0]
    cmd = [sys.executable, "-m", "fer_cli", "predict", path, "--face-detector", "blazeface",
           "--model", str(tiny_model_path), "--set", f"home={tmp_path}"]
    faces = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["results"][0]["faces"]
    assert [list(f["box"].values()) for f in faces] == [want.tolist()]
    big = subprocess.run([*cmd, "--min-size", str(int(want[2:].min()) + 1)], capture_output=True, text=True, check=True)
    assert json.loads(big.stdout)["results"][0]["faces"] == []


def test_the_video_face_finder_runs_blazeface_on_the_colour_frame_and_drops_small_faces():
    from fer_cli.commands import FRAME_DETECTORS
    from serving.pipeline import MODES, FaceFinder

    assert set(FRAME_DETECTORS) == set(MODES)
    photo = _photo()
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    finder = FaceFinder("blazeface")
    boxes = finder.find(gray, photo)
    assert len(boxes) == 1 and np.array_equal(boxes, BlazeFace().detect(photo))
    side = int(min(boxes[0, 2:]))
    assert len(FaceFinder("blazeface", min_size=side + 1).find(gray, photo)) == 0
    with pytest.raises(ValueError, match="blazeface"):
        FaceFinder("nope")
