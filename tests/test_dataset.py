"""The clip Dataset over real shards: shapes, sampling, determinism, decoding in the workers or on the device."""

import re

import numpy as np
import pytest
import torch

from tclsta.data.dataset import (IMAGENET_MEAN, IMAGENET_STD, ClipSpec, EncodedClip, ShardClipDataset, clip_loader, decode_clips,
                                  decode_flow_jpegs, decodes_on_device, flow_windows, model_input, segment_indices)
from tclsta.data.manifest import read_manifest
from tclsta.data.shards import ShardReader
from tclsta.errors import BadConfigError
from tclsta.inference import pick_device, scoring_loader


def dataset(tiny, spec: ClipSpec, seed: int = 0, encoded: bool = False) -> ShardClipDataset:
    manifest = read_manifest(tiny.manifest_path)
    return ShardClipDataset(tiny.shards, manifest["video_id"], manifest["label"], spec, seed, encoded)


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


@pytest.mark.parametrize("spec", [
    ClipSpec("rgb", 4, (40, 56), train=True, flip=True),
    ClipSpec("flow", 4, (40, 56), flow_stack=3, train=True, flip=True),  # mirrored x-flow: q -> 255 - q
    ClipSpec("rgb", 5, (40, 56), test_crops=10),
    ClipSpec("flow", 3, (40, 56), flow_stack=2, test_crops=10),
    ClipSpec("rgb", 4, (40, 56), train=True, flip=True, scale_jitter=True),  # 48x64 frames: crops of 48 to 32 rows, resized
    ClipSpec("flow", 4, (40, 56), flow_stack=3, train=True, flip=True, scale_jitter=True),
], ids=["rgb-train", "flow-train", "rgb-10crop", "flow-10crop", "rgb-jitter", "flow-jitter"])
def test_decoding_on_the_device_repeats_the_workers_clips(tiny_dataset, spec):
    in_workers, on_device = dataset(tiny_dataset, spec, seed=3), dataset(tiny_dataset, spec, seed=3, encoded=True)
    in_workers.set_epoch(2)
    on_device.set_epoch(2)
    expected = torch.stack([in_workers[i][0] for i in range(len(in_workers))])
    encoded, labels = next(iter(clip_loader(on_device, batch_size=len(on_device))))
    assert all(isinstance(clip, EncodedClip) for clip in encoded) and labels.tolist() == [item[2] for item in in_workers.items]
    decoded = torch.stack(decode_clips(encoded, "cpu"))  # the device path (one batched decode_jpeg call, views in torch) on the CPU
    assert decoded.shape == expected.shape and decoded.dtype == torch.uint8
    if spec.scale_jitter:  # torch's bilinear resize against OpenCV's fixed-point one: at most one grey level apart
        difference = (decoded.int() - expected.int()).abs()
        assert int(difference.max()) <= 1 and float(difference.float().mean()) < 0.25
    else:
        assert torch.equal(decoded, expected)
    torch.testing.assert_close(model_input(encoded, "cpu"), model_input(decoded, "cpu"), rtol=0, atol=0)  # a list is decoded first


def test_jpegs_are_decoded_on_the_device_only_when_it_is_cuda(tiny_dataset):
    assert decodes_on_device("auto", "cuda") and decodes_on_device("auto", torch.device("cuda", 1))
    assert not decodes_on_device("cpu", "cuda") and not decodes_on_device("auto", "cpu")
    manifest, config = read_manifest(tiny_dataset.manifest_path), tiny_dataset.config
    device = pick_device("auto")
    loader = scoring_loader(manifest, ["test"], tiny_dataset.shards, "rgb", config.model.flow_stack, config.train, device)
    clips, _ = next(iter(loader))
    assert isinstance(clips, list) == (device.type == "cuda")  # without CUDA: uint8 clips from the workers


def test_crop_larger_than_the_frames_is_refused(tiny_dataset):
    """Not silently cropped to the whole 64x48 frame: the error says the largest crop that fits."""
    with pytest.raises(BadConfigError, match=re.escape("'train.crop_size': [56, 72] is larger than the 64x48 frames of")) as error:
        dataset(tiny_dataset, ClipSpec("rgb", 4, (56, 72)))
    assert "set it to at most [48, 64]" in str(error.value)
