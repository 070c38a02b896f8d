"""Configuration: JSON-schema validation and typed sections.

``config.yaml`` holds default sections (``preprocess``, ``flow``, ``model``,
``train``, ``fusion``) and a ``datasets`` map whose entries may override any of
them. :func:`load_config` validates the file against
``workflow/schemas/config.schema.yaml``; :func:`dataset_settings` resolves one
dataset into plain dicts, and the dataclasses below give them types and the
defaults (taken from the paper where it states them).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import yaml

from tclsta.errors import BadConfigError
from tclsta.locations import SCHEMA_PATH

SECTIONS = ("preprocess", "flow", "model", "train", "fusion", "collaborative")
STREAMS = ("rgb", "flow")


@dataclass(frozen=True)
class PreprocessConfig:
    short_side: int | None = 256
    jpeg_quality: int = 90
    num_shards: int = 16
    min_frames: int = 8
    on_bad_video: str = "fail"
    # Limits on hostile or mistaken input, checked from the container header before decoding.
    max_frame_pixels: int = 4096 * 2160  # 4K; an 8K video is refused
    max_video_frames: int = 10_000
    max_video_seconds: float = 600.0


@dataclass(frozen=True)
class FlowConfig:
    """TV-L1 parameters, named as in OpenCV's DualTVL1OpticalFlow (its defaults); ``batch_pairs``: torch backend only."""

    backend: str = "auto"
    bound: float = 20.0
    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5
    batch_pairs: int = 64
    jpeg_quality: int = 95  # the shards store each flow component as a greyscale JPEG


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet50"
    pretrained: str | None = None
    flow_stack: int = 5
    spatial_attention: bool = True
    temporal_attention: bool = True
    spatial_hidden: int = 1024
    temporal_hidden: int = 512
    class_source: str = "agnostic"
    attention_temperature: float | str = 1.0  # the spatial softmax's; or "learned"
    detach_attention: bool = False
    stream_score: str = "lstm"  # lstm | frames | both | auto (chosen on the validation videos); predict and export use lstm
    dropout: float = 0.5
    rgb: dict = field(default_factory=dict)  # per-stream overrides of the keys above
    flow: dict = field(default_factory=dict)


# The paper's three training stages: (1) backbone + spatial head, (2) temporal head only,
# backbone frozen, (3) everything jointly at a low learning rate.
PAPER_STAGES = (
    {"name": "spatial", "epochs": 20, "lr": 1e-3},
    {"name": "temporal", "epochs": 5, "lr": 1e-3},
    {"name": "joint", "epochs": 5, "lr": 1e-5},
)


@dataclass(frozen=True)
class TrainConfig:
    stages: tuple[dict, ...] = PAPER_STAGES
    batch_size: int = 8
    optimizer: str = "sgd"
    lr_schedule: str = "cosine"
    lr_step_epochs: int = 10
    lr_gamma: float = 0.1
    weight_decay: float = 1e-4
    grad_clip: float = 20.0
    train_frames: int = 10
    variable_steps: bool = False  # each training batch takes a random number of steps, train_frames to test_frames
    test_frames: int = 25
    crop_size: tuple[int, int] = (224, 224)
    flip: bool = True
    val_fraction: float = 0.2
    test_crops: int = 1
    inference_batch: int = 100  # images (test crops x frames) per forward pass after training
    scale_jitter: bool = False
    partial_bn: bool = False
    num_workers: int = 2
    device: str = "auto"
    decode_device: str = "auto"  # auto: JPEGs decoded on the training/scoring device when it is CUDA; cpu: in the workers
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    rgb: dict = field(default_factory=dict)  # per-stream overrides of the keys above
    flow: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FusionConfig:
    steps: int = 300
    lr: float = 0.05
    per_class_penalty: float = 0.1
    late_fusion_weights: tuple[float, float] = (1.0, 1.5)


