"""Which config keys each stage reads, declared beside the code that reads them.

A stage module declares its keys once::

    SCORE_SETTINGS = StageSettings("score", train=("test_frames", "test_crops", ...), model=...)

The workflow asks for them (:func:`stage_settings_json`, called by the rules
through ``settings(dataset, "score")`` in ``rules/common.smk``), so a rule's
``--settings`` holds exactly the keys its stage reads and Snakemake re-runs it
when one of them changes, and only then. The stage reads its settings through
:meth:`StageSettings.parse`, whose config objects raise
:class:`UndeclaredSettingError`, naming stage and key, on any key the stage
did not declare: it never silently reads a default in place of the configured
value. A declaration naming a key the config does not have fails when the
workflow imports it, that is when the DAG is built.

``STAGE_MODULES`` says where each stage's declaration lives.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any, Iterable

from tclsta.config import SECTION_TYPES, DatasetConfig, build_section, dataset_settings, yaml_key

# Where each stage (the CLI subcommand a rule runs) declares its settings: module, attribute.
STAGE_MODULES = {
    "demo": ("tclsta.demo", "DEMO_SETTINGS"),
    "manifest": ("tclsta.data.manifest", "MANIFEST_SETTINGS"),
    "extract": ("tclsta.preprocess", "EXTRACT_SETTINGS"),
    "flow": ("tclsta.flow", "FLOW_SETTINGS"),
    "pack": ("tclsta.preprocess", "PACK_SETTINGS"),
    "rawframes": ("tclsta.data.rawframes", "RAWFRAMES_SETTINGS"),
    "train": ("tclsta.train", "TRAIN_SETTINGS"),
    "score": ("tclsta.inference", "SCORE_SETTINGS"),
    "features": ("tclsta.features", "FEATURES_SETTINGS"),
    "collaborative": ("tclsta.collaborative", "COLLABORATIVE_SETTINGS"),
    "fuse": ("tclsta.evaluate", "FUSE_SETTINGS"),
    "model-choice": ("tclsta.model_choice", "MODEL_CHOICE_SETTINGS"),
    "evaluate": ("tclsta.evaluate", "EVALUATE_SETTINGS"),
    "attention": ("tclsta.attention_view", "ATTENTION_SETTINGS"),
    "ablation": ("tclsta.ablation", "ABLATION_SETTINGS"),
    "report": ("tclsta.report", "REPORT_SETTINGS"),
}

ENTRY_KEYS = tuple(f.name for f in dataclasses.fields(DatasetConfig) if f.name not in SECTION_TYPES and f.name != "name")
"""Keys of a dataset's own entry (format, root, splits_dir, ...), beside its sections."""


def section_keys(section: str) -> tuple[str, ...]:
    """Every key of a config section, as the config file spells them."""
    return tuple(yaml_key(f.name) for f in dataclasses.fields(SECTION_TYPES[section]))


class UndeclaredSettingError(AttributeError):
    """A stage read a config key it does not declare (a bug in the stage, not a user error)."""

    def __init__(self, stage: str, key: str):
        super().__init__(f"stage '{stage}' reads config key '{key}' but does not declare it: add it to its StageSettings")


