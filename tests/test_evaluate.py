"""Metrics, every evaluation format through `fer evaluate`, and `fer predict`."""

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from fer_core import evaluate

# The tiny set: (gray level, true label). The hand-made model predicts angry for dark faces and happy
# for bright ones, so: 3 right (dark angry, bright happy, dark angry), 1 wrong (bright sad -> happy).
TINY = [(40, "angry"), (220, "happy"), (210, "sad"), (30, "angry")]
EXPECTED = {"n": 4, "accuracy": 0.75, "confusion_rows": {"angry": [2, 0, 0, 0, 0, 0, 0],
                                                         "happy": [0, 0, 0, 1, 0, 0, 0],
                                                         "sad": [0, 0, 0, 1, 0, 0, 0]},
            "precision_happy": 0.5, "recall_angry": 1.0, "recall_sad": 0.0,
            # F1 angry 1.0, happy 2/3, sad 0.0 over the three classes present
            "macro_f1": (1.0 + 2 / 3 + 0.0) / 3}


def brightness_model(path: Path) -> Path:
    """A real .keras model with hand-set weights: logit(angry) = 20(0.5 - m), logit(happy) = 20(m - 0.5)."""
    inputs = keras.Input((48, 48), dtype="uint8")
    x = keras.layers.Reshape((48, 48, 1))(inputs)
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(7, activation="softmax")
    out = dense(x)
    model = keras.Model(inputs, out)
    w = np.zeros((1, 7), np.float32)
    b = np.full(7, -50.0, np.float32)
    w[0, 0], b[0] = -20.0, 10.0
    w[0, 3], b[3] = 20.0, -10.0
    dense.set_weights([w, b])
    model.save(path)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return brightness_model(tmp_path_factory.mktemp("model") / "brightness.keras")


def _tiny_in_every_format(root: Path) -> dict[str, Path]:
    from fer_core.labels import INDEX

    lines = ["emotion,pixels,Usage"] + [f"{INDEX[e]},{' '.join([str(g)] * 2304)},PublicTest" for g, e in TINY]
    lines.append(f"3,{' '.join(['200'] * 2304)},Training")  # filtered out by --usage PublicTest
    (root / "fer.csv").write_text("\n".join(lines) + "\n")
    label_lines, vote_lines = [], ["image,annotator,label"]
    (root / "expw" / "origin").mkdir(parents=True)
    (root / "expw" / "label").mkdir(parents=True)
    (root / "votes").mkdir()
    for i, (gray, emotion) in enumerate(TINY):
        d = root / "folder" / emotion
        d.mkdir(parents=True, exist_ok=True)
        face = np.full((48, 48), gray, np.uint8)
        cv2.imwrite(str(d / f"{i}.png"), face)
        cv2.imwrite(str(root / "expw" / "origin" / f"{i}.png"), np.full((100, 100), gray, np.uint8))
        label_lines.append(f"{i}.png 0 20 20 80 80 90.0 {INDEX[emotion]}")
        cv2.imwrite(str(root / "votes" / f"{i}.png"), face)
        # two of three annotators agree with the true label; one dissents
        vote_lines += [f"{i}.png,a,{emotion}", f"{i}.png,b,{emotion}", f"{i}.png,c,neutral"]
    (root / "expw" / "label" / "label.lst").write_text("\n".join(label_lines) + "\n")
    (root / "votes" / "votes.csv").write_text("\n".join(vote_lines) + "\n")
    return {"fer2013": root / "fer.csv", "folder": root / "folder", "expw": root / "expw",
            "votes": root / "votes" / "votes.csv"}


