"""HDF5 shards: round trip, atomic writes, and corrupt files named in the error."""

import h5py
import numpy as np
import pytest

from tclsta.data.dataset import decode_flow_jpegs
from tclsta.data.shards import ShardReader, ShardWriter, VideoRecord
from tclsta.errors import BadShardError
from tclsta.flow import encode_flow
from tclsta.video import decode_jpeg, encode_jpeg


def record(video_id: str, frames: int = 3) -> VideoRecord:
    return VideoRecord(video_id, "Cls", 1, f"/videos/{video_id}.avi", 16, 24, frames)


def sample_video(seed: int):
    """Three JPEG frames and their two flow pairs as the shards store them (x, y of each pair in turn)."""
    rng = np.random.default_rng(seed)
    frames = [encode_jpeg(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)) for _ in range(3)]
    flow = encode_flow(rng.integers(0, 255, (2, 2, 16, 24), dtype=np.uint8), quality=95)
    return frames, flow


def test_round_trip_keeps_every_video(tmp_path):
    path = tmp_path / "shard_0.h5"
    videos = {f"Cls/v_{i} odd 'name' é": sample_video(i) for i in range(3)}
    with ShardWriter(path, flow_bound=20) as writer:
        for video_id, (frames, flow) in videos.items():
            writer.add(record(video_id), frames=frames, flow=flow)
    with ShardReader(path) as reader:
        assert reader.video_ids == list(videos)
        for video_id, (frames, flow) in videos.items():
            assert reader.record(video_id) == record(video_id)
            assert reader.frames(video_id) == frames
            assert reader.frames(video_id, [2])[0] == frames[2]
            assert decode_jpeg(reader.frames(video_id, [0])[0]).shape == (16, 24, 3)
            assert reader.flow_jpegs(video_id) == flow
            assert reader.flow_jpegs(video_id, [1]) == flow[2:4]  # pair 1: x, y
            assert decode_flow_jpegs(reader.flow_jpegs(video_id, [0, 1])).shape == (2, 2, 16, 24)
            assert reader.flow_bound(video_id) == 20


def test_interrupted_write_leaves_nothing(tmp_path):
    path = tmp_path / "shard_0.h5"
    with pytest.raises(RuntimeError):
        with ShardWriter(path, flow_bound=20) as writer:
            writer.add(record("a"), *sample_video(0))
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_shard_is_named(tmp_path):
    path = tmp_path / "shard_3.h5"
    with ShardWriter(path, flow_bound=20) as writer:
        writer.add(record("a"), *sample_video(0))
    data = bytearray(path.read_bytes())
    data[:64] = b"\0" * 64  # destroy the HDF5 superblock
    path.write_bytes(bytes(data))
    with pytest.raises(BadShardError, match="shard_3.h5.*delete it and re-run"):
        ShardReader(path)


@pytest.mark.parametrize("flow", [sample_video(0)[1][:3], np.zeros((2, 2, 16, 24), np.uint8)], ids=["odd count", "array"])
def test_flow_other_than_jpeg_pairs_is_refused(tmp_path, flow):
    with ShardWriter(tmp_path / "s.h5", flow_bound=20) as writer:
        with pytest.raises(ValueError, match="flow of a must be JPEG bytes, x and y of each pair in turn"):
            writer.add(record("a"), flow=flow)


@pytest.mark.parametrize("kind, damaged, read, intact, message", [
    ("frames", 1, lambda reader: reader.frames("a"), lambda reader: reader.frames("a", [0]) == sample_video(0)[0][:1],
     r"frame 1 of 'a'"),
    ("flow", 3, lambda reader: reader.flow_jpegs("a", [1]), lambda reader: reader.flow_jpegs("a", [0]) == sample_video(0)[1][:2],
     r"flow pair 1 \(y\) of 'a'"),
], ids=["frame", "flow"])
def test_damaged_jpeg_fails_its_checksum(tmp_path, kind, damaged, read, intact, message):
    path = tmp_path / "shard_1.h5"
    frames, flow = sample_video(0)
    with ShardWriter(path, flow_bound=20) as writer:
        writer.add(record("a"), frames=frames, flow=flow)
    jpeg = {"frames": frames, "flow": flow}[kind][damaged]
    data = bytearray(path.read_bytes())
    data[data.find(jpeg[-64:-32])] ^= 0xFF  # inside that JPEG, in HDF5's unchecked global heap
    path.write_bytes(bytes(data))
    with ShardReader(path) as reader:
        assert intact(reader)
        with pytest.raises(BadShardError, match=rf"shard_1.h5: {message} fails its checksum.*delete it and re-run"):
            read(reader)


def test_shard_of_another_format_version_is_named(tmp_path):
    """Version 2 shards (flow as gzip-compressed uint8) are refused: the user is told to rebuild them."""
    path = tmp_path / "shard_0.h5"
    with ShardWriter(path, flow_bound=20) as writer:
        writer.add(record("a"), *sample_video(0))
    with h5py.File(path, "r+") as file:
        file.attrs["version"] = 2
    with pytest.raises(BadShardError, match=r"shard_0.h5: shard format version 2, this TCLSTA reads version 3 \(delete it and re-run"):
        ShardReader(path)
