"""A trained classifier scored as the pipeline scores it: every set it should see, and one naming of the figures."""

import numpy as np

from fer_core import assess, evaluate
from fer_core.classify import Classifier
from fer_core.data import dataset


def test_assess_scores_every_set_the_pipeline_logs(settings_factory, small_data, tiny_model_path):
    s = settings_factory(f'data.fer2013="{small_data["fer2013"]}"', f'data.expw="{small_data["expw"]}"',
                         f'pipeline.extra_eval={{lab = "{small_data["fer2013"]}"}}', "pipeline.face_sizes=[32]")
    ds = dataset.build(s)
    clf = Classifier.from_file(tiny_model_path)
    scored = assess.assess(s, ds, clf)
    held_out = ds.eval_sets()
    assert set(held_out) >= {"test", "fer2013_publictest", "expw_test"}
    # the dataset's sets, the extra set, and the fixed FER2013 set as a 32-pixel face; not the mixed test split
    assert set(scored.results) == {*held_out, "lab", "fer2013_publictest_at_32px"}
    x, y = held_out["expw_test"]
    assert scored.results["expw_test"] == evaluate.metrics(y, clf.predict(x))
    assert set(scored.probs) == set(scored.results)
    np.testing.assert_array_equal(scored.probs["expw_test"], clf.predict(x))
    rows = len(small_data["fer2013"].read_text().splitlines()) - 1
    assert scored.results["lab"]["n"] == rows  # every row of the extra CSV
    assert scored.speed["faces_per_s"] > 0 and scored.speed["single_face_ms"] > 0
    # end to end on the test split's whole ExpW images: each of its faces counted, found or missed
    assert scored.end_to_end["n"] == len(y) and scored.end_to_end["unreadable_images"] == 0
    faces = dataset.expw_faces(ds.path, "test")  # where each of those faces came from, in the split's order
    assert len(faces) == len(y) and {image for image, _ in faces} == dataset.expw_images(ds.path)
    flat = scored.metrics()
    assert flat["expw_test_accuracy"] == scored.results["expw_test"]["accuracy"]
    assert flat["expw_test_e2e_accuracy"] == scored.end_to_end["accuracy"]
    assert flat["faces_per_s"] == scored.speed["faces_per_s"]


def test_end_to_end_names_round_trip():
    result = {"accuracy": 0.35, "detection_recall": 0.89, "accuracy_on_found": 0.40, "unreadable_images": 2,
              "detector_name": "still"}
    flat = assess.end_to_end_metrics(result)
    assert flat == {"expw_test_e2e_accuracy": 0.35, "expw_test_e2e_detection_recall": 0.89,
                    "expw_test_e2e_accuracy_on_found": 0.40}
    assert assess.end_to_end_of({**flat, "test_accuracy": 0.6}) == {
        "accuracy": 0.35, "detection_recall": 0.89, "accuracy_on_found": 0.40}
    assert assess.end_to_end_metrics({}) == {} and assess.end_to_end_of({"test_accuracy": 0.6}) == {}


def test_a_set_without_faces_is_left_out(settings_factory, small_data, tiny_model_path, monkeypatch):
    s = settings_factory(f'data.fer2013="{small_data["fer2013"]}"', "data.expw=\"\"", "pipeline.face_sizes=[]")
    ds = dataset.build(s)
    empty = (np.zeros((0, 48, 48), np.uint8), np.zeros(0, np.int64))
    monkeypatch.setattr(ds, "eval_sets", lambda: {"test": ds.splits["test"], "nothing": empty})
    scored = assess.assess(s, ds, Classifier.from_file(tiny_model_path))
    assert set(scored.results) == {"test"} and scored.end_to_end == {}
