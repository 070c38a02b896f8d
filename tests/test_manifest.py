"""Manifest from UCF101-style split files: splits, groups, shards, and bad split files."""

import logging
import re
import shutil
from pathlib import Path

import pytest

from tclsta.data.manifest import (build_ucf_manifest, class_names, group_of, read_class_index, read_shard_list, shard_of, write_shard_list)
from tclsta.errors import BadSplitFileError


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def build(root: Path, val_fraction: float = 0.5):
    return build_ucf_manifest(root / "videos", root / "splits", 1, val_fraction, num_shards=2, seed=0)


def test_splits_groups_and_shards(tiny_videos):
    manifest = build(tiny_videos)
    assert len(manifest) == 4 * 3 * 2
    counts = manifest["split"].value_counts().to_dict()
    assert counts == {"test": 8, "train": 8, "val": 8}  # g01 test; g02/g03 split into train and val
    assert {g.split("/")[1] for g in manifest.loc[manifest["split"] == "test", "group"]} == {"g01"}
    assert (manifest.groupby("group")["split"].nunique() == 1).all()  # groups never straddle splits
    assert (manifest[manifest["split"] == "val"].groupby("class_name").size() == 2).all()  # val carved per class
    assert class_names(manifest) == read_class_index(tiny_videos / "splits" / "classInd.txt")
    assert all(Path(p).is_file() for p in manifest["path"])
    assert manifest["shard"].tolist() == [shard_of(v, 2) for v in manifest["video_id"]]
    assert build(tiny_videos).equals(manifest)  # deterministic


def test_shard_assignment_is_stable_and_groups_parse():
    assert shard_of("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 16) == shard_of("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 16)
    assert group_of("v_ApplyEyeMakeup_g08_c01") == "g08"
    assert group_of("my_clip") == "my_clip"


def test_missing_video_is_named(tiny_videos, tmp_path):
    root = copy_tree(tiny_videos, tmp_path / "ds")
    victim = next((root / "videos" / "DriftLeft").glob("*g02*"))
    victim.unlink()
    with pytest.raises(BadSplitFileError) as info:
        build(root)
    assert victim.name in str(info.value) and "trainlist01.txt" in str(info.value)


@pytest.mark.parametrize(
    "line, message",
    [
        ("../../etc/passwd 1", "outside the dataset root"),
        ("/etc/passwd 1", "outside the dataset root"),
        ("NoSuchClass/v_x_g02_c01.avi 1", "not in classInd"),
        ("DriftLeft/v_DriftLeft_g02_c01.avi 1", "disagrees with classInd"),
        ("DriftLeft/v_DriftLeft_g02_c01.avi 99", "disagrees with classInd"),  # label outside the class list
        ("DriftLeft/../../../etc/passwd 1", "outside the dataset root"),
    ],
)
def test_bad_split_lines_are_refused(tiny_videos, tmp_path, line, message):
    root = copy_tree(tiny_videos, tmp_path / "ds")
    trainlist = root / "splits" / "trainlist01.txt"
    trainlist.write_text(trainlist.read_text() + line + "\n")
    with pytest.raises(BadSplitFileError, match=message) as info:
        build(root)
    lineno = len(trainlist.read_text().splitlines())
    assert f"trainlist01.txt: line {lineno}: " in str(info.value)


def test_duplicate_video_is_refused(tiny_videos, tmp_path):
    root = copy_tree(tiny_videos, tmp_path / "ds")
    trainlist = root / "splits" / "trainlist01.txt"
    first = trainlist.read_text().splitlines()[0]
    trainlist.write_text(trainlist.read_text() + first + "\n")
    with pytest.raises(BadSplitFileError, match="listed twice"):
        build(root)


def test_malformed_class_index_is_named(tiny_videos, tmp_path):
    root = copy_tree(tiny_videos, tmp_path / "ds")
    (root / "splits" / "classInd.txt").write_text("one DriftRight\n")
    with pytest.raises(BadSplitFileError, match="classInd.txt.*line 1"):
        build(root)


