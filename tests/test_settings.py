"""Each config key reaches exactly the rules whose stage reads it, and the stage sees its value.

One dry run (``snakemake -n -p``) of the real workflow on a config holding the tiny
dataset once as it is and once per key of workflow/schemas/config.schema.yaml with
that key changed to another valid value; each job's ``--settings`` is compared with
the same job of the unchanged dataset.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, tiny_settings
from tclsta.ablation import VARIANTS_BY_NAME
from tclsta.config import REAL_DATASET_RECIPE, STREAMS, DatasetConfig, parse_dataset, validate_config, yaml_key
from tclsta.data.manifest import read_manifest
from tclsta.settings import SECTION_TYPES, StageSettings, UndeclaredSettingError, declared_settings
from tclsta.shared import shard_groups
from tclsta.train import train_stream
from test_workflow import snakemake, workdir  # noqa: F401  (workdir is a fixture)

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
BASE = "base"
# Values the generic rule of changed_value() cannot pick: another format than demo needs no generated data.
ALTERNATIVES = {"format": "folder", "split": 2, "model.rgb": {"dropout": 0.3}, "model.flow": {"dropout": 0.3},
                "train.rgb": {"batch_size": 3}, "train.flow": {"batch_size": 3}}  # per-stream overrides
# keys the schema accepts only together (dependentRequired): the walk changes them with their companions
COMPANIONS = {"rawframes.train_list": ("rawframes.test_list", "rawframes.class_list"),
              "rawframes.test_list": ("rawframes.train_list", "rawframes.class_list")}


def schema_keys() -> list[str]:
    """Every key a dataset entry can set, dotted (``root``, ``train.test_crops``)."""
    keys = []
    for key, spec in SCHEMA["$defs"]["dataset"]["properties"].items():
        section = spec.get("$ref", "").rpartition("/")[2]
        if section:
            keys += [f"{section}.{name}" for name in SCHEMA["$defs"][section]["properties"]]
        else:
            keys.append(key)
    return keys


def key_schema(key: str) -> dict:
    section, _, name = key.rpartition(".")
    return SCHEMA["$defs"][section]["properties"][name] if section else SCHEMA["$defs"]["dataset"]["properties"][key]


def base_value(entry: dict, key: str):
    """The key's value in a dataset entry, else its default (the config dataclasses')."""
    section, _, name = key.rpartition(".")
    values = entry.get(section, {}) if section else entry
    if name in values:
        return values[name]
    if section:
        field = {yaml_key(f.name): f for f in dataclasses.fields(SECTION_TYPES[section])}[name]
    else:
        field = {f.name: f for f in dataclasses.fields(DatasetConfig)}[name]
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    return [dict(item) if isinstance(item, dict) else item for item in default] if isinstance(default, tuple) else default


def changed_value(key: str, value):
    """Another value of ``key`` that the schema accepts."""
    if key in ALTERNATIVES:
        return ALTERNATIVES[key]
    spec = key_schema(key)
    if "enum" in spec:
        return next(v for v in spec["enum"] if v != value)
    kinds = spec.get("type", [])
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "boolean" in kinds:
        return not value
    if value is None:
        return "weights.pth" if "string" in kinds else spec.get("minimum", 1) * 2
    if "array" in kinds and isinstance(value[0], dict):  # training stages: one more epoch in the first
        return [{**value[0], "epochs": value[0]["epochs"] + 1}, *value[1:]]
    if "array" in kinds:
        return [value[0] + 8, *value[1:]]
    if "integer" in kinds:
        return value - 1 if value + 1 > spec.get("maximum", value + 1) else value + 1
    if "number" in kinds:
        top = spec.get("maximum", spec.get("exclusiveMaximum"))
        return (value + top) / 2 if top is not None else value * 2 or 0.5
    return f"{value}2"


def dataset_entry(name: str) -> dict:
    """The tiny dataset under the name ``name`` (a demo dataset lives in data/<name>/), ablation on."""
    entry = {k: v for k, v in tiny_settings(Path("data") / name).items() if k != "name"}
    entry["ablation"] = True
    # the keys the real-dataset recipe sets pinned to their demo values, so that the `format` change
    # (demo -> folder) changes only `format` (an entry's own value wins over the recipe's, for both streams)
    for section, values in REAL_DATASET_RECIPE.items():
        for key, value in values.items():
            for name_ in value if key in STREAMS else [key]:
                set_key(entry, f"{section}.{name_}", base_value(entry, f"{section}.{name_}"))
    return entry


def set_key(entry: dict, key: str, value) -> None:
    section, _, name = key.rpartition(".")
    (entry.setdefault(section, {}) if section else entry)[name] = value


def dry_run_jobs(output: str, owners: dict[str, str]) -> dict[tuple[str, str, tuple], tuple[str, dict]]:
    """(dataset, rule, other wildcards) -> (stage, settings) of every job with ``--settings`` in ``snakemake -n -p`` output;
    a job on shards is its key's owner's (``owners``: key -> dataset)."""
    jobs, rule, wildcards = {}, None, {}
    for line in output.splitlines():
        if match := re.match(r"(?:local)?(?:rule|checkpoint) (\w+):$", line):
            rule, wildcards = match.group(1), {}
        elif match := re.match(r"\s+wildcards: (.*)$", line):
            wildcards = dict(part.split("=", 1) for part in match.group(1).split(", "))
        elif line.startswith("Shell command: ") and "--settings" in line:
            words = shlex.split(line.removeprefix("Shell command: "))
            stage = next(words[i + 1] for i in range(1, len(words)) if words[i] == "tclsta" and words[i - 1] == "-m")
            others = tuple(sorted((k, v) for k, v in wildcards.items() if k not in ("dataset", "key")))
            dataset = wildcards["dataset"] if "dataset" in wildcards else owners[wildcards["key"]]
            jobs[dataset, rule, others] = stage, json.loads(words[words.index("--settings") + 1])
    return jobs


def normalised(settings: dict, dataset: str) -> str:
    """Settings with the dataset's own name (and its data/<name>/ folder) taken out."""
    text = json.dumps({k: v for k, v in settings.items() if k != "name"}, sort_keys=True)
    return text.replace(f"data/{dataset}/", "data/<dataset>/")


