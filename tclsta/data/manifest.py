"""The video manifest: one row per video, built from a dataset's split files.

Columns: ``video_id`` (path below the root, without extension), ``path``
(absolute), ``class_name``, ``label`` (0-based), ``split`` (train/val/test),
``group`` (UCF-style ``gXX`` recording group, else the video id) and ``shard``
(a stable hash of the id, so adding videos never moves old ones).

Formats: UCF101 (``classInd.txt``, ``trainlistNN.txt``, ``testlistNN.txt``; the
demo dataset uses it too), HMDB51 (``<class>_test_splitN.txt``), plain
class-per-folder datasets with a user CSV or a seeded group-aware split, and
multi-label datasets: a CSV of ``path``, ``split`` and ``labels`` (class names
joined by ``;``), whose manifest keeps that ``labels`` column
(:mod:`tclsta.multilabel`; ``class_name``/``label`` are the first listed class).

The validation split is carved from training data by whole groups, per class,
so clips of one recording never straddle train and val; the test split is
never used for model selection.
"""

from __future__ import annotations

import logging
import re
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from tclsta.config import ALL_SPLITS, DatasetConfig
from tclsta.atomic import write_text_if_changed
from tclsta.data.tables import read_table, read_text_file
from tclsta.errors import BadSplitFileError
from tclsta.settings import StageSettings

log = logging.getLogger(__name__)
MANIFEST_COLUMNS = ["video_id", "path", "class_name", "label", "split", "group", "shard"]
MANIFEST_SETTINGS = StageSettings(
    "manifest",
    entry=("format", "root", "splits_dir", "split", "split_csv", "test_fraction"),
    demo=("kind",),
    rawframes=("train_list", "test_list", "class_list"),
    preprocess=("num_shards", "on_bad_video"),
    train=("val_fraction", "seed"),
)
SHARD_LIST_COLUMNS = ["video_id", "path", "class_name", "label", "shard"]  # what one shard's extraction reads
_GROUP = re.compile(r"_g(\d+)_c\d+$")
# A count or index in a list file: ASCII digits only (str.isdigit takes "²", which int() refuses).
ASCII_NUMBER = re.compile(r"[0-9]+")
LABELS_COLUMN = "labels"  # multi-label manifests only: the video's class names joined by SEPARATOR
SEPARATOR = ";"
MULTILABEL_DEMO_CSV = "labels.csv"  # the labels CSV of a generated multi-label demo, in its splits_dir


def is_multilabel(manifest: pd.DataFrame) -> bool:
    """Whether a manifest's videos carry sets of classes (a ``labels`` column)."""
    return LABELS_COLUMN in manifest.columns


def split_labels(text: str) -> list[str]:
    """``"a;b"`` -> ``["a", "b"]`` (blanks around names dropped, empty names skipped)."""
    return [name.strip() for name in text.split(SEPARATOR) if name.strip()]


def multi_hot(manifest: pd.DataFrame, classes: Sequence[str], video_ids: Sequence[str]) -> np.ndarray:
    """(N, K) float32 0/1 targets of ``video_ids`` from a multi-label manifest."""
    index = {name: k for k, name in enumerate(classes)}
    labels = manifest.set_index("video_id")[LABELS_COLUMN]
    targets = np.zeros((len(video_ids), len(classes)), np.float32)
    for row, video_id in enumerate(video_ids):
        targets[row, [index[name] for name in split_labels(labels[video_id])]] = 1
    return targets


def shard_of(video_id: str, num_shards: int) -> int:
    """Stable shard index of a video (independent of the other videos)."""
    return zlib.crc32(video_id.encode("utf-8")) % num_shards


def group_of(video_id: str) -> str:
    """Recording group of a UCF-style name (``v_X_g08_c01`` -> ``g08``), else the id itself."""
    match = _GROUP.search(video_id)
    return f"g{int(match.group(1)):02d}" if match else video_id


