"""The real-dataset recipe: per-format defaults and per-stream overrides, pretrained weights (fetched once,
hash-checked, never unpickling code), TSN multi-scale crops, partial BatchNorm, HMDB51 source-video groups,
and a tiny real run of both streams through the three stages from a local ResNet-18 weights file."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torchvision.models import resnet18

from conftest import REPO
from tclsta.config import (REAL_DATASET_RECIPE, dataset_settings, for_stream, load_config, parse_dataset,
                           validate_config)
from tclsta.data.augment import SCALES, multiscale_box, resize_clip
from tclsta.data.manifest import build_manifest, read_manifest
from tclsta.errors import BadConfigError
from tclsta.models import AttentionStream
from tclsta.models.backbones import build_backbone, cross_modality_weight
from tclsta.pretrained import WeightsError, imagenet_weights_path, load_weights
from tclsta.train import Stage, train_mode, train_stream


def ucf_entry(tiny_videos: Path, **model) -> dict:
    """A UCF101-format entry on the tiny generated videos (UCF101 layout, real-format split files)."""
    return {"format": "ucf101", "root": str(tiny_videos / "videos"), "splits_dir": str(tiny_videos / "splits"),
            "model": {"backbone": "resnet18", **model}}


def resolved(config: dict, name: str):
    return parse_dataset(dataset_settings(config, name))


def test_real_formats_get_the_recipe_and_demo_does_not(tiny_videos):
    config = {"datasets": {"ucf": ucf_entry(tiny_videos), "demo": {"format": "demo", "root": "d/videos", "splits_dir": "d/splits"}}}
    validate_config(config)
    ucf = resolved(config, "ucf")
    rgb_model, flow_model = for_stream(ucf.model, "rgb"), for_stream(ucf.model, "flow")
    rgb_train, flow_train = for_stream(ucf.train, "rgb"), for_stream(ucf.train, "flow")
    assert rgb_model.pretrained == flow_model.pretrained == "imagenet"
    assert (rgb_model.dropout, flow_model.dropout) == (0.8, 0.7)
    assert [s["name"] for s in rgb_train.stages] == [s["name"] for s in flow_train.stages] == ["spatial", "temporal", "joint"]
    assert flow_train.stages[0]["epochs"] == 4 * rgb_train.stages[0]["epochs"]
    assert [s["lr"] for s in flow_train.stages] == [1e-3, 1e-3, 1e-5]
    assert rgb_train.scale_jitter and rgb_train.partial_bn and rgb_train.flip and rgb_train.optimizer == "sgd"
    assert (rgb_train.test_frames, rgb_train.test_crops) == (25, 10)
    demo = resolved(config, "demo")
    assert demo.model.pretrained is None and not demo.train.scale_jitter and not demo.train.partial_bn
    assert demo.train.rgb == demo.train.flow == {} and demo.model.rgb == demo.model.flow == {}


def test_more_specific_settings_win_and_streams_override_one_key(tiny_videos):
    entry = ucf_entry(tiny_videos)
    entry["train"] = {"stages": [{"name": "joint", "epochs": 2, "lr": 0.01}], "flow": {"batch_size": 3}}
    config = {"train": {"rgb": {"test_crops": 1}}, "datasets": {"ucf": entry}}
    validate_config(config)
    train = resolved(config, "ucf").train
    rgb, flow = for_stream(train, "rgb"), for_stream(train, "flow")
    # the entry's common stages replace the recipe's flow stages; its flow batch size is the flow stream's only
    assert rgb.stages == flow.stages == ({"name": "joint", "epochs": 2, "lr": 0.01},)
    assert (rgb.batch_size, flow.batch_size) == (8, 3)
    assert (rgb.test_crops, flow.test_crops) == (1, 10)  # the top-level rgb override beats the recipe's common key
    assert rgb.rgb == rgb.flow == {}


def test_unknown_per_stream_key_is_named(tiny_videos):
    entry = ucf_entry(tiny_videos)
    entry["train"] = {"flow": {"epochz": 3}}
    with pytest.raises(BadConfigError, match=r"datasets.ucf.train.flow.*epochz"):
        validate_config({"datasets": {"ucf": entry}})


def test_shipped_config_keeps_the_recipe_for_real_datasets(tiny_videos):
    config = load_config(REPO / "config.yaml")
    config["datasets"]["ucf"] = ucf_entry(tiny_videos)
    ucf = resolved(config, "ucf")
    assert ucf.model.pretrained == "imagenet" and ucf.train.test_crops == 10
    assert for_stream(ucf.train, "flow").stages[0]["epochs"] == REAL_DATASET_RECIPE["train"]["flow"]["stages"][0]["epochs"]
    assert resolved(config, "demo").model.pretrained is None


def test_multiscale_boxes_follow_tsn():
    generator = torch.Generator().manual_seed(0)
    height, width = 256, 340
    sizes, corners = set(), set()
    for _ in range(400):
        top, left, h, w = multiscale_box(height, width, generator)
        sizes.add((h, w))
        if h < height and w < width:
            corners.add((top / (height - h), left / (width - w)))
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
    allowed = {(round(256 * a), round(256 * b)) for a in SCALES for b in SCALES
               if abs(SCALES.index(a) - SCALES.index(b)) <= 1}
    assert sizes == allowed  # every scale pair at most one step apart, and only those
    assert len({(round(t, 1), round(l, 1)) for t, l in corners}) == 5  # four corners and the centre

    clip = np.random.default_rng(0).random((3, 10, 60, 80)).astype(np.float32)
    top, left, h, w = multiscale_box(60, 80, generator)
    out = resize_clip(clip[:, :, top : top + h, left : left + w], (40, 56))
    assert out.shape == (3, 10, 40, 56) and out.dtype == np.float32


def test_partial_bn_freezes_all_but_the_first_batchnorm():
    model = AttentionStream(num_classes=3, backbone="resnet18", spatial_hidden=8, temporal_hidden=8)
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [n.running_mean.clone() for n in norms]
    train_mode(model, Stage("spatial", 1, 1e-3, 1), partial_bn=True)
    assert norms[0].training and not any(n.training for n in norms[1:])
    model(torch.randn(2, 2, 3, 32, 32))
    assert not torch.equal(norms[0].running_mean, before[0])
    assert all(torch.equal(n.running_mean, b) for n, b in zip(norms[1:], before[1:]))
    train_mode(model, Stage("spatial", 1, 1e-3, 1))
    assert all(n.training for n in norms)


def save_torchvision_weights(folder: Path) -> Path:
    """A torchvision ResNet-18 state dict (random weights, real format) named like torchvision's files."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "resnet18-local.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    named = folder / f"resnet18-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}.pth"
    path.rename(named)
    return named


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_local_torchvision_file_loads_with_cross_modality(tmp_path):
    path = save_torchvision_weights(tmp_path)
    reference = torch.load(path, weights_only=True)
    rgb, _ = build_backbone("resnet18", 3, str(path))
    torch.testing.assert_close(rgb.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"])
    flow, _ = build_backbone("resnet18", 10, str(path))  # the flow stream's conv1: cross-modality initialisation
    torch.testing.assert_close(flow.conv1.weight, cross_modality_weight(reference["conv1.weight"], 10))


def test_planted_payload_under_the_expected_name_is_refused_unrun(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "code_ran"
    expected = imagenet_weights_path("resnet18")
    assert expected == Path("resources/resnet18-f37072fd.pth")
    expected.parent.mkdir()
    expected.write_bytes(pickle.dumps({"conv1.weight": Payload(marker)}))
    with pytest.raises(WeightsError, match="SHA-256 does not start with f37072fd"):
        build_backbone("resnet18", 3, "imagenet")
    # the same payload under a name whose hash it does match: torch.load(weights_only=True) refuses it
    named = tmp_path / f"resnet18-{hashlib.sha256(expected.read_bytes()).hexdigest()[:8]}.pth"
    shutil.copy(expected, named)
    with pytest.raises(WeightsError, match="weights_only=True refused"):
        load_weights(named)
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(tmp_path / "plain_unpickling_runs_it")))  # the payload is live
    assert (tmp_path / "plain_unpickling_runs_it").exists()


