"""The torch TV-L1 backend on the CPU: known motion, agreement with OpenCV, backend selection, the flow stage."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from tclsta import flow as flow_module
from tclsta.config import FlowConfig, validate_config
from tclsta.data.dataset import decode_flow_jpegs
from tclsta.data.shards import ShardReader
from tclsta.demo import make_demo_dataset
from tclsta.errors import BadConfigError
from tclsta.flow import batched_video_flow, create_tvl1, dequantise_flow, quantise_flow, resolve_backend, video_flow
from tclsta.preprocess import flow_settings, flow_shard
from tclsta.tvl1_torch import DualTVL1, _median, _median_network
from tclsta.video import decode_frames

SHIFTS = [(1.5, -0.75), (0.3, 0.2), (-2.25, 1.0), (3.0, 0.0), (0.0, -1.4), (-0.6, -0.6)]  # (dx, dy) pixels


def sinusoid_texture(shift: tuple[float, float], seed: int, size: tuple[int, int] = (64, 80)) -> np.ndarray:
    """A smooth random texture (sum of plane waves, wavelengths 6-40 px) translated by exactly ``shift``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float64)
    image = np.zeros(size)
    for _ in range(24):
        wavelength, angle, phase, amplitude = rng.uniform(6, 40), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1)
        kx, ky = 2 * np.pi / wavelength * np.cos(angle), 2 * np.pi / wavelength * np.sin(angle)
        image += amplitude * np.sin(kx * (x - shift[0]) + ky * (y - shift[1]) + phase)
    return np.rint(128 + 100 * image / np.abs(image).max()).astype(np.uint8)


