from pathlib import Path

import pytest

from fer_core.config import ConfigError, load_settings
from fer_core.labels import EMOTIONS, label_index


def test_defaults_need_no_server(tmp_path):
    s = load_settings(None, [f'home="{tmp_path}"'], environ={})
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert s.artifact_root.startswith("file://")
    assert s.datasets_root == str(tmp_path / "datasets")
    assert s.balance.undersample == {} and not s.balance.smote  # the recipe that won (docs/EXPERIMENTS.md)
    assert s.train.model == "compact" and s.train.flip_average


def test_precedence_file_env_override(tmp_path: Path):
    cfg = tmp_path / "fer.toml"
    cfg.write_text('home = "/from/file"\n[train]\nepochs = 3\nmodel = "vgg16"\n[data]\nlimit = 10\n')
    env = {"FER_TRAIN__EPOCHS": "7", "FER_HOME": "/from/env", "FER_UNRELATED": "x"}
    s = load_settings(cfg, ["train.epochs=9", "registry.model_name=abc"], environ=env)
    assert s.home == "/from/env"          # env beats file
    assert s.train.epochs == 9            # --set beats env
    assert s.train.model == "vgg16"       # file beats default
    assert s.data.limit == 10
    assert s.registry.model_name == "abc"  # bare strings need no quotes


def test_token_from_its_own_variable():
    assert load_settings(None, [], environ={"FER_HTTP_TOKEN": "s3cret"}).serve.token == "s3cret"


@pytest.mark.parametrize("override", ["train.epochs=many", "train.nope=1", "nosection.x=1", "novalue",
                                      "augment.erase=1.5", "augment.erase_area=[0.3,0.1]",
                                      "augment.erase_area=[0,0.2]", "augment.erase_area=[0.1,2]",
                                      "pipeline.face_sizes=[48]", "pipeline.face_sizes=[40,4]"])
def test_bad_settings_are_clear_errors(override):
    with pytest.raises(ConfigError):
        load_settings(None, [override], environ={})


def test_face_sizes_default_and_may_be_turned_off():
    assert load_settings(None, [], environ={}).pipeline.face_sizes == [40, 32, 24]
    assert load_settings(None, ["pipeline.face_sizes=[]"], environ={}).pipeline.face_sizes == []


def test_erase_area_accepts_a_range_of_fractions():
    assert load_settings(None, ["augment.erase_area=[0.05,0.2]"], environ={}).augment.erase_area == (0.05, 0.2)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", [], environ={})


def test_section_hash_changes_with_settings():
    a = load_settings(None, [], environ={})
    b = load_settings(None, ["train.epochs=2"], environ={})
    assert a.section_hash("train") != b.section_hash("train")
    assert a.section_hash("data") == b.section_hash("data")
    assert a.flat()["train.epochs"] == 40


def test_labels_defined_once_in_fer_order():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert label_index("Happy") == 3 and label_index("surprised") == 5 and label_index("6") == 6
    with pytest.raises(ValueError):
        label_index(7)
    with pytest.raises(ValueError):
        label_index("bored")


def test_seed_recipe_config_is_the_seeds():
    """configs/seed.toml pins the seed's recipe, which is no longer the default, so it stays reproducible."""
    s = load_settings(str(Path(__file__).resolve().parents[1] / "configs" / "seed.toml"), [], environ={})
    assert s.balance.undersample == {"happy": 0.70, "neutral": 0.70, "sad": 0.25} and s.balance.smote
    assert (s.augment.rotation_deg, s.augment.shift, s.augment.flip, s.augment.zoom) == (20.0, 0.10, True, 0.10)
    assert tuple(s.augment.brightness) == (0.8, 1.2) and s.data.margin == 0.10 and not s.train.flip_average