def test_missing_imagenet_weights_name_both_ways(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError) as error:
        build_backbone("resnet50", 3, "imagenet")
    message = str(error.value)
    assert "resources/resnet50-0676ba61.pth" in message and "pretrained_weights rule" in message
    assert "model.pretrained: /path/to/resnet50-0676ba61.pth" in message
    run = subprocess.run([sys.executable, "-m", "tclsta", "fetch-weights", "--output", "resources/resnet34-abc.pth"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "not the name of torchvision ImageNet weights" in run.stderr


def make_hmdb_sources(tiny_videos: Path, root: Path) -> Path:
    """HMDB51 layout where each class has 3 source videos cut into clips ``<source>_<class>_<tags>_<n>.avi``
    whose per-clip tags differ between the clips of one source, as HMDB51's do."""
    splits = root / "splits"
    splits.mkdir(parents=True)
    videos = sorted((tiny_videos / "videos").glob("*/*.avi"))
    for class_dir in sorted({v.parent for v in videos}):
        lines = []
        target = root / "videos" / class_dir.name.lower()
        target.mkdir(parents=True)
        for i, video in enumerate(sorted(class_dir.glob("*.avi"))):
            tags = ("u_cm_np1_fr_med", "f_nm_np2_ba_goo")[i % 2]
            name = f"Source_{i // 2}_{class_dir.name.lower()}_{tags}_{i % 2}.avi"
            shutil.copy(video, target / name)
            lines.append(f"{name} {'2' if i >= 4 else '1'}")
        (splits / f"{class_dir.name.lower()}_test_split1.txt").write_text("\n".join(lines) + "\n")
    return root


def test_hmdb51_validation_keeps_source_videos_whole(tiny_videos, tmp_path):
    root = make_hmdb_sources(tiny_videos, tmp_path / "hmdb")
    for seed in range(4):
        config = parse_dataset({"name": "hmdb", "format": "hmdb51", "root": str(root / "videos"), "splits_dir": str(root / "splits"),
                                "train": {"val_fraction": 0.5, "seed": seed}, "preprocess": {"num_shards": 2}})
        manifest = build_manifest(config)
        trained = manifest[manifest["split"].isin(["train", "val"])]
        source = trained["video_id"].str.extract(r"/(Source_\d+)_", expand=False) + trained["class_name"]
        assert source.notna().all() and source.nunique() == 4 * 2
        assert trained.groupby(source)["split"].nunique().eq(1).all()  # no source video straddles train and val
        assert set(trained["split"]) == {"train", "val"}
        assert trained.groupby("class_name")["split"].apply(lambda s: (s == "val").sum()).eq(2).all()


def test_tiny_run_trains_both_streams_through_every_stage_from_local_resnet18(tiny_dataset, tmp_path):
    """The recipe end to end on tiny data: local torchvision weights, partial BN, scale jitter, per-stream dropout."""
    weights = save_torchvision_weights(tmp_path / "weights")
    entry = ucf_entry(tiny_dataset.root, pretrained=str(weights), flow_stack=2, spatial_hidden=8, temporal_hidden=8)
    entry["train"] = {"batch_size": 4, "train_frames": 2, "test_frames": 2, "crop_size": [32, 32], "num_workers": 0,
                      "device": "cpu", "val_fraction": 0.5,
                      "rgb": {"stages": [{"name": n, "epochs": 1, "lr": lr} for n, lr in (("spatial", 1e-3), ("temporal", 1e-3), ("joint", 1e-5))]},
                      "flow": {"stages": [{"name": n, "epochs": 1, "lr": lr} for n, lr in (("spatial", 1e-3), ("temporal", 1e-3), ("joint", 1e-5))]}}
    config = {"datasets": {"ucf": entry}}
    validate_config(config)
    dataset = resolved(config, "ucf")
    manifest = read_manifest(tiny_dataset.manifest_path)
    for stream in ("rgb", "flow"):
        model, train = for_stream(dataset.model, stream), for_stream(dataset.train, stream)
        assert train.scale_jitter and train.partial_bn and model.dropout == {"rgb": 0.8, "flow": 0.7}[stream]
        checkpoint = tmp_path / f"{stream}.pt"
        train_stream(tiny_dataset.shards, manifest, stream, model, train, checkpoint, tmp_path / f"{stream}.csv")
        history = pd.read_csv(tmp_path / f"{stream}.csv")
        assert history["stage"].tolist() == ["spatial", "temporal", "joint"]
        state = torch.load(checkpoint, weights_only=True)
        assert state["model_config"]["pretrained"] == str(weights) and state["model_config"]["dropout"] == model.dropout
        assert state["state_dict"]["backbone.conv1.weight"].shape[1] == (3 if stream == "rgb" else 4)


@pytest.fixture
def ucf_workdir(tmp_path, tiny_videos) -> Path:
    """A copy of the workflow whose config holds one UCF101-format dataset with the shipped defaults."""
    for name in ("Snakefile", "rules", "workflow", "envs"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    config = load_config(REPO / "config.yaml")
    config["datasets"] = {"ucf101": {k: v for k, v in ucf_entry(tiny_videos).items() if k != "model"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_dry_run_plans_the_weights_rule_once_before_training(ucf_workdir):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "results/ucf101/report.html"],
                         cwd=ucf_workdir, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    stats = out[out.index("Job stats:"):]
    counts = {p[0]: int(p[1]) for p in (line.split() for line in stats.splitlines()[:30]) if len(p) == 2 and p[1].isdigit()}
    assert counts["pretrained_weights"] == 1 and counts["train_stream"] == 2
    planned = out.index("rule pretrained_weights:")
    assert "resources/resnet50-0676ba61.pth" in out[planned:planned + 400]
    assert all(planned < i for i in [n for n in range(len(out)) if out.startswith("rule train_stream:", n)])


def test_weights_table_matches_torchvision_and_the_workflow_needs_no_torch():
    from torchvision.models import ResNet18_Weights, ResNet50_Weights

    from tclsta.pretrained import IMAGENET_URLS

    assert IMAGENET_URLS == {"resnet18": ResNet18_Weights.IMAGENET1K_V1.url, "resnet50": ResNet50_Weights.IMAGENET1K_V1.url}
    code = "import sys, tclsta.pretrained, tclsta.config; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stderr
