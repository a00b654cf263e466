"""One typed settings object: embedded defaults < TOML file < FER_* environment < --set overrides.

Every module takes its settings from here; nothing else reads the environment for configuration.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "FER_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSettings(_Section):
    fer2013: str = ""  # FER2013 CSV (.csv/.csv.gz) or image-folder root; local path or gs://
    expw: str = ""  # ExpW root holding label/label.lst and origin/; local path or gs://
    limit: int = 0  # at most this many faces per source (0 = all), for quick runs
    min_confidence: float | None = None  # ExpW box confidence floor; None keeps all (as the seed)
    margin: float = 0.10  # ExpW crop margin around the box, as a fraction of the box size
    # ExpW training crops: "labelled" boxes, or "haar": the box of `fer predict`'s Haar detector that finds the
    # labelled face (IoU >= 0.5; others keep the labelled box), the crop geometry met in service.
    expw_boxes: Literal["labelled", "haar"] = "labelled"
    max_reject_ratio: float = 0.05  # fail the build only past this share of rejected inputs
    workers: int = 0  # decode threads for ExpW; 0 = number of cores
    output: str = ""  # where dataset versions go; empty = <home>/datasets


class BalanceSettings(_Section):
    # Fraction of each class to DROP before splitting. Default none, and no SMOTE: that recipe wins on both
    # accuracy and macro-F1 on the fixed test sets (docs/EXPERIMENTS.md); the seed's 70/70/25 with SMOTE is
    # configs/seed.toml.
    undersample: dict[str, float] = Field(default_factory=dict)
    smote: bool = False
    smote_k: int = 5


class SplitSettings(_Section):
    val: float = 0.15
    test: float = 0.15
    seed: int = 42
    # FER2013 usages kept out of undersampling and splitting, each as its own fixed test set.
    fixed_test_usages: list[str] = Field(default_factory=lambda: ["PublicTest", "PrivateTest"])


class AugmentSettings(_Section):
    enabled: bool = True
    rotation_deg: float = 20.0
    shift: float = 0.10
    flip: bool = True
    brightness: tuple[float, float] = (0.8, 1.2)
    zoom: float = 0.10
    # Random erasing (Zhong et al. 2017; part of Khaireddin and Chen's recipe): the share of training faces that
    # get one rectangle of noise, covering `erase_area` of the face (fractions of each side squared): a hand,
    # a microphone, hair over an eye. 0 = off (the shipped recipe; docs/EXPERIMENTS.md has its measurement).
    erase: float = Field(0.0, ge=0.0, le=1.0)
    erase_area: tuple[float, float] = (0.02, 0.33)
    # Low resolution: the share of training faces shrunk to one of `low_res_sizes` pixels a side and enlarged
    # back (a blurred face). ExpW's faces are about as sharp as FER2013's at 40 pixels (docs/EXPERIMENTS.md,
    # "Blur"), and a network trained on sharp faces alone reads blurred ones badly. 0 = off (the shipped recipe:
    # it taught the networks soft faces and did not move ExpW's).
    low_res: float = Field(0.0, ge=0.0, le=1.0)
    low_res_sizes: tuple[int, ...] = (24, 28, 32, 36, 40)

    @field_validator("erase_area")
    @classmethod
    def _area_is_a_range_of_fractions(cls, area: tuple[float, float]) -> tuple[float, float]:
        low, high = area
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"erase_area must be (low, high) with 0 < low <= high <= 1, got {area}")
        return area

    @field_validator("low_res_sizes")
    @classmethod
    def _sizes_are_smaller_faces(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if not sizes or not all(4 <= size < 48 for size in sizes):
            raise ValueError(f"low_res_sizes must be sides of 4 to 47 pixels (faces are 48), got {sizes}")
        return sizes


# The narrowest compact model that trains safely. TensorFlow 2.21's oneDNN convolution kernels for AVX-512
# corrupt memory (segfault, double free, hang) when training layers narrower than one AVX-512 float32
# vector (16 lanes): compact widths 8 and 12 crash on AMD EPYC Zen 4, 16 and wider train. A floor costs
# nothing, where capping oneDNN at AVX2 for every run would cost 35% of training speed.
MIN_COMPACT_WIDTH = 16


# train.precision: the arithmetic layers are built with (fer_core.models.computing_in)
Precision = Literal["float32", "mixed_bfloat16", "mixed_float16"]


class TrainSettings(_Section):
    # "ensemble": the models in `members` averaged (models.ensemble); assembled, not trained: the epochs and
    # optimiser settings do not apply. The shipped champion is one (two members); more suit the analysis alias.
    model: Literal["compact", "mobilenetv2", "vgg16", "resnet50", "efficientnet_lite0", "ensemble"] = "compact"
    members: list[str] = Field(default_factory=list)  # train.model=ensemble: its members, .keras files
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    fine_tune_epochs: int = 0  # transfer models: epochs after unfreezing the base (0 = epochs // 2)
    fine_tune_learning_rate: float = 1e-5
    input_size: int = 96  # transfer models only: faces are resized to this inside the model
    # transfer models: "imagenet" or None (or a weights file: Keras's for its applications, a PyTorch state dict
    # for efficientnet_lite0, whose "imagenet" weights come with the package, not from the network)
    weights: str | None = "imagenet"
    # compact model: channels of the first block (28: ~3,100 faces/s on 2 cores); see MIN_COMPACT_WIDTH
    width: int = Field(28, ge=MIN_COMPACT_WIDTH)
    # Equalise each face's histogram inside the model (fer_core.equalize), before anything else: FER2013's faces
    # come equalised, ExpW's crops and a camera's frames do not, so the network learns and serves one kind of
    # face (docs/EXPERIMENTS.md, "Equalised faces"). Any zoo model; the dataset's faces stay as they are.
    equalize: bool = False
    dropout: float = 0.3
    label_smoothing: float = 0.1
    class_weights: bool = False
    # Faces of a source shown this many times per epoch (balance.weight_sources), e.g. {expw = 3.0}: the
    # in-the-wild faces the worker sees are a seventh of the training set. Empty = every face once.
    source_weights: dict[str, float] = Field(default_factory=dict)
    early_stopping_patience: int = 8
    reduce_lr_patience: int = 3
    # "plateau": halve the rate when validation loss stalls; "cosine": decay from learning_rate to 1/100 of it
    # over the configured epochs (each phase), the schedule for a warm restart of a plateaued model.
    lr_schedule: Literal["plateau", "cosine"] = "plateau"
    # "adam" (every shipped network) or "sgd": SGD with Nesterov momentum, Khaireddin and Chen's recipe for
    # FER2013 (lr 0.01, momentum 0.9, weight decay 1e-4, ~300 epochs). weight_decay (every trained weight,
    # batch-norm scales included) applies to either; 0 = none. Keras decays outside the momentum, PyTorch's SGD
    # (the paper's) inside it, where momentum 0.9 multiplies it about tenfold: the paper's 1e-4 is ~1e-3 here.
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    seed: int = 42
    threads: int = 0  # TensorFlow intra-op threads; 0 = TensorFlow's default
    # The arithmetic of training: "mixed_bfloat16" computes in bfloat16 on float32 weights: on a CPU with AMX,
    # VGG16 2.3 and ResNet50 1.6 times as fast, the compact network, MobileNetV2 and Lite0 no faster or slower
    # (docs/BENCHMARKS.md); refused on a CPU without bfloat16 units. "mixed_float16" is for GPUs. The saved
    # model computes in float32 whatever this is (models.for_serving).
    precision: Precision = "float32"
    max_minutes: float = 0.0  # stop training after this many minutes (0 = no limit): equal budgets on a CPU
    # Save the model averaging its probabilities over the face and its mirror image (models.with_flip_average):
    # +1.4 points PublicTest accuracy, +1.3 macro-F1, calibration error 0.028 -> 0.014 for one network (+1.3,
    # +1.7, 0.047 -> 0.019 for another), at twice the compute per face (docs/EXPERIMENTS.md).
    flip_average: bool = True
    # Fit a temperature on the validation split, each source weighing the same, and save the model with it
    # (fer_core.calibrate): probabilities that mean what they say (the ensemble champion's calibration error
    # 0.056 -> 0.041 on the test split, 0.055 -> 0.037 on PublicTest; docs/EXPERIMENTS.md); no prediction changes.
    calibrate: bool = True
    # Re-estimate the batch-norm statistics on this many clean training faces (a seeded sample) and their
    # mirrors before saving (fer_core.batchnorm): training kept them on augmented batches. +0.2-1.3 points of
    # validation and +0.3-0.7 of test accuracy for three trained networks, nothing per face (docs/EXPERIMENTS.md).
    # 0 keeps them as trained.
    bn_refresh_faces: int = Field(16384, ge=0)
    init_from: str = ""  # warm start: a .keras model of the same architecture whose weights training starts from
    # Distillation (fer_core.distill): a .keras model (e.g. the analysis ensemble) whose probabilities on the
    # training faces make part of the targets: distill_alpha * label + (1 - distill_alpha) * teacher's.
    teacher: str = ""
    distill_alpha: float = Field(0.5, ge=0.0, le=1.0)


class MlflowSettings(_Section):
    tracking_uri: str = ""  # empty = sqlite:///<home>/mlflow/mlflow.db
    artifact_root: str = ""  # empty = <home>/mlflow/artifacts
    experiment: str = "fer"
    http_retries: int = 1  # MLflow client retries per request (Prefect tasks retry on top)
    http_timeout_s: int = 20


class RegistrySettings(_Section):
    model_name: str = "fer-emotion"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    # fer predict and fer analyze use this alias when it exists (a bigger, slower model for offline analysis,
    # trained and gated like the champion: fer pipeline run --alias analysis), else the champion.
    analysis_alias: str = "analysis"
    # The embedded default registry (sqlite under home) registers the shipped baseline as champion when it has
    # none, before a model is served or a candidate gated: a fresh home serves the baseline, and a first
    # candidate must beat it. false: an empty registry stays empty (its first candidate meets only the floors).
    bootstrap: bool = True


class GateSettings(_Section):
    min_accuracy_gain: float = 0.0  # candidate accuracy must be >= champion + this margin
    macro_f1_tolerance: float = 0.0  # candidate macro-F1 may not be lower than champion - this
    min_class_recall: float = 0.10  # no class recall below this floor
    min_accuracy: float = 0.0  # absolute floor, applies also when there is no champion
    max_latency_ms: float = 5.0  # single-face latency budget, the realtime worker's (0 = no budget)
    # A candidate for registry.analysis_alias is gated on these instead: an offline analysis model is judged on
    # its batched throughput (issue 17: a bigger, slower model, >= 200 faces/s), not on one face's latency.
    analysis_max_latency_ms: float = 0.0
    analysis_min_faces_per_s: float = 200.0
    # Paired test on the same faces (McNemar, exact, one-sided): the candidate must be better at this level
    # over all benchmark sets together, and not worse at it on any one set.
    alpha: float = 0.05
    benchmarks: list[str] = Field(default_factory=lambda: ["test", "fer2013_publictest"])
    # When the alias being gated has no version yet, compare with this alias's version instead of with nothing:
    # fer pipeline run --alias analysis sets it to the champion, so a first analysis model must beat the
    # model fer predict would otherwise use.
    compare_first_with: str = ""


class WandbSettings(_Section):
    enabled: bool = False
    project: str = "fer"
    mode: Literal["offline", "online", "disabled"] = "offline"
    dir: str = ""  # empty = <home>/wandb


class PipelineSettings(_Section):
    cron: str = "0 3 * * 1"  # weekly, Monday 03:00
    timezone: str = "UTC"
    deployment_name: str = "fer-retrain-weekly"
    retries: int = 3
    retry_delay_s: float = 2.0
    extra_eval: dict[str, str] = Field(default_factory=dict)  # name -> path of extra evaluation sets
    # FER2013's fixed test sets scored again with each face as a face this many pixels wide reaches the classifier
    # (`<set>_at_<N>px`, fer_core.crop.as_seen_at): how a far face or a low-resolution stream is read. Reported, not gated.
    face_sizes: list[int] = Field(default_factory=lambda: [40, 32, 24])

    @field_validator("face_sizes")
    @classmethod
    def _face_sizes(cls, sizes: list[int]) -> list[int]:
        from fer_core.crop import SEEN_SIDES

        bad = [size for size in sizes if size not in SEEN_SIDES]
        if bad:
            raise ValueError(f"face sizes are {SEEN_SIDES.start}-{SEEN_SIDES.stop - 1} pixels (48 is the set "
                             f"itself), got {bad}")
        return sizes


class ServeSettings(_Section):
    http: str = ""  # HOST:PORT; empty = no HTTP server
    token: str = ""  # required beyond loopback for everything but /metrics and /healthz (env FER_HTTP_TOKEN)
    poll_s: float = 30.0  # how often the champion alias is checked
    stall_s: float = 10.0  # not ready (/readyz, fer_ready) when no frame was processed for this long
    read_timeout_s: float = 10.0  # a live stream that sends nothing for this long is reopened
    open_metrics: bool = False  # serve /metrics without the token beyond loopback (it shows emotion counts)
    tls_cert: str = ""  # PEM certificate and key: HTTPS, and then `?token=` is accepted too
    tls_key: str = ""
    detect_width: int = 320  # frames are downscaled to this width for Haar detection
    track_every: int = 1  # run Haar every N frames (1 = every frame)
    timeline_upload: str = ""  # gs:// prefix to upload closed timeline segments to
    timeline_flush_s: float = 5.0  # timeline rows reach the disk (fsync) at least this often
    timeline_rotate_s: float = 3600.0  # close the live timeline segment after this long (0 = never)
    timeline_rotate_mb: float = 64.0  # ... or once it is this big (0 = never)
    worker_id: str = ""  # written into every timeline row; empty = the host name


class DaskSettings(_Section):
    address: str = ""  # tcp://HOST:PORT of a Dask scheduler; empty = a local cluster of processes
    workers: int = 0  # local cluster: worker processes (0 = one per core)


class Settings(_Section):
    home: str = Field(default_factory=lambda: str(Path.home() / ".fer"))
    data: DataSettings = Field(default_factory=DataSettings)
    balance: BalanceSettings = Field(default_factory=BalanceSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    wandb: WandbSettings = Field(default_factory=WandbSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)

    # Derived locations of the embedded defaults.
    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser()

    @property
    def datasets_root(self) -> str:
        return self.data.output or str(self.home_path / "datasets")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.home_path / 'mlflow' / 'mlflow.db'}"

    @property
    def embedded_registry(self) -> bool:
        """True when the registry is the embedded default (sqlite under home), which may bootstrap itself."""
        return self.tracking_uri == f"sqlite:///{self.home_path / 'mlflow' / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return self.mlflow.artifact_root or (self.home_path / "mlflow" / "artifacts").as_uri()

    def section_hash(self, *sections: str) -> str:
        """A short content hash of the named sections, for cache keys and version tags."""
        payload = {name: getattr(self, name).model_dump(mode="json") for name in sections}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def flat(self) -> dict[str, Any]:
        """Flattened `section.key` -> value, for logging as MLflow params."""
        out: dict[str, Any] = {"home": self.home}
        for name, section in self.model_dump(mode="json").items():
            if isinstance(section, dict):
                for key, value in section.items():
                    out[f"{name}.{key}"] = value
        return out


class ConfigError(ValueError):
    """A configuration file, variable or override that cannot be used."""


def _parse_value(text: str) -> Any:
    """Read an override value as TOML (numbers, booleans, lists, quoted strings), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"empty setting name in {dotted!r}")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted!r}: {key!r} is not a section")
    node[keys[-1]] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_settings(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings: defaults, then the TOML file, then FER_A__B variables, then `a.b=v` overrides."""
    env = os.environ if environ is None else environ
    tree: dict[str, Any] = {}
    config_path = path or env.get("FER_CONFIG")
    if config_path:
        p = Path(config_path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            tree = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in ("FER_CONFIG",):
            continue
        if name == "FER_HTTP_TOKEN":
            _set_path(tree, "serve.token", raw)
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if dotted.split(".")[0] not in Settings.model_fields:
            continue  # FER_* variables of other tools are not ours to reject
        _set_path(tree, dotted, _parse_value(raw))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        key, value = item.split("=", 1)
        _set_path(tree, key, _parse_value(value))
    try:
        return Settings.model_validate(_merge({}, tree))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                             for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc
