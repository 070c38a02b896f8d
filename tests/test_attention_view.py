"""The attention view on real tiny trained streams: videos chosen, attention shapes and sums, JSON, figure."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image

from tclsta.attention_view import attention_figure, attention_views, choose_videos, cue_shares
from tclsta.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from tclsta.data.manifest import read_manifest
from tclsta.demo import LUMA_WEIGHTS, benchmark_cue, plan_benchmark_clip, render_benchmark_clip
from tclsta.config import DemoConfig
from tclsta.evaluate import aligned_logits
from tclsta.inference import read_scores
from tclsta.predict import Predictor
from tclsta.report import figure_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_choose_videos_spreads_over_classes_deterministically() -> None:
    videos = [(f"c{label}/v{clip}", label) for clip in (2, 1, 0) for label in range(8)]
    chosen = choose_videos(videos, 4)
    assert [videos[i] for i in chosen] == [("c0/v0", 0), ("c2/v0", 2), ("c4/v0", 4), ("c6/v0", 6)]
    assert choose_videos(list(reversed(videos)), 4) != chosen  # positions follow the input order...
    assert [videos[::-1][i] for i in choose_videos(videos[::-1], 4)] == [videos[i] for i in chosen]  # ...ids do not
    more = [videos[i] for i in choose_videos(videos, 10)]
    assert [label for _, label in more] == [*range(8), 0, 1]  # every class once, then second videos
    assert more[8] == ("c0/v1", 0)
    assert choose_videos(videos, 0) == [] and choose_videos([], 4) == []


def test_attention_views_of_tiny_trained_streams(tiny_dataset, tiny_results) -> None:
    manifest = read_manifest(tiny_results / "manifest.csv")
    views = attention_views(tiny_results, manifest, tiny_dataset.shards, 3, device="cpu")
    config = tiny_dataset.config
    steps, (height, width) = config.train.test_frames, config.train.crop_size

    test = manifest[manifest["split"] == "test"].set_index("video_id")
    assert len(views) == 3 and len({view.class_name for view in views}) == 3
    for view in views:
        assert test.loc[view.video_id, "class_name"] == view.class_name
        assert view.rgb_images.shape == (steps, height, width, 3)
        assert 0 <= view.rgb_images.min() and view.rgb_images.max() <= 1 and view.rgb_images.std() > 0.01
        assert view.flow_magnitude.shape == (steps, height, width) and view.flow_magnitude.min() >= 0
        for stream in ("rgb", "flow"):
            spatial, temporal = view.spatial[stream], view.temporal[stream]
            assert spatial.ndim == 3 and spatial.shape[0] == steps
            np.testing.assert_allclose(spatial.sum(axis=(1, 2)), 1.0, atol=1e-5)
            assert temporal.shape == (steps,)
            np.testing.assert_allclose(temporal.sum(), 1.0, atol=1e-5)
            assert view.frame_indices[stream] == sorted(view.frame_indices[stream])
            assert len(view.frame_indices[stream]) == steps
        scores = [score for _, score in view.top5]
        assert len(view.top5) == 4 and scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-4

    # The logits behind the views are those the score_stream stage wrote for the same videos.
    predictor = Predictor(tiny_results, "cpu")
    ids = [view.video_id for view in views]
    paths = [tiny_results / "scores" / f"{stream}.csv" for stream in ("rgb", "flow")]
    fused = predictor.fusion.fuse(*(aligned_logits(read_scores(path), ids, path) for path in paths)).softmax(1)
    for view, probabilities in zip(views, fused):
        top = probabilities.topk(4)
        assert [name for name, _ in view.top5] == [predictor.classes[i] for i in top.indices]
        np.testing.assert_allclose([score for _, score in view.top5], top.values.numpy(), atol=1e-4)

    # The images shown are the frames the static stream saw: the same attention comes out of them again.
    normalised = (views[0].rgb_images - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        output = predictor.rgb(torch.from_numpy(normalised.transpose(0, 3, 1, 2).astype(np.float32))[None])
    np.testing.assert_allclose(output.temporal_attention[0].numpy(), views[0].temporal["rgb"], atol=1e-4)
    np.testing.assert_allclose(output.spatial_attention[0].numpy(), views[0].spatial["rgb"], atol=1e-4)


def test_attention_command_writes_json_and_png(tiny_dataset, tiny_results, tmp_path) -> None:
    json_path, png_path = tmp_path / "attention.json", tmp_path / "plots" / "attention.png"
    # Read as a benchmark dataset, so that the attention on the designed cue is measured too (the tiny videos are
    # not benchmark clips: the shares are those of the benchmark clips their ids name, numbers in range only).
    settings = {"format": "demo", "demo": {**dataclasses.asdict(tiny_dataset.config.demo), "kind": "benchmark"}}
    command = [sys.executable, "-m", "tclsta", "attention", "--settings", json.dumps(settings), "--results", str(tiny_results),
               "--manifest", str(tiny_results / "manifest.csv"), "--shards", *map(str, tiny_dataset.shards), "--videos", "4", "--device", "cpu", "--threads", "2",
               "--output", str(json_path), "--png", str(png_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr

    record = json.loads(json_path.read_text())
    test_videos = (read_manifest(tiny_results / "manifest.csv")["split"] == "test").sum()
    for share in record["cue"].values():
        assert 0 < share["videos"] <= test_videos
        assert 0 < share["spatial_uniform"] < 1 and 0 < share["temporal_uniform"] <= 1
        assert 0 <= share["spatial"] <= 1 and 0 <= share["temporal"] <= 1
    videos = record["videos"]
    assert len(videos) == 4 and len({video["class_name"] for video in videos}) == 4  # the tiny dataset's 4 classes
    for video in videos:
        assert set(video["streams"]) == {"rgb", "flow"}
        for stream in video["streams"].values():
            assert abs(sum(stream["temporal_attention"]) - 1) < 1e-4
            assert abs(np.sum(stream["spatial_attention"]) - len(stream["temporal_attention"])) < 1e-3
        assert len(video["top5"]) == 4
    png = png_path.read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    image = np.asarray(Image.open(BytesIO(png)).convert("RGB"), dtype=float)
    assert image.shape[0] > 4 * 300  # one block per video
    saturation = image.max(axis=2) - image.min(axis=2)
    assert (saturation > 100).mean() > 0.05  # the heatmaps are drawn
    # Written atomically: no temporary files left beside the outputs.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["attention.json", "attention.png", "plots"]


def test_attention_figure_without_videos() -> None:
    assert figure_png(attention_figure([])).startswith(PNG_SIGNATURE)


def test_cue_shares_count_the_cells_the_target_overlaps() -> None:
    # A 48x64 frame, centre crop 32x48 at (8, 8), a 2x3 map of 16x16 cells; the target (x 30..50, y 10..20)
    # overlaps cells (0, 1) and (0, 2) of the crop; steps 1 and 2 of 4 show the cue.
    spatial = np.full((4, 2, 3), 1 / 6)
    spatial[1] = [[0.0, 0.5, 0.3], [0.2, 0.0, 0.0]]
    temporal = np.array([0.1, 0.6, 0.2, 0.1])
    on_cue = np.array([False, True, True, False])
    shares = cue_shares(spatial, temporal, on_cue, (30, 10, 50, 20), (8, 8), (32, 48))
    np.testing.assert_allclose(shares, [(0.8 + 2 / 6) / 2, 2 / 6, 0.8, 0.5])


def test_benchmark_cue_is_where_and_when_the_target_is_painted() -> None:
    demo = DemoConfig(kind="benchmark", num_frames=12, width=64, height=48, seed=0)
    for class_name, group, clip in (("RedPatch", 3, 1), ("DriftUp", 7, 2)):
        plan = plan_benchmark_clip(class_name, group, clip, num_frames=12, width=64, height=48, seed=0)
        cue = benchmark_cue(f"{class_name}/v_{class_name}_g{group:02d}_c{clip:02d}", demo)
        x0, y0, x1, y1 = cue.box
        assert cue.moving == plan.patches[0].moving[0]
        assert cue.coloured == ((cue.moving[0], cue.moving[1] + 1) if class_name == "RedPatch" else None)
        frames = render_benchmark_clip(plan).astype(float)  # (T, H, W, 3)
        chroma = frames.max(axis=3) - frames.min(axis=3)  # (T, H, W)
        inside = chroma[:, y0:y1, x0:x1].mean(axis=(1, 2))
        grey = (frames @ LUMA_WEIGHTS)[:, y0:y1, x0:x1]  # the texture without its colour (the chroma is luma-free)
        steps_moving = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2)) > 1  # (T - 1,) the texture drifts
        assert steps_moving.tolist() == [cue.moving[0] <= i < cue.moving[1] for i in range(11)]
        if class_name == "RedPatch":  # coloured exactly in the cue's frames, more saturated than any distractor
            coloured = np.zeros(12, bool)
            coloured[cue.coloured[0]:cue.coloured[1]] = True
            assert inside[coloured].min() > 60 and inside[~coloured].max() < 10
            saturated = np.argwhere(chroma > 0.75 * inside[coloured].min())  # (n, 3) of frame, y, x: the target only
            assert coloured[saturated[:, 0]].all()
            assert (y0 <= saturated[:, 1]).all() and (saturated[:, 1] < y1).all()
            assert (x0 <= saturated[:, 2]).all() and (saturated[:, 2] < x1).all()
        else:  # motion classes: a grey target
            assert inside.max() < 10
    with pytest.raises(ValueError, match="not the id of a generated video"):
        benchmark_cue("RedPatch/clip.avi", demo)
