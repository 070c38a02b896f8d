"""The video manifest: one row per video, built from a dataset's split files.

Columns: ``video_id`` (path below the root, without extension), ``path``
(absolute), ``class_name``, ``label`` (0-based), ``split`` (train/val/test),
``group`` (UCF-style ``gXX`` recording group, else the video id) and ``shard``
(a stable hash of the id, so adding videos never moves old ones).

The validation split is carved from training data by whole groups, so clips of
one recording never straddle train and val; the test split is never used for
model selection.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from tclsta.errors import BadSplitFileError

MANIFEST_COLUMNS = ["video_id", "path", "class_name", "label", "split", "group", "shard"]
_GROUP = re.compile(r"_g(\d+)_c\d+$")


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
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise BadSplitFileError(path, f"line {lineno}: expected '<index> <class name>', got {line!r}")
        index, name = int(parts[0]), parts[1].strip()
        if index in entries or name in entries.values():
            raise BadSplitFileError(path, f"line {lineno}: duplicate class {line!r}")
        entries[index] = name
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise BadSplitFileError(path, "class indices must run 1..K without gaps")
    return [entries[i] for i in range(1, len(entries) + 1)]


def read_ucf_split(path: Path, root: Path, classes: list[str]) -> list[tuple[str, Path, str]]:
    """``(video_id, absolute path, class name)`` for each line of a UCF101 train/test list."""
    if not path.is_file():
        raise BadSplitFileError(path, "split file not found")
    root = root.resolve()
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        relative, _, label_text = line.rpartition(" ") if re.search(r" \d+$", line) else (line, "", "")
        video_path = (root / relative).resolve()
        if not video_path.is_relative_to(root):
            raise BadSplitFileError(path, f"line {lineno}: {relative!r} points outside the dataset root {root}")
        class_name = Path(relative).parts[0] if len(Path(relative).parts) > 1 else ""
        if class_name not in classes:
            raise BadSplitFileError(path, f"line {lineno}: class {class_name!r} of {relative!r} is not in classInd.txt")
        if label_text and int(label_text) != classes.index(class_name) + 1:
            raise BadSplitFileError(
                path, f"line {lineno}: label {label_text} of {relative!r} disagrees with classInd.txt ({class_name})"
            )
        video_id = str(Path(relative).with_suffix(""))
        rows.append((video_id, video_path, class_name))
    return rows


def carve_validation(train_groups: list[str], val_fraction: float, seed: int) -> set[str]:
    """Groups moved from train to val: a seeded choice of about ``val_fraction`` of them."""
    groups = sorted(set(train_groups))
    if len(groups) < 2:
        raise BadSplitFileError(Path("."), "the training split needs at least two groups to carve a validation split")
    count = min(len(groups) - 1, max(1, round(len(groups) * val_fraction)))
    order = np.random.default_rng(seed).permutation(len(groups))
    return {groups[i] for i in order[:count]}


def build_ucf_manifest(
    root: Path, splits_dir: Path, split: int, val_fraction: float, num_shards: int, seed: int
) -> pd.DataFrame:
    """Manifest of a dataset in the UCF101 layout (the demo dataset uses it too)."""
    root, splits_dir = Path(root), Path(splits_dir)
    classes = read_class_index(splits_dir / "classInd.txt")
    rows = []
    for split_name, file_name in (("train", f"trainlist{split:02d}.txt"), ("test", f"testlist{split:02d}.txt")):
        split_path = splits_dir / file_name
        entries = read_ucf_split(split_path, root, classes)
        missing = [str(p) for _, p, _ in entries if not p.is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise BadSplitFileError(split_path, f"{len(missing)} listed video(s) not found: {shown}")
        rows += [(vid, str(p), c, classes.index(c), split_name) for vid, p, c in entries]
    frame = pd.DataFrame(rows, columns=["video_id", "path", "class_name", "label", "split"])
    duplicated = frame["video_id"][frame["video_id"].duplicated()]
    if len(duplicated):
        raise BadSplitFileError(splits_dir, f"video listed twice: {duplicated.iloc[0]}")
    untrained = sorted(set(classes) - set(frame.loc[frame["split"] == "train", "class_name"]))
    if untrained:
        raise BadSplitFileError(splits_dir / f"trainlist{split:02d}.txt", f"no training videos for class(es) {untrained}")
    frame["group"] = frame["video_id"].map(lambda v: group_of(Path(v).name))
    val_groups = carve_validation(frame.loc[frame["split"] == "train", "group"].tolist(), val_fraction, seed)
    frame.loc[(frame["split"] == "train") & frame["group"].isin(val_groups), "split"] = "val"
    frame["shard"] = frame["video_id"].map(lambda v: shard_of(v, num_shards))
    return frame[MANIFEST_COLUMNS].sort_values("video_id", ignore_index=True)


def read_manifest(path: Path) -> pd.DataFrame:
    """Load a manifest CSV written by the ``manifest`` stage."""
    return pd.read_csv(path, dtype={"video_id": str, "path": str, "class_name": str, "split": str, "group": str})


def class_names(manifest: pd.DataFrame) -> list[str]:
    """Class names in label order."""
    pairs = manifest[["label", "class_name"]].drop_duplicates().sort_values("label")
    return pairs["class_name"].tolist()