def read_class_index(path: Path) -> list[str]:
    """Class names in label order from a UCF101 ``classInd.txt`` (``1 ClassName`` lines)."""
    if not path.is_file():
        raise BadSplitFileError(path, "class index file not found")
    entries: dict[int, str] = {}
    for lineno, line in enumerate(read_text_file(path, BadSplitFileError).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not ASCII_NUMBER.fullmatch(parts[0]):
            raise BadSplitFileError(path, f"line {lineno}: expected '<index> <class name>', got {line!r}")
        index, name = int(parts[0]), parts[1].strip()
        if index in entries or name in entries.values():
            raise BadSplitFileError(path, f"line {lineno}: duplicate class {line!r}")
        entries[index] = name
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise BadSplitFileError(path, "class indices must run 1..K without gaps")
    return [entries[i] for i in range(1, len(entries) + 1)]


def resolve_inside(root: Path, relative: str | Path, listing: Path, where: str) -> tuple[Path, Path]:
    """The real path of ``root/relative`` (``..`` and symlinks resolved) and that path relative to ``root``.

    ``root`` must be resolved already. A path that leaves ``root``, lexically or through a symlink,
    is refused naming ``listing`` and ``where`` (its line or row). Every later check (class, label,
    duplicates) uses the returned paths, so ``ClassA/../ClassB/x.avi`` is ``ClassB/x.avi``.
    """
    real = (root / relative).resolve()
    if not real.is_relative_to(root):
        raise BadSplitFileError(listing, f"{where}: {str(relative)!r} points outside the dataset root {root}")
    return real, real.relative_to(root)


def read_ucf_split(path: Path, root: Path, classes: list[str]) -> list[tuple[str, Path, str]]:
    """``(video_id, absolute path, class name)`` for each line of a UCF101 train/test list."""
    if not path.is_file():
        raise BadSplitFileError(path, "split file not found")
    root = root.resolve()
    rows = []
    for lineno, line in enumerate(read_text_file(path, BadSplitFileError).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        relative, _, label_text = line.rpartition(" ") if re.search(r" \d+$", line) else (line, "", "")
        video_path, inside = resolve_inside(root, relative, path, f"line {lineno}")
        class_name = inside.parts[0] if len(inside.parts) > 1 else ""
        if class_name not in classes:
            raise BadSplitFileError(path, f"line {lineno}: class {class_name!r} of {relative!r} is not in classInd.txt")
        if label_text and int(label_text) != classes.index(class_name) + 1:
            raise BadSplitFileError(
                path, f"line {lineno}: label {label_text} of {relative!r} disagrees with classInd.txt ({class_name})"
            )
        rows.append((str(inside.with_suffix("")), video_path, class_name))
    return rows


def group_keys(frame: pd.DataFrame) -> list[str]:
    """Recording group of each video, scoped by class (``Class/g08``, else ``Class/<video>``)."""
    return [f"{c}/{group_of(Path(v).name)}" for c, v in zip(frame["class_name"], frame["video_id"])]


def hmdb_source(name: str, class_name: str) -> str:
    """The source video of an HMDB51 clip: its name before ``_<class>_``, which the per-clip tags follow
    (``April_09_brush_hair_u_nm_np1_ba_goo_0`` -> ``April_09``); the tags (body part, camera motion,
    people, viewpoint, quality) can differ between clips of one source. A name without ``_<class>_``
    is its own source."""
    source, found, _ = name.rpartition(f"_{class_name}_")
    return source if found else name


def hmdb_group_keys(frame: pd.DataFrame) -> list[str]:
    """Source video of each HMDB51 clip, scoped by class (``brush_hair/April_09``)."""
    return [f"{c}/{hmdb_source(Path(v).name, c)}" for c, v in zip(frame["class_name"], frame["video_id"])]


def split_groups(frame: pd.DataFrame, fraction: float, seed: int) -> set[str]:
    """A seeded choice of about ``fraction`` of each class's groups (at least one, never all)."""
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for _, rows in frame.groupby("class_name", sort=True):
        groups = sorted(rows["group"].unique())
        if len(groups) < 2:
            continue
        count = min(len(groups) - 1, max(1, round(len(groups) * fraction)))
        chosen |= {groups[i] for i in rng.permutation(len(groups))[:count]}
    return chosen


def finish_manifest(frame: pd.DataFrame, classes: list[str], source: Path, val_fraction: float, num_shards: int, seed: int,
                    grouping: Callable[[pd.DataFrame], list[str]] = group_keys) -> pd.DataFrame:
    """Check a (video_id, path, class_name, label, split) table, carve validation groups (``grouping``
    names each video's group), assign shards."""
    for column in ("video_id", "path"):  # paths are resolved: one file under two names is caught too
        duplicated = frame[column][frame[column].duplicated()]
        if len(duplicated):
            raise BadSplitFileError(source, f"video listed twice: {duplicated.iloc[0]}")
    untrained = sorted(set(classes) - classes_in(frame, "train"))
    if untrained:
        raise BadSplitFileError(source, f"no training videos for class(es) {untrained}")
    untested = sorted(set(classes) - classes_in(frame, "test"))
    if untested:
        log.warning("%s: no test videos for class(es) %s: the report shows '–' for their accuracy", source, untested)
    frame = frame.copy()
    frame["group"] = grouping(frame)
    train = frame["split"] == "train"
    frame.loc[train & frame["group"].isin(split_groups(frame[train], val_fraction, seed)), "split"] = "val"
    frame["shard"] = frame["video_id"].map(lambda v: shard_of(v, num_shards))
    columns = MANIFEST_COLUMNS + [LABELS_COLUMN] * is_multilabel(frame)
    return frame[columns].sort_values("video_id", ignore_index=True)


def classes_in(frame: pd.DataFrame, split: str) -> set[str]:
    """The classes the videos of ``split`` carry (every listed class of a multi-label video)."""
    rows = frame[frame["split"] == split]
    if is_multilabel(frame):
        return {name for text in rows[LABELS_COLUMN] for name in split_labels(text)}
    return set(rows["class_name"])


def labelled_table(rows: list[tuple[str, Path, str, str]], classes: list[str]) -> pd.DataFrame:
    """(video_id, path, class, split) tuples as a manifest table with labels."""
    frame = pd.DataFrame([(v, str(p), c, s) for v, p, c, s in rows], columns=["video_id", "path", "class_name", "split"])
    frame["label"] = frame["class_name"].map(classes.index).astype(int) if len(frame) else []
    return frame


def ucf_split_files(split: int) -> dict[str, str]:
    """The split files of the UCF101 layout (the demo dataset's too): class index, train and test lists."""
    return {"classes": "classInd.txt", "train": f"trainlist{split:02d}.txt", "test": f"testlist{split:02d}.txt"}


def all_ucf_split_files() -> list[str]:
    """The split files of all three splits of the UCF101 layout (the demo generator writes them all)."""
    return list(dict.fromkeys(name for split in ALL_SPLITS for name in ucf_split_files(split).values()))


def hmdb_split_suffix(split: int) -> str:
    """HMDB51's split files are ``<class><suffix>``."""
    return f"_test_split{split}.txt"


def build_ucf_manifest(
    root: Path, splits_dir: Path, split: int, val_fraction: float, num_shards: int, seed: int, strict: bool = True
) -> pd.DataFrame:
    """Manifest of a dataset in the UCF101 layout (the demo dataset uses it too)."""
    root, splits_dir = Path(root), Path(splits_dir)
    files = ucf_split_files(split)
    classes = read_class_index(splits_dir / files["classes"])
    rows = []
    for split_name in ("train", "test"):
        file_name = files[split_name]
        entries = read_ucf_split(splits_dir / file_name, root, classes)
        require_files(splits_dir / file_name, [p for _, p, _ in entries], strict)
        rows += [(vid, p, c, split_name) for vid, p, c in entries]
    return finish_manifest(labelled_table(rows, classes), classes, splits_dir, val_fraction, num_shards, seed)


def require_files(listing: Path, paths: list[Path], strict: bool, exists: Callable[[Path], bool] = Path.is_file) -> None:
    """Fail naming the split file and the videos it lists that do not exist (``exists``: files, or frame folders).

    Not strict (``on_bad_video: skip``): missing videos stay in the manifest and
    the extraction stage lists them as rejected.
    """
    missing = [str(p) for p in paths if not exists(p)]
    if missing and strict:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BadSplitFileError(listing, f"{len(missing)} listed video(s) not found: {shown}")


def build_hmdb_manifest(
    root: Path, splits_dir: Path, split: int, val_fraction: float, num_shards: int, seed: int, strict: bool = True
) -> pd.DataFrame:
    """Manifest of HMDB51: ``<root>/<class>/<video>.avi`` and ``<class>_test_split<N>.txt`` files
    whose lines are ``<video> <0|1|2>`` (1 train, 2 test, 0 unused)."""
    root, splits_dir = Path(root).resolve(), Path(splits_dir)
    suffix = hmdb_split_suffix(split)
    split_files = sorted(splits_dir.glob(f"*{suffix}"))
    if not split_files:
        raise BadSplitFileError(splits_dir, f"no *{suffix} files")
    classes = [f.name[: -len(suffix)] for f in split_files]
    rows = []
    for class_name, listing in zip(classes, split_files):
        paths = []
        for lineno, line in enumerate(read_text_file(listing, BadSplitFileError).splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in {"0", "1", "2"}:
                raise BadSplitFileError(listing, f"line {lineno}: expected '<video> <0|1|2>', got {line!r}")
            if parts[1] == "0":
                continue
            path, inside = resolve_inside(root, Path(class_name, parts[0]), listing, f"line {lineno}")
            if inside.parts[0] != class_name:
                raise BadSplitFileError(listing, f"line {lineno}: {parts[0]!r} points outside {root / class_name}")
            paths.append(path)
            rows.append((str(inside.with_suffix("")), path, class_name, "train" if parts[1] == "1" else "test"))
        require_files(listing, paths, strict)
    return finish_manifest(labelled_table(rows, classes), classes, splits_dir, val_fraction, num_shards, seed, hmdb_group_keys)


VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv")


def scan_folder(root: Path) -> tuple[list[str], list[tuple[str, Path, str]]]:
    """Classes (sub-folder names, sorted) and ``(video_id, path, class)`` of ``<root>/<class>/<video>``.

    ``path`` is resolved; a video or class folder that is a symlink leaving the root is refused.
    """
    root = Path(root).resolve()
    try:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        videos = []
        for class_name in classes:
            for path in sorted((root / class_name).iterdir()):
                if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                    real, _ = resolve_inside(root, f"{class_name}/{path.name}", root, "folder scan")
                    videos.append((f"{class_name}/{path.stem}", real, class_name))
    except OSError as exc:
        raise BadSplitFileError(Path(exc.filename or root), f"cannot list the dataset folder: {exc.strerror}") from exc
    if not videos:
        raise BadSplitFileError(root, f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in <root>/<class>/ folders")
    return classes, videos


FolderScan = Callable[[Path], tuple[list[str], list[tuple[str, Path, str]]]]


def build_folder_manifest(
    root: Path, split_csv: Path | None, test_fraction: float, val_fraction: float, num_shards: int, seed: int,
    scan: FolderScan = scan_folder,
) -> pd.DataFrame:
    """Manifest of a class-per-folder dataset. The test split comes from ``split_csv`` (columns
    ``path`` relative to the root and ``split`` train/test) or, without one, from a seeded choice of
    whole groups per class (UCF-style ``gXX`` groups never straddle train and test). ``scan`` lists
    the videos: files (:func:`scan_folder`) or folders of existing frames."""
    classes, videos = scan(root)
    if split_csv is None:
        frame = labelled_table([(v, p, c, "train") for v, p, c in videos], classes)
        frame["group"] = group_keys(frame)
        frame.loc[frame["group"].isin(split_groups(frame, test_fraction, seed)), "split"] = "test"
        return finish_manifest(frame.drop(columns="group"), classes, Path(root), val_fraction, num_shards, seed)
    listing = read_table(split_csv, text=("path",), choices={"split": ("train", "test")})
    empty = listing[listing["path"].str.strip() == ""]
    if len(empty):
        raise BadSplitFileError(split_csv, f"row {empty.index[0] + 2}: empty path")
    by_path = {p: (v, c) for v, p, c in videos}
    root = Path(root).resolve()
    rows = []
    for number, (relative, split) in enumerate(zip(listing["path"], listing["split"]), 2):
        path, _ = resolve_inside(root, relative, split_csv, f"row {number}")
        if path not in by_path:
            raise BadSplitFileError(split_csv, f"row {number}: {relative!r} is not a video in a class folder of {root}")
        video_id, class_name = by_path[path]
        rows.append((video_id, path, class_name, split))
    return finish_manifest(labelled_table(rows, classes), classes, Path(split_csv), val_fraction, num_shards, seed)


def build_multilabel_manifest(root: Path, labels_csv: Path, val_fraction: float, num_shards: int, seed: int,
                              strict: bool = True) -> pd.DataFrame:
    """Manifest of a multi-label dataset: ``labels_csv`` has the columns ``path`` (a video below ``root``),
    ``split`` (train/test) and ``labels`` (class names joined by ``;``); the classes are every name listed, sorted."""
    labels_csv = Path(labels_csv)
    if not labels_csv.is_file():
        raise BadSplitFileError(labels_csv, "labels CSV not found")
    listing = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    if not {"path", "split", LABELS_COLUMN} <= set(listing.columns):
        raise BadSplitFileError(labels_csv, f"needs columns 'path', 'split' and 'labels', has {list(listing.columns)}")
    root = Path(root).resolve()
    rows, label_sets = [], []
    for number, (relative, split, labels) in enumerate(zip(listing["path"], listing["split"], listing[LABELS_COLUMN]), 2):
        names = list(dict.fromkeys(split_labels(labels)))
        if not relative.strip() or split not in ("train", "test") or not names:
            raise BadSplitFileError(labels_csv, f"row {number}: expected a path, split train or test and at least one "
                                                f"label, got {relative!r}, {split!r}, {labels!r}")
        path, inside = resolve_inside(root, relative, labels_csv, f"row {number}")
        rows.append((str(inside.with_suffix("")), path, names[0], split))
        label_sets.append(SEPARATOR.join(names))
    require_files(labels_csv, [path for _, path, _, _ in rows], strict)
    classes = sorted({name for text in label_sets for name in split_labels(text)})
    frame = labelled_table(rows, classes)
    frame[LABELS_COLUMN] = label_sets
    return finish_manifest(frame, classes, labels_csv, val_fraction, num_shards, seed)


def multilabel_csv(dataset: DatasetConfig) -> Path | None:
    """The labels CSV of a multi-label dataset (format ``multilabel``, or a generated ``demo.kind: multilabel``)."""
    if dataset.format == "multilabel":
        return Path(dataset.split_csv)
    if dataset.format == "demo" and dataset.demo.kind == "multilabel":
        return Path(dataset.splits_dir) / MULTILABEL_DEMO_CSV
    return None


def build_manifest(dataset: DatasetConfig) -> pd.DataFrame:
    """The manifest of a configured dataset, whatever its format."""
    common = dict(val_fraction=dataset.train.val_fraction, num_shards=dataset.preprocess.num_shards, seed=dataset.train.seed)
    strict = dataset.preprocess.on_bad_video == "fail"
    if multilabel_csv(dataset) is not None:
        return build_multilabel_manifest(Path(dataset.root), multilabel_csv(dataset), strict=strict, **common)
    if dataset.format in ("ucf101", "demo"):
        return build_ucf_manifest(Path(dataset.root), Path(dataset.splits_dir), dataset.split, strict=strict, **common)
    if dataset.format == "hmdb51":
        return build_hmdb_manifest(Path(dataset.root), Path(dataset.splits_dir), dataset.split, strict=strict, **common)
    if dataset.format == "rawframes" and dataset.rawframes.train_list:
        from tclsta.data.rawframes import build_rawframes_manifest

        return build_rawframes_manifest(Path(dataset.root), dataset.rawframes, strict=strict, **common)
    split_csv = Path(dataset.split_csv) if dataset.split_csv else None
    if dataset.format == "rawframes":
        from tclsta.data.rawframes import scan_frame_folders

        return build_folder_manifest(Path(dataset.root), split_csv, dataset.test_fraction, scan=scan_frame_folders, **common)
    return build_folder_manifest(Path(dataset.root), split_csv, dataset.test_fraction, **common)


def write_shard_list(manifest: pd.DataFrame, shard: int, path: str | Path) -> Path:
    """Write the rows of ``shard`` (the columns its extraction uses) to ``path``, only when they changed.

    An unchanged list keeps its modification time, so a workflow whose shard jobs
    take it as input re-runs only the shards whose own videos were added, removed
    or relabelled; the splits (which adding videos may reshuffle) are left out.
    """
    rows = manifest.loc[manifest["shard"] == shard, SHARD_LIST_COLUMNS].sort_values("video_id")
    write_text_if_changed(path, rows.to_csv(index=False))
    return Path(path)


def read_manifest(path: Path) -> pd.DataFrame:
    """Load a manifest CSV written by the ``manifest`` stage (every value checked)."""
    return read_table(path, text=("video_id", "path", "class_name", "group"), integers=("label", "shard"),
                      choices={"split": ("train", "val", "test")})


def read_shard_list(path: Path) -> pd.DataFrame:
    """Load one shard's list of videos (:func:`write_shard_list`; every value checked)."""
    return read_table(path, text=("video_id", "path", "class_name"), integers=("label", "shard"))


def class_names(manifest: pd.DataFrame) -> list[str]:
    """Class names in label order (of a multi-label manifest: every class listed, sorted)."""
    if is_multilabel(manifest):
        return sorted({name for text in manifest[LABELS_COLUMN] for name in split_labels(text)})
    pairs = manifest[["label", "class_name"]].drop_duplicates().sort_values("label")
    return pairs["class_name"].tolist()
