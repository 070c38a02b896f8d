"""Where a dataset's files are, and what to tell a user whose copy is not there.

The workflow asks :func:`manifest_sources` for the files a dataset's manifest is built from, and
the ``manifest`` command checks the same. For a configured dataset whose videos or split files are
not where its entry points, they raise :class:`~tclsta.errors.MissingDataError`, whose message says
what was looked for where, where the official archives come from (the project downloads nothing),
how to unpack them into the places ``config.yaml`` ships with, and which keys to set instead. The
default target builds only the datasets with nothing :func:`missing_data`.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tclsta.config import splits_of
from tclsta.data.manifest import MULTILABEL_DEMO_CSV, ucf_split_files
from tclsta.errors import MissingDataError

VIDEO_LAYOUT = {
    "ucf101": "<Class>/v_<Class>_gXX_cYY.avi",
    "hmdb51": "<class>/<video>.avi",
    "folder": "<class>/<video>",
    "multilabel": "any/<video> listed in split_csv (columns path, split, labels: names joined by ';')",
    "rawframes": "<video>/img_00001.jpg, flow_x_00001.jpg, flow_y_00001.jpg (<class>/<video>/ without lists)",
}

# How to get each public dataset, for the message of MissingDataError. The commands produce the
# layout that config.yaml's entries read (data/UCF-101, data/hmdb51, ...), from the project folder.
HOW_TO_GET = {
    "ucf101": """\
TCLSTA downloads nothing. The official archives are on the UCF101 page,
https://www.crcv.ucf.edu/data/UCF101.php: UCF101.rar (the videos) and
UCF101TrainTestSplits-RecognitionTask.zip (the split files). UCF101.rar is a RAR archive:
Debian's unar opens it (apt-get install unar unzip). From the project folder:
    unar -o data UCF101.rar                                  # -> data/UCF-101/<Class>/*.avi
    unzip -d data UCF101TrainTestSplits-RecognitionTask.zip  # -> data/ucfTrainTestlist/""",
    "hmdb51": """\
TCLSTA downloads nothing. The official archives are on the HMDB51 page,
https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/:
hmdb51_org.rar (the videos: one RAR per class inside a RAR) and test_train_splits.rar
(the split files). Debian's unar opens RAR archives (apt-get install unar). From the project folder:
    unar -o data/hmdb51_rars hmdb51_org.rar  # 51 RARs, one per class
    mkdir -p data/hmdb51 && find data/hmdb51_rars -name '*.rar' -exec unar -o data/hmdb51 {} \\;
    rm -r data/hmdb51_rars                   # -> data/hmdb51/<class>/*.avi
    unar -o data test_train_splits.rar       # -> data/testTrainMulti_7030_splits/""",
}


def split_files(settings: dict[str, Any]) -> list[str]:
    """The split files of a demo or ucf101 dataset: class index, train and test lists (of each split it runs)."""
    names = {name: None for split in splits_of(settings.get("split", 1)) for name in ucf_split_files(split).values()}
    return [f"{settings['splits_dir']}/{name}" for name in names]


def missing_data(settings: dict[str, Any]) -> list[str]:
    """What a dataset's entry points at that is not there, one line each (empty when all is there).

    ``settings`` is :func:`tclsta.config.dataset_settings`' output. Demo datasets are generated
    by the workflow, so nothing is missing for them.
    """
    fmt = settings["format"]
    if fmt == "demo":
        return []
    missing = []
    if not Path(settings["root"]).is_dir():
        missing.append(f"the videos ({VIDEO_LAYOUT[fmt]}) in {settings['root']}/: no such folder")
    if fmt == "ucf101":
        absent = [Path(path).name for path in split_files(settings) if not Path(path).is_file()]
        if absent:
            missing.append(f"the split files in {settings['splits_dir']}/: {', '.join(absent)} not found")
    elif fmt == "hmdb51":
        missing += [f"split files {settings['splits_dir']}/<class>_test_split{split}.txt: none found"
                    for split in splits_of(settings.get("split", 1)) if not hmdb51_split_files({**settings, "split": split})]
    elif fmt in ("folder", "rawframes", "multilabel") and settings.get("split_csv") and not Path(settings["split_csv"]).is_file():
        missing.append(f"split file {settings['split_csv']}: not found")
    missing += [f"rawframes list {path}: not found" for path in rawframes_lists(settings) if not Path(path).is_file()]
    return missing