def read_key(parsed, key: str):
    section, _, name = key.rpartition(".")
    value = getattr(getattr(parsed, section) if section else parsed, "lambda_" if name == "lambda" else name)
    return [dict(v) if isinstance(v, dict) else v for v in value] if isinstance(value, tuple) else value


def test_every_key_reaches_exactly_the_rules_whose_stage_reads_it(workdir):  # noqa: F811
    keys = schema_keys()
    walked = {f"k{i}": key for i, key in enumerate(keys)}
    datasets, new_values = {BASE: dataset_entry(BASE)}, {}
    for name, key in walked.items():
        entry = dataset_entry(name)
        new_values[key] = changed_value(key, base_value(entry, key))
        set_key(entry, key, new_values[key])
        for companion in COMPANIONS.get(key, ()):
            set_key(entry, companion, changed_value(companion, base_value(entry, companion)))
        if key == "model.pretrained":  # a local weights file is an input of training: there
            (workdir / new_values[key]).touch()
        datasets[name] = entry
        if entry["format"] != "demo":  # data the workflow does not generate: there, so the DAG includes the dataset
            (workdir / entry["root"]).mkdir(parents=True, exist_ok=True)
        # split files the demo rule does not make (another split or splits_dir): present, so the DAG builds
        if entry["format"] == "demo" and (entry["split"], entry["splits_dir"]) != (1, f"data/{name}/splits"):
            for listing in ("classInd.txt", f"trainlist{entry['split']:02d}.txt", f"testlist{entry['split']:02d}.txt"):
                (workdir / entry["splits_dir"] / listing).parent.mkdir(parents=True, exist_ok=True)
                (workdir / entry["splits_dir"] / listing).touch()
    config = {"datasets": datasets}
    validate_config(config)  # every changed value is a valid one
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))

    run = snakemake(workdir, "-n", "-p")
    assert run.returncode == 0, run.stderr[-3000:]
    owners = {key: runs[0] for key, runs in shard_groups(config).items()}  # no two entries share shards: their roots differ
    jobs = dry_run_jobs(run.stdout + run.stderr, owners)
    base_jobs = {job[1:]: value for job, value in jobs.items() if job[0] == BASE}
    assert {rule for rule, _ in base_jobs} >= {"manifest", "extract_frames", "flow", "pack", "train_stream", "score_stream",
                                               "features", "collaborative", "fuse", "evaluate", "report", "ablation"}

    wrong, unseen = [], []
    for (name, rule, others), (stage, settings) in jobs.items():
        if name == BASE or (rule, others) not in base_jobs:
            continue
        key = walked[name]
        base_stage, base = base_jobs[rule, others]
        assert stage == base_stage
        variant = dict(others).get("variant")
        overridden = variant and key in {f"{s}.{k}" for s, v in VARIANTS_BY_NAME[variant].overrides.items() for k in v}
        declared = declared_settings(stage)
        expected = key in declared.keys() and not overridden
        if (normalised(settings, name) != normalised(base, BASE)) != expected:
            wrong.append(f"{key}: rule {rule} {dict(others)} (stage {stage}) {'missed' if expected else 'changed by'} it")
        elif expected and read_key(declared.parse(settings), key) != new_values[key]:
            unseen.append(f"{key}: stage {stage} reads {read_key(declared.parse(settings), key)!r}, not {new_values[key]!r}")
    assert not wrong, "\n".join(wrong)
    assert not unseen, "\n".join(unseen)
    assert {walked[name] for name, *_ in jobs if name != BASE} == set(keys)  # every key was walked through the DAG