@dataclass(frozen=True)
class CollaborativeConfig:
    """The static-motion collaborative model (RMSprop, lr 5e-4, batch 256 and dropout 0.5 as in the release)."""

    epochs: int = 100
    lr: float = 5e-4
    hidden: int = 512
    dropout: float = 0.5
    batch_size: int = 256
    mutual_guidance: bool = True
    fit_on: str = "val"
    folds: int = 5  # fit_on val: the epoch is chosen by k-fold cross-validation on the validation videos
    seed: int = 0


@dataclass(frozen=True)
class DemoConfig:
    classes_per_kind: int = 4
    groups: int = 4
    clips_per_group: int = 4
    num_frames: int = 32
    width: int = 128
    height: int = 96
    seed: int = 0
    kind: str = "demo"  # demo | benchmark (tclsta/demo.py)
    test_groups: int = 1


@dataclass(frozen=True)
class RawframesConfig:
    """Existing frames and flow (format ``rawframes``): mmaction2 annotation lists, or ``<root>/<class>/<video>/`` folders."""

    train_list: str | None = None  # mmaction2 annotation list, lines "<folder> <total_frames> <label>"
    test_list: str | None = None
    class_list: str | None = None  # class names in label order: one per line, or classInd.txt's "1 Name"
    flow_bound: float = 20.0  # the bound the flow JPEGs were written with (mmaction2 and denseflow: 20)


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    format: str
    root: str
    splits_dir: str = ""
    split: int = 1
    split_csv: str | None = None
    test_fraction: float = 0.3
    ablation: bool = False
    demo: DemoConfig = field(default_factory=DemoConfig)
    rawframes: RawframesConfig = field(default_factory=RawframesConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    collaborative: CollaborativeConfig = field(default_factory=CollaborativeConfig)


SECTION_TYPES = {
    "demo": DemoConfig,
    "rawframes": RawframesConfig,
    "preprocess": PreprocessConfig,
    "flow": FlowConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "fusion": FusionConfig,
    "collaborative": CollaborativeConfig,
}
"""The sections of a dataset's settings and their dataclasses."""


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _is_integer(value: object) -> bool:
    """JSON Schema takes 4.0 for an integer; the code would not (range(4.0), DataLoader(batch_size=4.0))."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite number: YAML's .nan and .inf (and 1e400) pass every minimum and maximum, and are refused here."""
    return _is_integer(value) or (isinstance(value, float) and math.isfinite(value))


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": lambda _, value: _is_integer(value), "number": lambda _, value: _is_number(value)}
    ),
)


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "type" and isinstance(error.instance, float) and not math.isfinite(error.instance):
        return f"{error.instance} is not a finite number"
    return error.message


def validate_config(config: dict, source: str = "config") -> None:
    """Raise BadConfigError naming the offending key when ``config`` breaks the schema."""
    validator = _Validator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        raise BadConfigError(key, f"{_message(error)} (in {source})")