def opencv_tvl1(config: FlowConfig, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    tvl1 = create_tvl1(dataclasses.replace(config, backend="opencv"))
    return np.stack([tvl1(a, b) for a, b in zip(prev, nxt)])


def quantised_agreement(ours: np.ndarray, reference: np.ndarray, bound: float) -> tuple[float, float]:
    """Fractions of uint8 flow values equal to, and within one level of, the reference's."""
    levels = np.abs(quantise_flow(ours, bound).astype(int) - quantise_flow(reference, bound).astype(int))
    return float((levels == 0).mean()), float((levels <= 1).mean())


@pytest.fixture(autouse=True)
def one_thread():
    """Timings of a loaded 2-core CI machine: OpenMP threads would only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_recovers_known_subpixel_translations():
    prev = np.stack([sinusoid_texture((0, 0), seed) for seed in range(len(SHIFTS))])
    nxt = np.stack([sinusoid_texture(shift, seed) for seed, shift in enumerate(SHIFTS)])
    flow = DualTVL1()(torch.from_numpy(prev), torch.from_numpy(nxt)).numpy()
    assert flow.shape == (len(SHIFTS), 64, 80, 2) and flow.dtype == np.float32
    error = np.linalg.norm(flow - np.array(SHIFTS)[:, None, None], axis=-1)[:, 8:-8, 8:-8]  # away from the borders
    assert error.mean() < 0.1
    assert error.mean(axis=(1, 2)).max() < 0.15


def test_matches_opencv_on_demo_frames(tmp_path):
    make_demo_dataset(tmp_path, classes_per_kind=1, groups=2, clips_per_group=1, num_frames=10, width=128, height=96)
    grey = np.stack([
        np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in decode_frames(path)])
        for path in sorted((tmp_path / "videos").rglob("*.avi"))
    ])  # (videos, T, H, W)
    prev, nxt = grey[:, :-1].reshape(-1, 96, 128), grey[:, 1:].reshape(-1, 96, 128)
    config = FlowConfig()
    reference = opencv_tvl1(config, prev, nxt)
    ours = DualTVL1()(torch.from_numpy(prev), torch.from_numpy(nxt)).numpy()
    assert np.abs(reference).max() > 1  # the demo's drifting patches move
    assert np.linalg.norm(ours - reference, axis=-1).mean() < 0.03
    # Zero flow quantises to 127.5: still pixels flip between 127 and 128 on any tiny difference.
    equal, within_one = quantised_agreement(ours, reference, config.bound)
    assert equal > 0.5 and within_one > 0.995


def test_a_pair_gets_the_same_flow_alone_and_in_a_batch():
    prev = torch.from_numpy(np.stack([sinusoid_texture((0, 0), seed, (40, 48)) for seed in range(3)]))
    nxt = torch.from_numpy(np.stack([sinusoid_texture(SHIFTS[seed], seed, (40, 48)) for seed in range(3)]))
    tvl1 = DualTVL1(nscales=3, warps=3)
    together = tvl1(prev, nxt)
    alone = torch.cat([tvl1(prev[i : i + 1], nxt[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)
    torch.testing.assert_close(tvl1(prev.float() / 255, nxt.float() / 255), together, atol=1e-3, rtol=0)  # OpenCV's float scale


@pytest.mark.parametrize("size", [3, 5])
def test_median_filter_is_opencvs(size):
    rng = np.random.default_rng(0)
    flow = np.stack([rng.normal(0, 2, (30, 41)), rng.integers(0, 3, (30, 41))]).astype(np.float32)  # ties too
    ours = _median(torch.from_numpy(flow)[None], _median_network(size * size), size)[0].numpy()
    np.testing.assert_array_equal(ours, np.stack([cv2.medianBlur(f, size) for f in flow]))


def test_rejects_even_median_filter():
    with pytest.raises(ValueError, match="odd"):
        DualTVL1(median_filtering=4)


def test_backend_selection(monkeypatch):
    assert resolve_backend("torch") == "torch"
    monkeypatch.setattr(flow_module, "cuda_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend("auto") == "opencv"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend("auto") == "torch"
    monkeypatch.setattr(flow_module, "cuda_available", lambda: True)
    assert resolve_backend("auto") == "opencv-cuda"


def test_config_accepts_the_torch_backend_and_batch_size():
    validate_config({"datasets": {"d": {"format": "demo", "root": "r", "splits_dir": "s"}}, "flow": {"backend": "torch", "batch_pairs": 8}})
    with pytest.raises(BadConfigError, match="flow.batch_pairs"):
        validate_config({"datasets": {"d": {"format": "demo", "root": "r", "splits_dir": "s"}}, "flow": {"batch_pairs": 0}})


def test_per_pair_api_of_the_torch_backend():
    config = FlowConfig(backend="torch", nscales=3, warps=3, epsilon=0.05)
    frames = np.stack([sinusoid_texture((1.0 * t, -0.5 * t), seed=0, size=(48, 56)) for t in range(3)])
    flow = dequantise_flow(video_flow(frames, create_tvl1(config), config.bound), config.bound)  # (2, 2, H, W)
    assert flow.shape == (2, 2, 48, 56)
    assert flow[:, 0, 8:-8, 8:-8].mean() == pytest.approx(1.0, abs=0.2)
    assert flow[:, 1, 8:-8, 8:-8].mean() == pytest.approx(-0.5, abs=0.2)


def test_batches_span_videos_and_keep_their_order():
    """Frame t of video v holds v + t / 10, and the fake flow is the frame's value: each pair finds its way back."""
    sizes = {"a": (5, 8, 8), "b": (2, 8, 8), "c": (7, 8, 8), "d": (3, 6, 8), "e": (1, 6, 8)}  # (T, H, W)
    videos = [(key, np.full(shape, v + np.arange(shape[0])[:, None, None] / 10, np.float32)) for v, (key, shape) in enumerate(sizes.items())]
    calls = []

    def fake_batch_flow(prev, nxt):
        calls.append(prev.shape)
        return np.repeat(prev[..., None], 2, axis=-1)

    out = list(batched_video_flow(videos, fake_batch_flow, bound=20, batch_pairs=4))
    assert [key for key, _ in out] == list(sizes)
    for (key, flow), (_, frames) in zip(out, videos):
        assert flow.shape == (len(frames) - 1, 2, *frames.shape[1:]) and flow.dtype == np.uint8
        np.testing.assert_allclose(dequantise_flow(flow, 20)[:, 0], frames[:-1], atol=40 / 255)  # one level
    # a's 4 pairs | b's 1 + c's first 3 | c's last 3, cut short by d's new frame size | d's 2 (e has none)
    assert calls == [(4, 8, 8), (4, 8, 8), (3, 8, 8), (2, 6, 8)]


def test_flow_shard_with_the_torch_backend(tiny_dataset, tmp_path):
    work = tiny_dataset.shards[0].parent  # the fixture's frames_0.h5 and OpenCV's flow_0.h5
    config = dataclasses.replace(tiny_dataset.config.flow, backend="torch", batch_pairs=5)  # batches span videos
    flow_shard(work / "frames_0.h5", config, tmp_path / "flow.h5", workers=1)
    with ShardReader(work / "flow_0.h5") as opencv, ShardReader(tmp_path / "flow.h5") as ours:
        assert ours.video_ids == opencv.video_ids
        within_one = []
        for video_id in ours.video_ids:
            assert ours.record(video_id) == opencv.record(video_id)
            assert ours.flow_bound(video_id) == opencv.flow_bound(video_id)
            assert ours.settings(video_id, "flow") == flow_settings(config)
            a, b = (decode_flow_jpegs(reader.flow_jpegs(video_id)) for reader in (ours, opencv))
            assert a.shape == b.shape == (11, 2, 48, 64) and a.dtype == b.dtype == np.uint8
            within_one.append((np.abs(a.astype(int) - b.astype(int)) <= 1).mean())
    assert np.mean(within_one) > 0.99