def test_a_stage_reading_a_key_it_does_not_declare_fails_naming_both():
    parsed = StageSettings("score", train=("test_frames",)).parse({"name": "x", "train": {"test_frames": 3, "flip": True}})
    assert parsed.train.test_frames == 3
    with pytest.raises(UndeclaredSettingError, match="stage 'score' reads config key 'train.flip'"):
        parsed.train.flip
    with pytest.raises(UndeclaredSettingError, match="'root'"):
        parsed.root


def test_a_declaration_of_a_key_the_config_lacks_fails_naming_both():
    with pytest.raises(UndeclaredSettingError, match="stage 'score'.*train.test_crop "):
        StageSettings("score", train=("test_crop",))


def stage_run(stage: str, settings: dict, *args) -> None:
    run = subprocess.run([sys.executable, "-m", "tclsta", stage, "--settings", json.dumps(settings), *map(str, args)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]


def test_ten_crops_reach_scoring_and_features_and_change_them(tiny_dataset, tmp_path):
    """The score and features commands, given train.test_crops: 10 as the workflow passes it, score other than the centre crop."""
    import h5py

    manifest = read_manifest(tiny_dataset.manifest_path)
    config = tiny_dataset.config
    train_stream(tiny_dataset.shards, manifest, "rgb", config.model, config.train, tmp_path / "rgb.pt", tmp_path / "h.csv")
    inputs = ("--checkpoint", tmp_path / "rgb.pt", "--manifest", tiny_dataset.manifest_path, "--shards", *tiny_dataset.shards,
              "--threads", "2")
    scores, features = {}, {}
    for crops in (1, 10):
        settings = tiny_settings(tiny_dataset.root)
        settings["train"]["test_crops"] = crops
        assert parse_dataset(settings).train.test_crops == crops
        stage_run("score", declared_settings("score").select(settings), *inputs, "--output", tmp_path / f"{crops}.csv")
        stage_run("features", declared_settings("features").select(settings), *inputs, "--output", tmp_path / f"{crops}.h5")
        scores[crops] = pd.read_csv(tmp_path / f"{crops}.csv").filter(like="score_").to_numpy()
        with h5py.File(tmp_path / f"{crops}.h5") as file:
            features[crops] = file["features"][()]
    assert scores[1].shape == scores[10].shape and not np.allclose(scores[1], scores[10])
    assert features[1].shape == features[10].shape and not np.allclose(features[1], features[10])
