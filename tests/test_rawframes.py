"""Importing existing rawframes (mmaction2 and denseflow layouts) into shards, from real JPEG folders OpenCV wrote."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import tiny_settings
from tclsta.config import parse_dataset, validate_config
from tclsta.data.dataset import decode_flow_jpegs
from tclsta.data.manifest import build_manifest, read_manifest
from tclsta.data.rawframes import import_shard
from tclsta.data.shards import ShardReader
from tclsta.errors import BadConfigError, BadFrameFolderError, BadSplitFileError
from tclsta.shared import shards_folder
from tclsta.video import decode_jpeg

MMACTION2 = ("img_", "flow_x_", "flow_y_")
DENSEFLOW_OLD = ("img_", "x_", "y_")


def write_rawframes(tiny_dataset, root: Path, prefixes: tuple[str, str, str]) -> pd.DataFrame:
    """The tiny dataset's frames and flow as ``<root>/<class>/<video>/`` JPEG folders written by OpenCV."""
    frame, flow_x, flow_y = prefixes
    manifest = read_manifest(tiny_dataset.manifest_path)
    for path in tiny_dataset.shards:
        with ShardReader(path) as shard:
            for video_id in shard.video_ids:
                folder = root / video_id
                folder.mkdir(parents=True)
                for t, jpeg in enumerate(shard.frames(video_id), 1):
                    cv2.imwrite(str(folder / f"{frame}{t:05d}.jpg"), cv2.cvtColor(decode_jpeg(jpeg), cv2.COLOR_RGB2BGR))
                for t, pair in enumerate(decode_flow_jpegs(shard.flow_jpegs(video_id)), 1):
                    cv2.imwrite(str(folder / f"{flow_x}{t:05d}.jpg"), pair[0])
                    cv2.imwrite(str(folder / f"{flow_y}{t:05d}.jpg"), pair[1])
    return manifest


def mmaction2_lists(manifest: pd.DataFrame, root: Path, out: Path) -> dict:
    """mmaction2's annotation lists (``<folder> <total_frames> <label>``) and label map of the tiny dataset."""
    classes = manifest[["label", "class_name"]].drop_duplicates().sort_values("label")["class_name"]
    (out / "label_map.txt").write_text("\n".join(classes) + "\n")
    for name, splits in (("train", ("train", "val")), ("test", ("test",))):
        rows = manifest[manifest["split"].isin(splits)]
        lines = [f"{v} {len(list((root / v).glob('img_*.jpg')))} {label}" for v, label in zip(rows["video_id"], rows["label"])]
        (out / f"tiny_{name}_split_1_rawframes.txt").write_text("\n".join(lines) + "\n")
    return {"train_list": str(out / "tiny_train_split_1_rawframes.txt"), "test_list": str(out / "tiny_test_split_1_rawframes.txt"),
            "class_list": str(out / "label_map.txt")}


def rawframes_settings(root: Path, **rawframes) -> dict:
    settings = tiny_settings(root)
    settings.update(name="raw", format="rawframes", root=str(root), rawframes=rawframes)
    del settings["splits_dir"], settings["demo"]
    return settings


def import_all(settings: dict, out: Path) -> tuple[pd.DataFrame, list[Path]]:
    dataset = parse_dataset(settings)
    manifest = build_manifest(dataset)
    shards = []
    for shard in range(dataset.preprocess.num_shards):
        shards.append(out / f"shard_{shard}.h5")
        import_shard(manifest, shard, dataset, shards[-1], out / f"rejected_{shard}.csv")
    return manifest, shards


@pytest.fixture(scope="module")
def mmaction2(tiny_dataset, tmp_path_factory):
    """An mmaction2 rawframes folder with its annotation lists, and the tiny manifest it came from."""
    out = tmp_path_factory.mktemp("mmaction2")
    root = out / "rawframes"
    manifest = write_rawframes(tiny_dataset, root, MMACTION2)
    return root, mmaction2_lists(manifest, root, out), manifest


def test_mmaction2_lists_import_frames_and_flow_byte_for_byte(mmaction2, tmp_path):
    root, lists, tiny = mmaction2
    manifest, shards = import_all(rawframes_settings(root, **lists), tmp_path)
    pd.testing.assert_frame_equal(manifest.drop(columns="path"), tiny.drop(columns="path"))  # same ids, labels, splits, shards
    imported = 0
    for path in shards:
        with ShardReader(path) as shard:
            for video_id in shard.video_ids:
                folder = root / video_id
                frames = sorted(folder.glob("img_*.jpg"))
                assert shard.frames(video_id) == [p.read_bytes() for p in frames]
                flow_files = [folder / f"flow_{axis}_{t:05d}.jpg" for t in range(1, len(frames)) for axis in "xy"]
                assert shard.flow_jpegs(video_id) == [p.read_bytes() for p in flow_files]  # x, y of each pair in turn
                flow = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in flow_files]).reshape(-1, 2, *frames_size(folder))
                np.testing.assert_array_equal(decode_flow_jpegs(shard.flow_jpegs(video_id)), flow)  # OpenCV reads the same
                record = shard.record(video_id)
                assert (record.num_frames, record.height, record.width) == (len(frames), *flow.shape[2:])
                assert shard.flow_bound(video_id) == 20
                imported += 1
    assert imported == len(tiny)


