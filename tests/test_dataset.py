"""The clip Dataset over real shards: shapes, sampling, determinism."""

import numpy as np
import torch

from tclsta.data.dataset import (IMAGENET_MEAN, IMAGENET_STD, ClipSpec, ShardClipDataset, decode_flow_jpegs, flow_windows,
                                  model_input, segment_indices)
from tclsta.data.manifest import read_manifest
from tclsta.data.shards import ShardReader


def dataset(tiny, spec: ClipSpec, seed: int = 0) -> ShardClipDataset:
    manifest = read_manifest(tiny.manifest_path)
    return ShardClipDataset(tiny.shards, manifest["video_id"], manifest["label"], spec, seed)


def test_rgb_and_flow_clips_have_the_documented_shapes(tiny_dataset):
    rgb = dataset(tiny_dataset, ClipSpec("rgb", num_frames=4, crop_size=(40, 56)))
    flow = dataset(tiny_dataset, ClipSpec("flow", num_frames=4, crop_size=(40, 56), flow_stack=3))
    assert len(rgb) == len(flow) == 24
    clip, label = rgb[0]
    assert clip.shape == (4, 3, 40, 56) and clip.dtype == torch.uint8 and 0 <= label < 4
    clip, _ = flow[0]
    assert clip.shape == (4, 6, 40, 56) and clip.dtype == torch.uint8


def test_flow_clips_stack_the_stored_pairs_of_their_windows(tiny_dataset):
    spec = ClipSpec("flow", num_frames=4, crop_size=(48, 64), flow_stack=3)  # the whole frame
    data = dataset(tiny_dataset, spec)
    path, video_id, _, num_frames = data.items[5]
    with ShardReader(path) as reader:
        stored = decode_flow_jpegs(reader.flow_jpegs(video_id))  # (T-1, 2, H, W): x, y of each pair
    expected = np.stack([stored[window].reshape(-1, 48, 64) for window in flow_windows(num_frames, spec, None)])
    np.testing.assert_array_equal(data[5][0].numpy(), expected)  # (T, 2L, H, W): x0 y0 x1 y1 x2 y2


def test_model_input_normalises_uint8_clips_on_the_device(tiny_dataset):
    rgb = dataset(tiny_dataset, ClipSpec("rgb", num_frames=4, crop_size=(40, 56)))[0][0]
    expected = (rgb.numpy().transpose(0, 2, 3, 1) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD  # (T, h, w, 3)
    converted = model_input(rgb[None], "cpu")
    assert converted.dtype == torch.float32 and converted.shape == (1, 4, 3, 40, 56)
    np.testing.assert_allclose(converted[0].numpy().transpose(0, 2, 3, 1), expected, atol=1e-5)
    flow = model_input(dataset(tiny_dataset, ClipSpec("flow", 4, (40, 56), flow_stack=3))[0][0][None], "cpu")
    assert flow.shape == (1, 4, 6, 40, 56) and -1.0 <= float(flow.min()) < float(flow.max()) <= 1.0
    extremes = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1)  # one flow pair: -bound, +bound
    np.testing.assert_allclose(model_input(extremes, "cpu").flatten().numpy(), [-1.0, 1.0])


def test_test_clips_are_deterministic_and_training_clips_vary_by_epoch(tiny_dataset):
    test_set = dataset(tiny_dataset, ClipSpec("flow", 4, (40, 56), flow_stack=2))
    assert torch.equal(test_set[3][0], test_set[3][0])
    train_set = dataset(tiny_dataset, ClipSpec("rgb", 4, (40, 56), train=True, flip=True))
    first = train_set[3][0]
    assert torch.equal(first, train_set[3][0])  # same (seed, epoch, index): same clip
    train_set.set_epoch(1)
    assert not torch.equal(first, train_set[3][0])


def test_segment_sampling():
    assert segment_indices(12, 4, None) == [1, 4, 7, 10]
    picks = segment_indices(12, 4, torch.Generator().manual_seed(0))
    assert [p // 3 for p in picks] == [0, 1, 2, 3]  # one pick inside each segment
    assert segment_indices(2, 4, None) == [0, 0, 1, 1]  # short videos repeat frames


def test_workers_open_their_own_files(tiny_dataset):
    loader = torch.utils.data.DataLoader(dataset(tiny_dataset, ClipSpec("rgb", 2, (40, 56))), batch_size=6, num_workers=2)
    batches = [clips for clips, _ in loader]
    assert sum(len(b) for b in batches) == 24
    assert np.isfinite(torch.cat(batches).numpy()).all()
