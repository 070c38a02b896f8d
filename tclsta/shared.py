"""One preprocessing for every run that reads the same videos the same way.

Frames and flow depend on the videos and on the settings of the stages that make shards (extraction,
flow and packing; for rawframes, the import), not on the dataset entry or its split. Every run
(:func:`tclsta.config.runs_of`) whose entry reads the same ``root``, cut into the same number of
shards with the same such settings, reads the shards of ``work/shards/<key>/``, where ``key`` is a
short hash of all that (:func:`shards_key`) and ``key.json`` in the folder spells it out. So two
entries over the same videos, or the three splits of one, extract frames and compute flow once, and
a shard holds every video that one of its runs lists.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from tclsta.atomic import write_text_if_changed
from tclsta.config import PreprocessConfig, build_section, dataset_settings, runs_of, section_dict
from tclsta.settings import declared_settings

SHARD_STAGES = {"video": ("extract", "flow", "pack"), "rawframes": ("rawframes",)}
"""The stages whose settings decide what the shards hold, by the kind of dataset."""
HOW_NOT_WHAT = {"flow": ("backend", "batch_pairs")}
"""Settings that choose how a shard is computed, not what it holds: runs that differ only in them share shards."""


def shard_recipe(settings: dict[str, Any]) -> dict[str, Any]:
    """What the shards of one run's settings (:func:`tclsta.config.dataset_settings`) hold: the videos'
    root (as written, normalised), the number of shards and the values in effect (defaults included)
    of the settings :data:`SHARD_STAGES` declare."""
    kind = "rawframes" if settings["format"] == "rawframes" else "video"
    num_shards = build_section(PreprocessConfig, settings.get("preprocess", {}), "preprocess").num_shards
    recipe: dict[str, Any] = {"root": os.path.normpath(settings["root"]), "num_shards": num_shards, "kind": kind}
    for stage in SHARD_STAGES[kind]:
        declared = declared_settings(stage)
        parsed = declared.parse(declared.select(settings))  # the values in effect, defaults included
        recipe[stage] = {key: getattr(parsed, key) for key in declared.entry}
        for section in declared.sections:
            values = section_dict(getattr(parsed, section))
            recipe[stage][section] = {k: v for k, v in values.items() if k not in HOW_NOT_WHAT.get(section, ())}
    return recipe


def shards_key(settings: dict[str, Any]) -> str:
    """The name of the folder under ``work/shards/`` holding the shards of one run's settings."""
    return hashlib.sha256(json.dumps(shard_recipe(settings), sort_keys=True).encode()).hexdigest()[:12]


def shards_folder(config: dict, run: str) -> Path:
    """The folder of the shards a run reads, ``work/shards/<key>/``."""
    return Path("work/shards") / shards_key(dataset_settings(config, run))


def shard_groups(config: dict) -> dict[str, list[str]]:
    """Every run of the config by the key of the shards it reads, both in config order."""
    groups: dict[str, list[str]] = {}
    for dataset in config["datasets"]:
        for run in runs_of(config, dataset):
            groups.setdefault(shards_key(dataset_settings(config, run)), []).append(run)
    return groups


def shared_manifest(manifests: list[pd.DataFrame]) -> pd.DataFrame:
    """The videos of shards that several runs share: every video any of their manifests lists, once.

    A video listed by several runs keeps the first one's class and label (the shards record them for
    reference; training and scoring take each run's own from its manifest).
    """
    return pd.concat(manifests, ignore_index=True).drop_duplicates("video_id", ignore_index=True)


def write_key_file(folder: str | Path, settings: dict[str, Any], runs: list[str]) -> None:
    """``<folder>/key.json``: what the shards of ``folder`` hold (:func:`shard_recipe` of one of its runs'
    ``settings``) and which ``runs`` read them; rewritten only when that changes."""
    write_text_if_changed(Path(folder) / "key.json", json.dumps({"runs": runs, **shard_recipe(settings)}, indent=1) + "\n")
