"""Dataset layouts: HMDB51 split files, class-per-folder trees with a user CSV or a seeded split."""

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tclsta.config import PreprocessConfig, parse_dataset
from tclsta.data.manifest import build_manifest
from tclsta.data.shards import ShardReader
from tclsta.errors import BadSplitFileError, FileError
from tclsta.preprocess import extract_shard

ODD_NAME = "it's a \"clip\" – é 日本_g03_c01.avi"


def demo_videos(tiny_videos: Path) -> list[Path]:
    return sorted((tiny_videos / "videos").glob("*/*.avi"))


def settings(root: Path, fmt: str, **extra) -> dict:
    return {"name": "ds", "format": fmt, "root": str(root), **extra,
            "preprocess": {"num_shards": 3}, "train": {"val_fraction": 0.5, "seed": 0}}


def make_hmdb(tiny_videos: Path, root: Path) -> Path:
    """HMDB51 layout: <class>/<video>.avi and <class>_test_split1.txt (1 train, 2 test, 0 unused)."""
    splits = root / "splits"
    splits.mkdir(parents=True)
    for class_dir in sorted((tiny_videos / "videos").iterdir()):
        target = root / "videos" / class_dir.name.lower()
        shutil.copytree(class_dir, target)
        lines = []
        for video in sorted(target.iterdir()):
            # group g01: clip c01 is test, c02 unused; the other groups train
            code = "1" if "_g01_" not in video.name else ("2" if video.stem.endswith("c01") else "0")
            lines.append(f"{video.name} {code}")
        (splits / f"{class_dir.name.lower()}_test_split1.txt").write_text("\n".join(lines) + "\n")
    return root


def test_hmdb51_layout(tiny_videos, tmp_path):
    root = make_hmdb(tiny_videos, tmp_path / "hmdb")
    config = parse_dataset(settings(root / "videos", "hmdb51", splits_dir=str(root / "splits"), split=1))
    manifest = build_manifest(config)
    assert sorted(manifest["class_name"].unique()) == ["driftleft", "driftright", "greenpatch", "redpatch"]
    assert manifest.groupby("class_name")["label"].nunique().eq(1).all()
    assert (manifest["split"] == "test").sum() == 4  # one g01 clip per class is test, the other unused
    assert len(manifest) == 4 * 5
    assert set(manifest["shard"]) <= {0, 1, 2}


@pytest.mark.parametrize(
    "line, message",
    [("extra.avi 7", "expected '<video> <0|1|2>'"), ("../../../etc/passwd 1", "points outside"), ("/etc/passwd 2", "points outside")],
)
def test_hmdb51_bad_line_is_named(tiny_videos, tmp_path, line, message):
    root = make_hmdb(tiny_videos, tmp_path / "hmdb")
    listing = root / "splits" / "redpatch_test_split1.txt"
    listing.write_text(listing.read_text() + line + "\n")
    config = parse_dataset(settings(root / "videos", "hmdb51", splits_dir=str(root / "splits"), split=1))
    with pytest.raises(BadSplitFileError, match=f"redpatch_test_split1.txt: line 7: .*{re.escape(message)}"):
        build_manifest(config)


def make_folder(tiny_videos: Path, root: Path) -> Path:
    for video in demo_videos(tiny_videos):
        target = root / video.parent.name / video.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, target)
    odd = demo_videos(tiny_videos)[0]
    shutil.copy(odd, root / odd.parent.name / ODD_NAME)
    (root / odd.parent.name / "notes.txt").write_text("not a video")
    return root


def test_folder_with_seeded_group_split(tiny_videos, tmp_path):
    root = make_folder(tiny_videos, tmp_path / "folder")
    config = parse_dataset(settings(root, "folder", test_fraction=0.34))
    manifest = build_manifest(config)
    assert len(manifest) == 25  # 24 demo videos + the odd name; notes.txt ignored
    assert (manifest.groupby("group")["split"].nunique() == 1).all()  # gXX groups never straddle splits
    odd_group = manifest.loc[manifest["video_id"].str.contains("日本"), "group"].item()
    assert odd_group.endswith("/g03")
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert build_manifest(config).equals(manifest)