def frames_size(folder: Path) -> tuple[int, int]:
    return cv2.imread(str(folder / "img_00001.jpg")).shape[:2]


def test_flow_written_with_another_bound_is_mapped_to_the_shard_bound(mmaction2, tmp_path):
    """Mapped, then encoded again at flow.jpeg_quality (95): within a quarter level on average, two at most."""
    root, lists, _ = mmaction2
    settings = rawframes_settings(root, **lists, flow_bound=10)
    manifest, shards = import_all(settings, tmp_path)
    with ShardReader(shards[0]) as shard:
        video_id = shard.video_ids[0]
        written = cv2.imread(str(root / video_id / "flow_x_00001.jpg"), cv2.IMREAD_GRAYSCALE).astype(float)
        pixels = written * 20 / 255 - 10  # what the file means at bound 10
        error = np.abs(decode_flow_jpegs(shard.flow_jpegs(video_id, [0]))[0, 0].astype(int) - np.rint((pixels + 20) * 255 / 40))
        assert error.mean() < 0.25 and error.max() <= 2
        assert shard.flow_bound(video_id) == 20
        assert '"jpeg_quality": 95' in shard.settings(video_id, "flow")


def test_denseflow_folders_without_lists(tiny_dataset, tmp_path):
    root = tmp_path / "denseflow"
    tiny = write_rawframes(tiny_dataset, root, DENSEFLOW_OLD)
    manifest, shards = import_all(rawframes_settings(root), tmp_path)
    assert sorted(manifest["video_id"]) == sorted(tiny["video_id"]) and set(manifest["split"]) == {"train", "val", "test"}
    with ShardReader(shards[1]) as shard:
        video_id = shard.video_ids[-1]
        assert shard.frames(video_id)[3] == (root / video_id / "img_00004.jpg").read_bytes()
        assert shard.flow_jpegs(video_id, [10])[1] == (root / video_id / "y_00011.jpg").read_bytes()


@pytest.fixture
def broken(mmaction2, tmp_path):
    """A copy of the mmaction2 folders, to damage."""
    root, lists, tiny = mmaction2
    shutil.copytree(root, tmp_path / "rawframes")
    return tmp_path / "rawframes", lists, tiny


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-200])


def replace(path: Path, make: Callable[[Path], None]) -> None:
    path.unlink()
    make(path)


def first_video_of_shard(tiny: pd.DataFrame, shard: int) -> str:
    return sorted(tiny.loc[tiny["shard"] == shard, "video_id"])[0]


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "img_00005.jpg").unlink(), "missing img_00005.jpg"),
    (lambda folder: (folder / "flow_y_00011.jpg").unlink(), "mismatched flow counts: 11 flow_x_ and 10 flow_y_ files"),
    (lambda folder: [(folder / f"flow_{a}_00011.jpg").unlink() for a in "xy"], "12 frames but 10 flow pairs"),
    (lambda folder: cv2.imwrite(str(folder / "flow_y_00003.png"), np.zeros((48, 64), np.uint8))
     and (folder / "flow_y_00003.png").rename(folder / "flow_y_00003.jpg"), "flow_y_00003.jpg is not a readable JPEG"),
    # Hostile frame files: each checked as it is read, not only the first frame.
    (lambda folder: truncate(folder / "img_00005.jpg"), "img_00005.jpg is not a readable JPEG (Premature end of JPEG file)"),
    (lambda folder: truncate(folder / "flow_x_00007.jpg"), "flow_x_00007.jpg is not a readable JPEG"),
    (lambda folder: cv2.imwrite(str(folder / "img_00004.jpg"), np.zeros((96, 128, 3), np.uint8)),
     "img_00004.jpg is 128x96, the folder's frames 64x48"),
    (lambda folder: replace(folder / "img_00003.jpg", lambda path: path.symlink_to("/dev/zero")), "img_00003.jpg is not a regular file"),
    (lambda folder: replace(folder / "flow_y_00002.jpg", os.mkfifo), "flow_y_00002.jpg is not a regular file"),
], ids=["missing-frame", "mismatched-flow", "missing-flow-pair", "flow-not-jpeg", "truncated-frame", "truncated-flow",
        "frame-of-another-size", "frame-linked-to-dev-zero", "flow-fifo"])
def test_bad_folder_is_named_and_its_shard_not_written(broken, tmp_path, damage, message):
    root, lists, tiny = broken
    video_id = first_video_of_shard(tiny, 0)
    damage(root / video_id)
    dataset = parse_dataset(rawframes_settings(root, **lists))
    manifest = build_manifest(dataset)
    with pytest.raises(BadFrameFolderError) as error:
        import_shard(manifest, 0, dataset, tmp_path / "shard_0.h5", tmp_path / "rejected_0.csv")
    assert str(root / video_id) in str(error.value) and message in str(error.value)
    assert str(error.value).startswith("bad frame folder")
    assert not list(tmp_path.glob("shard_0*")) and not list(tmp_path.glob("*rejected*"))  # nothing half-written