def validate_settings(settings: dict, source: str) -> None:
    """Raise BadConfigError naming the key when part of one dataset's settings (what a stage is given) breaks the schema."""
    schema = _schema()
    properties = schema["$defs"]["dataset"]["properties"]
    for key, value in settings.items():
        if key == "name":
            continue
        if key not in properties:
            raise BadConfigError(key, f"unknown key (in {source})")
        errors = sorted(_Validator({"$defs": schema["$defs"], **properties[key]}).iter_errors(value),
                        key=lambda e: list(e.absolute_path))
        if errors:
            path = ".".join(str(p) for p in (key, *errors[0].absolute_path))
            raise BadConfigError(path, f"{_message(errors[0])} (in {source})")


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, line: int):
        super().__init__(key, line)
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a mapping that gives a key twice (PyYAML keeps the last value silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *defaults" may override keys
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_config_file(path: str | Path) -> dict:
    """A YAML config file's mapping (not validated); unreadable YAML or a key given twice is a BadConfigError."""
    path = Path(path)
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except _DuplicateKey as exc:
        raise BadConfigError(str(exc.key), f"given twice in one mapping ({path}, line {exc.line}); keep one") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadConfigError("<file>", f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise BadConfigError("<top level>", f"{path} must hold a mapping")
    return config


def load_config(path: str | Path) -> dict:
    """Read and validate a YAML config file."""
    config = read_config_file(path)
    validate_config(config, str(path))
    return config


def check_workflow_config(config: dict, configfiles: list[str]) -> None:
    """The Snakefile's check of the config Snakemake loaded from ``configfiles`` (its loader lets a duplicate
    key through) and merged into ``config``: the checks of :func:`load_config`."""
    for path in configfiles:
        read_config_file(path)
    validate_config(config, " and ".join(map(str, configfiles)) or "config")


# The recipe for real videos (every format but the generated demo), after the paper, the authors'
# release and TSN (Wang et al., ECCV 2016, and its PyTorch release); docs/pipeline.md tabulates each
# default with its source. It is the bottom layer: config.yaml's top-level sections and then the
# dataset's own entry override it key by key.
_FLOW_STAGES = (
    {"name": "spatial", "epochs": 80, "lr": 1e-3},  # TSN trains flow about 4x longer than RGB (340 vs 80 epochs)
    {"name": "temporal", "epochs": 5, "lr": 1e-3},
    {"name": "joint", "epochs": 5, "lr": 1e-5},
)
REAL_DATASET_RECIPE: dict[str, dict] = {
    "model": {"pretrained": "imagenet", "rgb": {"dropout": 0.8}, "flow": {"dropout": 0.7}},
    "train": {
        "optimizer": "sgd",
        "stages": [dict(stage) for stage in PAPER_STAGES],
        "flow": {"stages": [dict(stage) for stage in _FLOW_STAGES]},
        "scale_jitter": True,
        "partial_bn": True,
        "flip": True,
        "test_frames": 25,
        "test_crops": 10,
    },
}


def merge_section(*layers: dict) -> dict:
    """Merge layers of one section, later layers winning key by key.

    The per-stream maps (``rgb:``, ``flow:``) merge the same way, and a key a
    layer sets for both streams also replaces the per-stream values of that key
    from earlier layers: a dataset entry's ``train.stages`` wins over a default
    ``train.flow.stages``.
    """
    merged: dict = {}
    for layer in layers:
        common = {k: v for k, v in layer.items() if k not in STREAMS}
        merged.update(common)
        for stream in STREAMS:
            kept = {k: v for k, v in merged.get(stream, {}).items() if k not in common}
            merged[stream] = {**kept, **layer.get(stream, {})}
    return {k: v for k, v in merged.items() if not (k in STREAMS and not v)}


ALL_SPLITS = (1, 2, 3)
SPLIT_FORMATS = ("ucf101", "hmdb51", "demo")
"""The formats with official splits, which ``split: all`` or a list of splits can run one after another."""


def splits_of(split: int | str | list[int]) -> list[int]:
    """The split numbers of a dataset entry's ``split``: one number, ``all`` (1, 2, 3) or a list."""
    if split == "all":
        return list(ALL_SPLITS)
    return sorted(split) if isinstance(split, list) else [split]


def runs_of(config: dict, dataset: str) -> list[str]:
    """What one dataset entry trains and scores, each under ``results/<run>/``: the dataset itself, or,
    with ``split: all`` or a list, one run per split named ``<dataset>/split<N>``."""
    split = config["datasets"][dataset].get("split", 1)
    return [f"{dataset}/split{n}" for n in splits_of(split)] if isinstance(split, (str, list)) else [dataset]


def dataset_settings(config: dict, name: str) -> dict[str, Any]:
    """One dataset's settings: the real-dataset recipe (not for demo datasets), the defaults, then the
    dataset's own overrides.

    ``name`` is a dataset, or one split of a dataset that runs several (``ucf101/split2``, see
    :func:`runs_of`): its settings are the dataset's with that ``split``. A dataset that runs several
    splits keeps them as a list under ``split``; only its runs can be parsed (:func:`parse_dataset`).
    """
    dataset, _, split = name.partition("/split")
    if split:
        settings = dataset_settings(config, dataset)
        if f"{dataset}/split{split}" != name or name not in runs_of(config, dataset):
            raise BadConfigError(f"datasets.{dataset}.split", f"'{name}' is not one of its runs: {', '.join(runs_of(config, dataset))}")
        return {**settings, "name": name, "split": int(split)}
    if name not in config.get("datasets", {}):
        known = ", ".join(sorted(config.get("datasets", {})))
        raise BadConfigError(
            f"datasets.{name}",
            f"no such dataset; the config has {known}. To add one, give it an entry under 'datasets:' in "
            "config.yaml with format (ucf101, hmdb51 or folder), root (the videos) and, for ucf101 and "
            "hmdb51, splits_dir (see docs/datasets.md); its results go to results/<name>/",
        )
    entry = copy.deepcopy(config["datasets"][name])
    settings: dict[str, Any] = {"name": name, **{k: v for k, v in entry.items() if k not in SECTIONS}}
    if isinstance(settings.get("split"), (str, list)):
        if entry["format"] not in SPLIT_FORMATS:
            raise BadConfigError(f"datasets.{name}.split", f"several splits need format {', '.join(SPLIT_FORMATS)}, "
                                                            f"not {entry['format']}")
        settings["split"] = splits_of(settings["split"])
    recipe = {} if entry.get("format") == "demo" else copy.deepcopy(REAL_DATASET_RECIPE)
    for section in SECTIONS:
        settings[section] = merge_section(recipe.get(section, {}), config.get(section, {}), entry.get(section, {}))
    return settings


T = TypeVar("T")


def yaml_key(field_name: str) -> str:
    """The config file's name of a dataclass field (``lambda`` is a Python keyword: the field is ``lambda_``)."""
    return "lambda" if field_name == "lambda_" else field_name


def build_section(cls: type[T], values: dict, key: str) -> T:
    """Dataclass from a dict; YAML's ``lambda`` maps to ``lambda_``, lists to tuples."""
    names = {yaml_key(f.name): f.name for f in fields(cls)}
    kwargs = {}
    for k, v in values.items():
        if k not in names:
            raise BadConfigError(f"{key}.{k}", "unknown key")
        kwargs[names[k]] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


def parse_dataset(settings: dict[str, Any]) -> DatasetConfig:
    """Typed view of :func:`dataset_settings`' output."""
    kwargs = {k: v for k, v in settings.items() if k not in SECTION_TYPES}
    if isinstance(kwargs.get("split"), list):
        name = settings["name"]
        raise BadConfigError(f"datasets.{name}.split", f"runs splits {kwargs['split']}, each on its own: their results "
                                                       f"are under results/{name}/split<N>/, the mean in results/{name}/report.html")
    for section, cls in SECTION_TYPES.items():
        kwargs[section] = build_section(cls, settings.get(section, {}), section)
    try:
        return DatasetConfig(**kwargs)
    except TypeError as exc:
        raise BadConfigError(f"datasets.{settings.get('name')}", str(exc)) from exc


StreamSection = TypeVar("StreamSection", ModelConfig, TrainConfig)


def for_stream(section: StreamSection, stream: str) -> StreamSection:
    """The ``model`` or ``train`` section as one stream uses it: its ``rgb:``/``flow:`` overrides applied."""
    overrides = getattr(section, stream)
    key = f"{'model' if isinstance(section, ModelConfig) else 'train'}.{stream}"
    return build_section(type(section), {**section_dict(section), **overrides, "rgb": {}, "flow": {}}, key)


def section_dict(section: Any) -> dict:
    """A config section back as a YAML-style dict (``lambda_`` -> ``lambda``): the keys its stage declares
    (:mod:`tclsta.settings`), or all of them."""
    names = getattr(section, "__declared__", [f.name for f in fields(section)])
    return {yaml_key(name): copy.deepcopy(getattr(section, name)) for name in names}