@pytest.mark.parametrize("name, damage, message", [
    ("trainlist01.txt", lambda text: text.replace(b"g02_c01", b"g02\0c01", 1), "line 1: a NUL byte; not a text file"),
    ("trainlist01.txt", lambda text: text + b"DriftLeft/v_\xff.avi 1\n", "byte 0xff is not UTF-8 text"),
    ("classInd.txt", lambda text: text.replace(b"1 ", "²".encode() + b" ", 1), "line 1: expected '<index> <class name>'"),
], ids=["nul-byte", "not-utf8", "superscript-digit"])
def test_odd_bytes_in_split_and_class_lists_are_one_line_errors(tiny_videos, tmp_path, name, damage, message):
    root = copy_tree(tiny_videos, tmp_path / "ds")
    listing = root / "splits" / name
    listing.write_bytes(damage(listing.read_bytes()))
    with pytest.raises(BadSplitFileError, match=f"^bad split file {re.escape(str(listing))}: ") as info:
        build(root)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "line, message",
    [
        # ClassA/../ClassB/x.avi is ClassB/x.avi: its label is checked against ClassB...
        ("DriftLeft/../DriftRight/v_DriftRight_g02_c01.avi 2", "disagrees with classInd.txt (DriftRight)"),
        # ...and it is the same video as a test line, not a new one
        ("DriftLeft/../DriftRight/v_DriftRight_g01_c01.avi 1", "video listed twice: DriftRight/v_DriftRight_g01_c01"),
    ],
)
def test_split_paths_are_normalised_before_every_check(tiny_videos, tmp_path, line, message):
    root = copy_tree(tiny_videos, tmp_path / "ds")
    trainlist = root / "splits" / "trainlist01.txt"
    trainlist.write_text(trainlist.read_text() + line + "\n")
    with pytest.raises(BadSplitFileError, match=re.escape(message)):
        build(root)


def test_symlink_to_another_class_is_the_file_it_points_to(tiny_videos, tmp_path):
    root = copy_tree(tiny_videos, tmp_path / "ds")
    alias = root / "videos" / "DriftLeft" / "v_DriftLeft_g09_c01.avi"
    alias.symlink_to(root / "videos" / "DriftRight" / "v_DriftRight_g01_c01.avi")
    trainlist = root / "splits" / "trainlist01.txt"
    trainlist.write_text(trainlist.read_text() + "DriftLeft/v_DriftLeft_g09_c01.avi 2\n")
    with pytest.raises(BadSplitFileError, match=re.escape("disagrees with classInd.txt (DriftRight)")):
        build(root)


def test_symlink_leaving_the_root_is_refused(tiny_videos, tmp_path):
    root = copy_tree(tiny_videos, tmp_path / "ds")
    outside = tmp_path / "outside.avi"
    shutil.copy(root / "videos" / "DriftLeft" / "v_DriftLeft_g02_c01.avi", outside)
    (root / "videos" / "DriftLeft" / "v_DriftLeft_g09_c01.avi").symlink_to(outside)
    trainlist = root / "splits" / "trainlist01.txt"
    trainlist.write_text(trainlist.read_text() + "DriftLeft/v_DriftLeft_g09_c01.avi 2\n")
    with pytest.raises(BadSplitFileError, match="'DriftLeft/v_DriftLeft_g09_c01.avi' points outside the dataset root"):
        build(root)


def test_class_without_test_videos_is_warned_about(tiny_videos, tmp_path, caplog):
    root = copy_tree(tiny_videos, tmp_path / "ds")
    testlist = root / "splits" / "testlist01.txt"
    testlist.write_text("".join(f"{line}\n" for line in testlist.read_text().splitlines() if "RedPatch" not in line))
    with caplog.at_level(logging.WARNING, logger="tclsta.data.manifest"):
        manifest = build(root)
    assert "RedPatch" not in set(manifest.loc[manifest["split"] == "test", "class_name"])
    assert "no test videos for class(es) ['RedPatch']" in caplog.text


def test_shard_list_is_rewritten_only_when_its_own_rows_change(tiny_videos, tmp_path):
    manifest = build_ucf_manifest(tiny_videos / "videos", tiny_videos / "splits", 1, 0.5, 2, 0)
    path = write_shard_list(manifest, 0, tmp_path / "shard_0.csv")
    listed = read_shard_list(path)
    assert sorted(listed["video_id"]) == sorted(manifest.loc[manifest["shard"] == 0, "video_id"])
    assert "split" not in listed.columns  # adding videos may move others between train and val
    written = path.stat().st_mtime_ns
    other = manifest[manifest["shard"] == 1].iloc[0]
    reshuffled = manifest.assign(split="train")
    write_shard_list(reshuffled, 0, path)
    write_shard_list(reshuffled[reshuffled["video_id"] != other["video_id"]], 0, path)  # a video of shard 1 removed
    assert path.stat().st_mtime_ns == written
    relabelled = manifest.copy()
    relabelled.loc[relabelled["shard"] == 0, "label"] += 1
    write_shard_list(relabelled, 0, path)
    assert path.stat().st_mtime_ns != written and list(read_shard_list(path)["label"]) == list(listed["label"] + 1)