def test_skip_leaves_the_bad_folder_out_and_lists_it(broken, tmp_path):
    root, lists, tiny = broken
    video_id = first_video_of_shard(tiny, 1)
    truncate(root / video_id / "img_00002.jpg")
    settings = rawframes_settings(root, **lists)
    settings["preprocess"]["on_bad_video"] = "skip"
    dataset = parse_dataset(settings)
    import_shard(build_manifest(dataset), 1, dataset, tmp_path / "shard_1.h5", tmp_path / "rejected_1.csv")
    rejected = pd.read_csv(tmp_path / "rejected_1.csv")
    assert rejected["video_id"].tolist() == [video_id] and "img_00002.jpg is not a readable JPEG" in rejected["reason"][0]
    with ShardReader(tmp_path / "shard_1.h5") as shard:
        assert video_id not in shard.video_ids and len(shard.video_ids) == (tiny["shard"] == 1).sum() - 1


def test_label_outside_the_class_list_names_the_list_and_folder(mmaction2, tmp_path):
    root, lists, _ = mmaction2
    listing = Path(lists["test_list"]).read_text().splitlines()
    folder = listing[2].split()[0]
    listing[2] = f"{folder} 12 7"
    bad = tmp_path / "test_list.txt"
    bad.write_text("\n".join(listing))
    with pytest.raises(BadSplitFileError) as error:
        build_manifest(parse_dataset(rawframes_settings(root, **{**lists, "test_list": str(bad)})))
    assert str(bad) in str(error.value) and "line 3" in str(error.value) and str(root / folder) in str(error.value)
    assert "outside the class list (4 classes, labels 0..3)" in str(error.value)


def test_folder_layout_refuses_a_folder_linked_from_outside_the_root(tiny_dataset, tmp_path):
    root = tmp_path / "denseflow"
    tiny = write_rawframes(tiny_dataset, root, DENSEFLOW_OLD)
    video_id = tiny["video_id"].iloc[0]
    outside = tmp_path / "elsewhere"
    (root / video_id).rename(outside)
    (root / video_id).symlink_to(outside)
    with pytest.raises(BadSplitFileError, match=re.escape(f"'{video_id}' points outside the dataset root {root}")):
        build_manifest(parse_dataset(rawframes_settings(root)))


@pytest.mark.parametrize("field, value", [(1, "1²"), (2, "²")], ids=["frame-count", "label"])
def test_odd_digits_in_an_annotation_list_are_a_one_line_error(mmaction2, tmp_path, field, value):
    """``str.isdigit`` takes '²', which ``int`` refuses: frame counts and labels are ASCII digits."""
    root, lists, _ = mmaction2
    listing = Path(lists["train_list"]).read_text().splitlines()
    parts = listing[0].split()
    parts[field] = value
    listing[0] = " ".join(parts)
    bad = tmp_path / "train_list.txt"
    bad.write_text("\n".join(listing), encoding="utf-8")
    with pytest.raises(BadSplitFileError, match=f"bad split file {re.escape(str(bad))}: line 1: expected"):
        build_manifest(parse_dataset(rawframes_settings(root, **{**lists, "train_list": str(bad)})))


def test_workflow_imports_rawframes_without_extraction_or_flow(mmaction2, tmp_path, installed_tclsta):
    """Run as a pip-installed tclsta runs it, from a folder outside the checkout holding only config.yaml."""
    root, lists, _ = mmaction2
    settings = {k: v for k, v in rawframes_settings(root, **lists).items() if k != "name"}
    config = {"datasets": {"raw": settings}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    shards = shards_folder(config, "raw")
    targets = [f"{shards}/shard_0.h5", f"{shards}/shard_1.h5", "results/raw/rejected.csv"]
    run = installed_tclsta.snakemake(*targets, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    # no extraction or flow; the manifest job only for rejected.csv (which lists the run's own videos)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["collect_rejected", "import_rawframes", "manifest"]
    assert all((tmp_path / target).is_file() for target in targets)
    assert pd.read_csv(tmp_path / "results/raw/rejected.csv").empty


@pytest.mark.parametrize("rawframes, message", [
    ({"train_list": "train.txt"}, "'datasets.raw.rawframes': 'test_list' is a dependency of 'train_list'"),
    ({"flow_bound": 0}, "'datasets.raw.rawframes.flow_bound': 0 is less than or equal to the minimum of 0"),
])
def test_rawframes_config_is_validated(rawframes, message):
    with pytest.raises(BadConfigError, match=re.escape(message)):
        validate_config({"datasets": {"raw": {"format": "rawframes", "root": "/data/frames", "rawframes": rawframes}}})