class StageSettings:
    """The config keys one stage reads: ``entry`` keys of the dataset's own entry, and per section its keys."""

    def __init__(self, stage: str, entry: Iterable[str] = (), **sections: Iterable[str]):
        self.stage = stage
        self.entry = tuple(entry)
        self.sections = {name: tuple(keys) for name, keys in sections.items()}
        for key in self.entry:
            if key not in ENTRY_KEYS:
                raise UndeclaredSettingError(stage, f"{key} (declared, but datasets have no such key)")
        for name, keys in self.sections.items():
            if name not in SECTION_TYPES:
                raise UndeclaredSettingError(stage, f"{name} (declared, but the config has no such section)")
            for key in keys:
                if key not in section_keys(name):
                    raise UndeclaredSettingError(stage, f"{name}.{key} (declared, but the config has no such key)")

    def __repr__(self) -> str:
        return f"StageSettings({self.stage!r}, entry={self.entry!r}, **{self.sections!r})"

    def keys(self) -> set[str]:
        """Every declared key as a dotted path (``root``, ``train.test_crops``)."""
        return {*self.entry, *(f"{name}.{key}" for name, keys in self.sections.items() for key in keys)}

    def including(self, other: StageSettings) -> StageSettings:
        """These keys plus ``other``'s (a stage that records another stage's settings for it)."""
        sections = {name: dict.fromkeys((*self.sections.get(name, ()), *other.sections.get(name, ())))
                    for name in {*self.sections, *other.sections}}
        return StageSettings(self.stage, dict.fromkeys((*self.entry, *other.entry)), **sections)

    def select(self, resolved: dict[str, Any]) -> dict[str, Any]:
        """The declared part of one dataset's resolved settings (:func:`tclsta.config.dataset_settings`)."""
        chosen: dict[str, Any] = {"name": resolved["name"]}
        chosen.update({key: resolved[key] for key in self.entry if key in resolved})
        for name, keys in self.sections.items():
            values = resolved.get(name, {})
            chosen[name] = {key: values[key] for key in keys if key in values}
        return chosen

    def parse(self, settings: dict[str, Any]) -> DatasetConfig:
        """Typed settings whose undeclared keys raise :class:`UndeclaredSettingError` when read.

        ``settings`` holds at least what :meth:`select` returns (keys it lacks take the dataclass
        defaults, which are the config's); other keys in it are left out.
        """
        kwargs: dict[str, Any] = {"name": settings.get("name", "dataset"), "format": "", "root": ""}
        kwargs.update({key: settings[key] for key in self.entry if key in settings})
        for name, cls in SECTION_TYPES.items():
            declared = self.sections.get(name, ())
            values = {key: value for key, value in settings.get(name, {}).items() if key in declared}
            kwargs[name] = build_section(_restricted(cls, self.stage, name, declared), values, name)
        return _restricted(DatasetConfig, self.stage, "", ("name", *self.entry, *SECTION_TYPES))(**kwargs)


def _restricted(cls: type, stage: str, section: str, declared: tuple[str, ...]) -> type:
    """A subclass of the config dataclass ``cls`` whose fields outside ``declared`` raise when read."""
    allowed = tuple(f.name for f in dataclasses.fields(cls) if yaml_key(f.name) in declared)
    hidden = {f.name for f in dataclasses.fields(cls)} - set(allowed)
    prefix = f"{section}." if section else ""

    def __getattribute__(self, name: str) -> Any:
        if name in hidden:
            raise UndeclaredSettingError(stage, prefix + yaml_key(name))
        return object.__getattribute__(self, name)

    def __repr__(self) -> str:
        return f"{cls.__name__}({', '.join(f'{name}={getattr(self, name)!r}' for name in allowed)}; for stage {stage})"

    def __reduce__(self):  # worker processes rebuild the same restricted view
        return _rebuild, (cls, stage, section, declared, {name: getattr(self, name) for name in allowed})

    members = {"__getattribute__": __getattribute__, "__repr__": __repr__, "__reduce__": __reduce__, "__declared__": allowed}
    return type(cls.__name__, (cls,), members)


def _rebuild(cls: type, stage: str, section: str, declared: tuple[str, ...], values: dict[str, Any]) -> Any:
    return _restricted(cls, stage, section, declared)(**values)


def declared_settings(stage: str) -> StageSettings:
    """The declaration of ``stage`` (imports its module)."""
    module, attribute = STAGE_MODULES[stage]
    return getattr(importlib.import_module(module), attribute)


def stage_settings_json(config: dict, dataset: str, stage: str, name: str | None = None) -> str:
    """A rule's ``--settings``: the keys ``stage`` declares, from ``dataset``'s resolved settings;
    ``name`` in place of the dataset's for a job that serves several (shared shards: their folder)."""
    chosen = declared_settings(stage).select(dataset_settings(config, dataset))
    return json.dumps({**chosen, "name": name or chosen["name"]}, sort_keys=True)