def rawframes_lists(settings: dict[str, Any]) -> list[str]:
    """The annotation lists and class list of a rawframes dataset that has them (else none)."""
    listed = settings.get("rawframes", {})
    if settings["format"] != "rawframes" or not listed.get("train_list"):
        return []
    return [listed["train_list"], listed["test_list"], listed["class_list"]]


def hmdb51_split_files(settings: dict[str, Any]) -> list[str]:
    """The ``<class>_test_split<N>.txt`` files of an hmdb51 dataset (of each split it runs), sorted."""
    return sorted(path for split in splits_of(settings.get("split", 1))
                  for path in glob.glob(f"{glob.escape(settings['splits_dir'])}/*_test_split{split}.txt"))


def require_data(settings: dict[str, Any]) -> None:
    """Raise MissingDataError, saying what to do, when a dataset's data is not where its entry points."""
    missing = missing_data(settings)
    if missing:
        raise MissingDataError(settings["name"], missing, instructions(settings))


# Snakemake reads {name} in a file name as a wildcard and <name> as a path variable.
SNAKEMAKE_PATTERN_CHARACTERS = frozenset("{}<>")


def dag_files(paths: Iterable[str]) -> list[str]:
    """The ``paths`` Snakemake can take as input files: those without ``{``, ``}``, ``<`` or ``>``.

    Names are data: a video or class folder named so is still listed in its shard and processed; it
    is only no input of the DAG (a change to that one file alone does not re-run its shard).
    """
    return [path for path in paths if not SNAKEMAKE_PATTERN_CHARACTERS & set(path)]


def manifest_sources(settings: dict[str, Any]) -> list[str]:
    """The files a dataset's manifest is built from; raises MissingDataError when they are not there.

    Split files for demo (made by the demo rule), ucf101 and hmdb51 datasets; the labels CSV of
    multi-label datasets; for folder datasets the class folders, whose mtimes change when videos
    are added or removed, and the split CSV if any.
    """
    require_data(settings)
    fmt = settings["format"]
    if fmt == "multilabel":
        return [settings["split_csv"]]
    if fmt == "demo" and settings.get("demo", {}).get("kind") == "multilabel":
        return [f"{settings['splits_dir']}/{MULTILABEL_DEMO_CSV}"]
    if fmt in ("demo", "ucf101"):
        return split_files(settings)
    if fmt == "hmdb51":
        return hmdb51_split_files(settings)
    if rawframes_lists(settings):
        return rawframes_lists(settings)
    folders = sorted(p for p in glob.glob(f"{glob.escape(settings['root'])}/*") if Path(p).is_dir())
    return dag_files(folders) + ([settings["split_csv"]] if settings.get("split_csv") else [])


def instructions(settings: dict[str, Any]) -> str:
    """How to put a dataset's data in place, or point its entry at a copy elsewhere."""
    name, fmt = settings["name"], settings["format"]
    keys = f"datasets.{name}.root" + (f" and datasets.{name}.splits_dir" if fmt not in ("folder", "rawframes", "multilabel") else "")
    if fmt == "multilabel":
        return f"Put the videos there as {VIDEO_LAYOUT[fmt]},\nor set {keys} and datasets.{name}.split_csv in config.yaml."
    if fmt in ("folder", "rawframes"):
        return (
            f"Put the {'videos' if fmt == 'folder' else 'frame folders'} there as {VIDEO_LAYOUT[fmt]}"
            f"{' (one folder per class)' if fmt == 'folder' else ''},\n"
            f"or set {keys} in config.yaml."
        )
    return (
        f"{HOW_TO_GET[fmt]}\n"
        f"A copy elsewhere: link it there (ln -s /path/to/{Path(settings['root']).name} {settings['root']}; the same\n"
        f"for the split folder), or set {keys} in config.yaml."
    )
