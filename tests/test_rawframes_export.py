"""Shards out as mmaction2 rawframes and back in through the rawframes import: every JPEG byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import tiny_settings
from tclsta.config import parse_dataset
from tclsta.data.manifest import build_manifest, read_manifest
from tclsta.data.rawframes import import_shard
from tclsta.data.shards import ShardReader


def test_shards_round_trip_through_rawframes(tiny_dataset, tmp_path):
    out = tmp_path / "rawframes"
    run = subprocess.run([sys.executable, "-m", "tclsta", "export-rawframes", "--manifest", str(tiny_dataset.manifest_path),
                          "--shards", *map(str, tiny_dataset.shards), "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = read_manifest(tiny_dataset.manifest_path)
    video_id = manifest["video_id"].iloc[0]
    names = sorted(p.name for p in (out / video_id).iterdir())
    assert names[:2] == ["flow_x_00001.jpg", "flow_x_00002.jpg"] and "img_00012.jpg" in names and "flow_y_00011.jpg" in names
    assert json.loads((out / "rawframes.json").read_text()) == {"flow_bound": 20.0}
    classes = (out / "classes.txt").read_text().splitlines()
    assert classes == manifest.drop_duplicates("label").sort_values("label")["class_name"].tolist()
    listed = {line.split()[0]: line.split()[1:] for name in ("train_list.txt", "test_list.txt") for line in (out / name).read_text().splitlines()}
    assert listed == {row.video_id: ["12", str(row.label)] for row in manifest.itertuples()}

    settings = tiny_settings(out)
    settings.update(name="raw", format="rawframes", root=str(out), rawframes={
        "train_list": str(out / "train_list.txt"), "test_list": str(out / "test_list.txt"), "class_list": str(out / "classes.txt")})
    del settings["splits_dir"], settings["demo"]
    dataset = parse_dataset(settings)
    imported = build_manifest(dataset)
    assert sorted(imported["video_id"]) == sorted(manifest["video_id"])
    assert (imported.set_index("video_id")["split"] == "test").to_dict() == (manifest.set_index("video_id")["split"] == "test").to_dict()
    originals = {}
    for path in tiny_dataset.shards:
        with ShardReader(path) as shard:
            originals |= {v: (shard.frames(v), shard.flow_jpegs(v)) for v in shard.video_ids}
    seen = 0
    for shard in range(dataset.preprocess.num_shards):
        import_shard(imported, shard, dataset, tmp_path / f"shard_{shard}.h5", tmp_path / f"rejected_{shard}.csv")
        with ShardReader(tmp_path / f"shard_{shard}.h5") as reader:
            for video_id in reader.video_ids:
                assert (reader.frames(video_id), reader.flow_jpegs(video_id)) == originals[video_id]
                seen += 1
    assert seen == len(originals)