def test_folder_with_user_csv_and_odd_names_extract(tiny_videos, tmp_path):
    root = make_folder(tiny_videos, tmp_path / "folder")
    videos = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.avi"))
    split_csv = tmp_path / "split.csv"
    pd.DataFrame({"path": videos, "split": ["test" if "_g01_" in v else "train" for v in videos]}).to_csv(split_csv, index=False)
    config = parse_dataset(settings(root, "folder", split_csv=str(split_csv)))
    manifest = build_manifest(config)
    assert (manifest["split"] == "test").sum() == 8
    odd = manifest[manifest["video_id"].str.contains("日本")].iloc[0]
    extract_shard(manifest, int(odd["shard"]), PreprocessConfig(short_side=None), tmp_path / "f.h5", tmp_path / "r.csv")
    with ShardReader(tmp_path / "f.h5") as reader:
        assert reader.record(odd["video_id"]).num_frames == 12


@pytest.mark.parametrize(
    "rows, message",
    [
        ({"path": ["../../etc/passwd"], "split": ["train"]}, "outside the dataset root"),
        ({"path": ["/etc/passwd"], "split": ["test"]}, "row 2: '/etc/passwd' points outside the dataset root"),
        ({"path": ["DriftLeft/none.avi"], "split": ["train"]}, "not a video in a class folder"),
        ({"path": ["DriftLeft/v_DriftLeft_g01_c01.avi"], "split": ["holdout"]}, "row 2, column 'split': expected one of train, test"),
        ({"video": ["x"]}, "lacks column"),
        ({"path": ["DriftLeft/v_DriftLeft_g01_c01.avi", ""], "split": ["test", "train"]}, "row 3: empty path"),
        ({"path": ["DriftLeft/v_DriftLeft_g01_c01.avi", "DriftRight/../DriftLeft/v_DriftLeft_g01_c01.avi"],
          "split": ["test", "train"]}, "video listed twice"),
    ],
)
def test_bad_user_csv_is_named(tiny_videos, tmp_path, rows, message):
    root = make_folder(tiny_videos, tmp_path / "folder")
    split_csv = tmp_path / "split.csv"
    pd.DataFrame(rows).to_csv(split_csv, index=False)
    with pytest.raises(FileError, match=message) as info:
        build_manifest(parse_dataset(settings(root, "folder", split_csv=str(split_csv))))
    assert "split.csv" in str(info.value)


@pytest.mark.parametrize("content, message", [
    (b"path,split\nDriftLeft/v_DriftLeft_g01_c01.avi,test,extra\n", "row 2 has more fields than the header"),
    (b'path,split\n"DriftLeft/v_DriftLeft_g01_c01.avi,test\n', "not a readable CSV (Error tokenizing data. C error: EOF inside string"),
    (b"", "not a readable CSV (No columns to parse from file)"),
    (b"path,split\nDriftLeft/v_\xe9.avi,test\n", "line 2: byte 0xe9 is not UTF-8 text"),
    (b"path,split\nDriftLeft/v_DriftLeft_g01_c01.avi\0,test\n", "line 2: a NUL byte"),
], ids=["extra-column", "unterminated-quote", "empty", "not-utf8", "nul-byte"])
def test_malformed_user_csv_is_one_line_naming_it(tiny_videos, tmp_path, content, message):
    root = make_folder(tiny_videos, tmp_path / "folder")
    split_csv = tmp_path / "split.csv"
    split_csv.write_bytes(content)
    with pytest.raises(FileError, match=re.escape(f"bad CSV {split_csv}: {message}")) as info:
        build_manifest(parse_dataset(settings(root, "folder", split_csv=str(split_csv))))
    assert "\n" not in str(info.value)


def test_folder_video_symlinked_outside_the_root_is_refused(tiny_videos, tmp_path):
    root = make_folder(tiny_videos, tmp_path / "folder")
    outside = tmp_path / "outside.avi"
    shutil.copy(demo_videos(tiny_videos)[0], outside)
    (root / "DriftLeft" / "v_DriftLeft_g09_c01.avi").symlink_to(outside)
    with pytest.raises(BadSplitFileError, match="'DriftLeft/v_DriftLeft_g09_c01.avi' points outside the dataset root"):
        build_manifest(parse_dataset(settings(root, "folder")))


def test_empty_folder_dataset_is_refused(tmp_path):
    (tmp_path / "empty" / "ClassA").mkdir(parents=True)
    with pytest.raises(BadSplitFileError, match="no videos"):
        build_manifest(parse_dataset(settings(tmp_path / "empty", "folder")))


def test_dataset_root_that_is_not_a_folder_is_refused(tmp_path):
    root = tmp_path / "videos"
    root.write_text("not a folder")
    with pytest.raises(BadSplitFileError, match=f"{root}: cannot list the dataset folder"):
        build_manifest(parse_dataset(settings(root, "folder")))