def test_metrics_hand_checked():
    y = np.array([0, 0, 1, 1, 2])
    probs = np.zeros((5, 7))
    probs[0, :2] = [0.7, 0.3]
    probs[1, :2] = [0.4, 0.6]
    probs[2, :2] = [0.1, 0.9]
    probs[3, :2] = [0.4, 0.6]
    probs[4, [0, 2]] = [0.8, 0.2]
    m = evaluate.metrics(y, probs)
    assert m["n"] == 5 and m["accuracy"] == 0.6
    assert m["confusion"][0][:3] == [1, 1, 0] and m["confusion"][1][:3] == [0, 2, 0] and m["confusion"][2][:3] == [1, 0, 0]
    assert m["per_class"]["angry"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["disgust"]["precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["per_class"]["disgust"]["f1"] == pytest.approx(0.8, abs=1e-6)
    assert m["per_class"]["fear"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3, abs=1e-6)
    expected_loss = -np.mean(np.log([0.7, 0.4, 0.9, 0.6, 0.2]))
    assert m["loss"] == pytest.approx(expected_loss, abs=1e-6)
    assert m["accuracy_ci95"] == pytest.approx(wilson(3, 5), abs=1e-6)


def wilson(correct: int, n: int, z: float = 1.959964) -> list[float]:
    """The Wilson score interval from its formula, to check the library's."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [centre - half, centre + half]


def test_accuracy_interval_narrows_with_more_faces():
    """The champion's ExpW figure (261 of 651 faces) is 0.40 give or take 3.8 points; ten times the faces, 1.2."""
    low, high = evaluate.accuracy_interval(261, 651)
    assert [low, high] == pytest.approx(wilson(261, 651), abs=1e-6)
    assert round(low, 3) == 0.364 and round(high, 3) == 0.439
    low10, high10 = evaluate.accuracy_interval(2610, 6510)
    assert low < low10 < 261 / 651 < high10 < high and high10 - low10 < 0.4 * (high - low)
    assert evaluate.accuracy_interval(0, 10)[0] == 0.0 and evaluate.accuracy_interval(10, 10)[1] == 1.0


def test_ece_is_zero_when_confidence_matches_accuracy():
    y = np.array([0, 0, 1, 1])
    probs = np.zeros((4, 7))
    probs[:, 0] = [0.5, 0.5, 0.5, 0.5]
    probs[:, 1] = [0.4, 0.4, 0.4, 0.4]
    assert evaluate.expected_calibration_error(y, probs) == pytest.approx(0.0)  # 50% sure, 50% right
    probs2 = np.zeros((4, 7))
    probs2[:, 0] = 1.0
    assert evaluate.expected_calibration_error(y, probs2) == pytest.approx(0.5)


def test_votes_majority_and_ties(tmp_path):
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((60, 60), 100, np.uint8))
    (tmp_path / "v.csv").write_text("image,annotator,label\na.png,1,happy\na.png,2,happy\na.png,3,sad\n"
                                    "b.png,1,sad\nb.png,2,angry\nb.png,3,sad\nc.png,1,surprise\nc.png,2,fear\n"
                                    "missing.png,1,happy\n")
    x, y, info = evaluate.load_eval_data(str(tmp_path / "v.csv"))
    assert info["format"] == "votes" and y.tolist() == [3, 4, 2]  # c: fear/surprise tie -> fear (earlier)
    assert info["ties"] == 1 and info["rejected"] == ["missing.png"] and x.shape == (3, 48, 48)


def test_a_file_no_reader_takes_is_named_with_what_would_be(tmp_path):
    (tmp_path / "notes.txt").write_text("not faces")
    with pytest.raises(ValueError, match="notes.txt: labelled data is a FER2013 CSV"):
        evaluate.load_eval_data(str(tmp_path / "notes.txt"))


@pytest.mark.parametrize("fmt", ["fer2013", "folder", "expw", "votes"])
def test_cli_evaluate_every_format_hand_checked(fmt, model_file, tmp_path):
    paths = _tiny_in_every_format(tmp_path)
    cmd = [sys.executable, "-m", "fer_cli", "evaluate", "--data", str(paths[fmt]), "--model", str(model_file),
           "--set", f"home={tmp_path / 'home'}", "--no-speed"]
    if fmt == "fer2013":
        cmd += ["--usage", "PublicTest"]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert out["format"] == fmt
    assert {"n", "accuracy", "macro_f1", "loss", "per_class", "confusion"} <= set(out)
    assert out["n"] == EXPECTED["n"] and out["accuracy"] == EXPECTED["accuracy"]
    assert out["macro_f1"] == pytest.approx(EXPECTED["macro_f1"], abs=1e-5)
    for emotion, row in EXPECTED["confusion_rows"].items():
        from fer_core.labels import INDEX

        assert out["confusion"][INDEX[emotion]] == row
    assert out["per_class"]["happy"]["precision"] == EXPECTED["precision_happy"]
    assert out["per_class"]["sad"]["recall"] == EXPECTED["recall_sad"]
    # loss: mean -log p(true); sad face gets p(sad) = softmax floor, so loss is large but finite
    assert math.isfinite(out["loss"]) and out["loss"] > 1


def test_cli_evaluate_misread_shows_the_faces_the_model_got_wrong(model_file, tmp_path):
    """`--misread DIR`: one montage per true emotion with misread faces, each face captioned with the answer given;
    the hand-made model misreads only the bright sad face (as happy), so there is one montage of one face."""
    paths = _tiny_in_every_format(tmp_path)
    out = json.loads(subprocess.run(
        [sys.executable, "-m", "fer_cli", "evaluate", "--data", str(paths["fer2013"]), "--usage", "PublicTest",
         "--model", str(model_file), "--set", f"home={tmp_path / 'home'}", "--no-speed",
         "--misread", str(tmp_path / "misread")], check=True, capture_output=True, text=True).stdout)
    assert out["misread"]["misread"] == {"sad": 1}
    assert out["misread"]["files"] == {"sad": str(tmp_path / "misread" / "misread_sad.png")}
    assert sorted(p.name for p in (tmp_path / "misread").iterdir()) == ["misread_sad.png"]
    montage = cv2.imread(str(tmp_path / "misread" / "misread_sad.png"))
    assert montage.shape == (96, 8 * 96, 3)  # one row of eight tiles, the face enlarged twice, then black
    face = montage[20:, :96]  # below the caption
    assert np.all(np.abs(face.astype(int) - 210) <= 1) and montage[:, 96:].max() == 0
    assert montage[:16, :96, 2].max() > 200 > montage[:16, :96, 0].min()  # the caption, in red


def test_cli_evaluate_reports_speed_and_bad_inputs(model_file, tmp_path):
    paths = _tiny_in_every_format(tmp_path)
    base = [sys.executable, "-m", "fer_cli", "evaluate", "--model", str(model_file), "--set",
            f"home={tmp_path / 'home'}"]
    out = json.loads(subprocess.run(base + ["--data", str(paths["folder"])], check=True, capture_output=True,
                                    text=True).stdout)
    assert out["speed"]["faces_per_s"] > 0 and out["speed"]["single_face_ms"] > 0
    missing = subprocess.run(base + ["--data", str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 1 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    bad_model = subprocess.run(base[:-2] + ["--set", f"home={tmp_path / 'h'}", "--data", str(paths["folder"]),
                                            "--model", str(tmp_path / "nope.keras")], capture_output=True, text=True)
    assert bad_model.returncode == 1 and "model file not found" in bad_model.stderr
    (tmp_path / "notes.txt").write_text("not a model")
    not_model = subprocess.run(base[:-2] + ["--set", f"home={tmp_path / 'h'}", "--data", str(paths["folder"]),
                                            "--model", str(tmp_path / "notes.txt")], capture_output=True, text=True)
    assert not_model.returncode == 1 and "a model is a registry URI" in not_model.stderr


def test_cli_evaluate_face_size_scores_the_faces_as_a_smaller_face_reaches_the_classifier(tiny_model_path, tmp_path):
    """`--face-size 24` gives exactly the figures of the same faces made 24 pixels wide beforehand
    (`crop.as_seen_at`), not those of the faces as they are; a size outside 8-47 is a clear error."""
    from fer_core import crop
    from tests.helpers import face_pattern

    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(7), 4)
    faces = np.stack([face_pattern(int(k), rng) for k in y])

    def csv(path: Path, x: np.ndarray) -> Path:
        path.write_text("emotion,pixels,Usage\n" + "".join(f"{label},{' '.join(map(str, face.ravel()))},PublicTest\n"
                                                            for label, face in zip(y, x, strict=True)))
        return path

    base = [sys.executable, "-m", "fer_cli", "evaluate", "--model", str(tiny_model_path), "--no-speed",
            "--set", f"home={tmp_path / 'home'}", "--data"]
    run = lambda *args: json.loads(subprocess.run([*base, *args], check=True, capture_output=True,  # noqa: E731
                                                  text=True).stdout)
    as_they_are = run(str(csv(tmp_path / "sharp.csv", faces)))
    seen_at_24 = run(str(tmp_path / "sharp.csv"), "--face-size", "24")
    made_smaller = run(str(csv(tmp_path / "small.csv", crop.as_seen_at(faces, 24))))
    assert seen_at_24["face_size"] == 24 and "face_size" not in as_they_are
    assert seen_at_24["loss"] == made_smaller["loss"] and seen_at_24["confusion"] == made_smaller["confusion"]
    assert seen_at_24["loss"] != as_they_are["loss"]
    bad = subprocess.run([*base, str(tmp_path / "sharp.csv"), "--face-size", "48"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--face-size is 8-47 pixels" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_predict_faces_and_bad_files(tiny_model_path, tmp_path):
    import matplotlib.cbook

    photo = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    (tmp_path / "notes.txt").write_text("not an image")
    cmd = [sys.executable, "-m", "fer_cli", "predict", str(photo), str(tmp_path / "notes.txt"),
           str(tmp_path / "absent.png"), "--model", str(tiny_model_path), "--set", f"home={tmp_path / 'home'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1  # some inputs failed (2 is only a usage error)
    out = json.loads(proc.stdout)
    first, second, third = out["results"]
    assert len(first["faces"]) == 1  # Grace Hopper's portrait has one face
    face = first["faces"][0]
    assert 100 < face["box"]["w"] < 400 and sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert second["error"].startswith("not an image") and third["error"] == "file not found"
    assert "notes.txt" in proc.stderr


@pytest.mark.slow
def test_refresh_end_to_end_rewrites_the_shipped_figure_from_a_measurement(tiny_model_path, tmp_path):
    """scripts/refresh_end_to_end.py: the `fer evaluate --through-detector` result of the shipped file on its
    dataset's test split replaces the card's section and baseline.json's figures, the replaced ones kept;
    a result of another model is refused and changes nothing."""
    import shutil

    from fer_cli.demo import write_demo_data

    root = Path(__file__).resolve().parents[1]
    expw_root = write_demo_data(tmp_path / "data", per_class=6)["expw"]
    home = tmp_path / "home"
    fer = [sys.executable, "-m", "fer_cli"]
    built = subprocess.run([*fer, "data", "build", "--set", f"home={home}", "--set", f"data.expw={expw_root}"],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    version = json.loads(built.stdout)["version"]
    assets = tmp_path / "assets"
    assets.mkdir()
    shutil.copyfile(tiny_model_path, assets / "baseline.keras")
    shutil.copyfile(root / "fer_core" / "assets" / "MODEL_CARD.md", assets / "MODEL_CARD.md")
    info = json.loads((root / "fer_core" / "assets" / "baseline.json").read_text())
    old_metrics = dict(info["metrics"])
    (assets / "baseline.json").write_text(json.dumps({**info, "dataset_version": version}))

    def measure(model: Path) -> Path:
        proc = subprocess.run([*fer, "evaluate", "--through-detector", "--data", str(expw_root), "--test-split-of",
                               version, "--model", str(model), "--set", f"home={home}"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = tmp_path / f"e2e-{model.stem}.json"
        out.write_text(proc.stdout)
        return out

    script = [sys.executable, str(root / "scripts" / "refresh_end_to_end.py")]
    card_before = (assets / "MODEL_CARD.md").read_text()
    refused = subprocess.run([*script, str(measure(tiny_model_path)), "--command", "c", "--assets", str(assets)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "not the shipped" in refused.stderr
    assert (assets / "MODEL_CARD.md").read_text() == card_before

    result_file = measure(assets / "baseline.keras")
    result = json.loads(result_file.read_text())
    assert result["n"] > 0
    done = subprocess.run([*script, str(result_file), "--command", "fer evaluate ...", "--assets", str(assets)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    card = (assets / "MODEL_CARD.md").read_text()
    assert card.count("## End to end through the detector") == 1
    assert f"end to end **{result['accuracy']:.4f}**" in card and f"`{result['detector_name']}` face detector" in card
    low, high = result["accuracy_ci95"]
    assert low <= result["accuracy"] <= high and f"(95% interval {low:.3f}-{high:.3f})" in card
    assert f"end to end {old_metrics['expw_test_e2e_accuracy']:.4f}" in card  # the replaced figure, named
    assert card.split("## End to end")[0] == card_before.split("## End to end")[0]  # the rest untouched
    assert "Per class on fer2013_publictest:" in card.split("## End to end")[1]
    new = json.loads((assets / "baseline.json").read_text())
    assert new["metrics"]["expw_test_e2e_accuracy"] == result["accuracy"]
    assert new["metrics"]["expw_test_e2e_detection_recall"] == result["detection_recall"]
    assert new["end_to_end_refreshed"]["previous"]["expw_test_e2e_accuracy"] == old_metrics["expw_test_e2e_accuracy"]
    assert {k: v for k, v in new["metrics"].items() if "e2e" not in k} == \
        {k: v for k, v in old_metrics.items() if "e2e" not in k}


def test_through_detector_counts_missed_faces_as_wrong(tiny_model_path, tmp_path):
    """`fer evaluate --through-detector`: whole images through the face detector, as `fer predict` sees them. The demo's
    portrait faces are found; a labelled box where there is no face is missed and counts as wrong."""
    from fer_cli.demo import write_demo_data
    from fer_core import detect, evaluate, registry
    from fer_core.config import load_settings

    expw_root = write_demo_data(tmp_path / "data", per_class=2)["expw"]
    label_file = expw_root / "label" / "label.lst"
    lines = label_file.read_text().splitlines()
    lines.append(f"{lines[0].split()[0]} 1 0 0 60 60 50.0 3")  # a corner of the first image: no face there
    label_file.write_text("\n".join(lines) + "\n")
    clf = registry.load_classifier(str(tiny_model_path), load_settings(None, [f'home="{tmp_path}"'], environ={}))
    r = evaluate.through_detector(clf, str(expw_root))
    assert r["n"] == len(lines) == 8 and r["images"] == 7
    assert r["found"] == 7 and r["detection_recall"] == pytest.approx(7 / 8, abs=1e-4)
    assert r["unmatched_boxes"] == 0  # one face per portrait, and each is labelled
    assert r["accuracy"] == pytest.approx(r["accuracy_on_found"] * 7 / 8, abs=1e-3)
    assert r["detector_name"] == detect.STILL_DETECTOR and r["margin"] == r["labelled_margin"] == 0.1
    haar, blaze = r["detector"]["detectors"]
    assert {k: haar[k] for k in detect.PRESETS["still"]} == detect.PRESETS["still"]
    assert [d["kind"] for d in blaze["detectors"]] == ["BlazeFace", "Padded", "Tiled"]
    assert 0 <= r["accuracy_on_found_labelled_crop"] <= 1 and r["found_faces"]["n"] == 7
    only = evaluate.through_detector(clf, str(expw_root), images={lines[0].split()[0]})
    assert only["n"] == 2 and only["found"] == 1
    proc = subprocess.run([sys.executable, "-m", "fer_cli", "evaluate", "--data", str(expw_root), "--through-detector", "--model",
                           str(tiny_model_path), "--set", f"home={tmp_path / 'home'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["detection_recall"] == r["detection_recall"]
