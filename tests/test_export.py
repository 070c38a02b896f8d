"""The export bundle: its ONNX graphs take any frame count and give the pipeline's scores; predict chooses the model
and accepts the bundle; the bundle's numpy + onnxruntime reference script gives predict's probabilities."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest
import torch

from tclsta.collaborative import load_collaborative, train_collaborative
from tclsta.data import dataset
from tclsta.data.manifest import read_manifest
from tclsta.errors import FileError
from tclsta.evaluate import aligned_logits, read_fusion
from tclsta.export import export_bundle
from tclsta.features import extract_features
from tclsta.inference import load_checkpoint, read_scores, scoring_loader
from tclsta.predict import Predictor

FRAME_COUNTS = (7, 10, 25)


@pytest.fixture(scope="module")
def results(tiny_dataset, tiny_results, tmp_path_factory):
    """A copy of the tiny results with a collaborative model and a model choice added."""
    out = shutil.copytree(tiny_results, tmp_path_factory.mktemp("export") / "results")
    manifest, config = read_manifest(out / "manifest.csv"), tiny_dataset.config
    for stream in ("rgb", "flow"):
        extract_features(out / "models" / f"{stream}.pt", tiny_dataset.shards, manifest, config.train, out / "features" / f"{stream}.h5")
    train_collaborative(out / "features" / "rgb.h5", out / "features" / "flow.h5",
                        dataclasses.replace(config.collaborative, epochs=3, hidden=16), "cpu",
                        out / "models" / "collaborative.pt", out / "models" / "collaborative_history.csv", out / "scores" / "collaborative.csv")
    (out / "model_choice.json").write_text(json.dumps({"best": "collaborative"}))
    return out


@pytest.fixture(scope="module")
def bundle(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    run = subprocess.run([sys.executable, "-m", "tclsta", "export", str(results), "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(run.stderr.splitlines()) <= 3, run.stderr  # quiet: no exporter chatter, no warnings
    return out


def test_bundle_holds_everything(bundle, results):
    names = {"bundle.json", "fusion.json", "reference.py", "rgb.onnx", "flow.onnx", "collaborative.onnx"}
    assert {p.name for p in bundle.iterdir()} == names
    described = json.loads((bundle / "bundle.json").read_text())
    assert described["classes"] == Predictor(results, "cpu").classes
    assert described["best"] == "collaborative"  # from the results' model_choice.json
    assert set(described["settings"]) == {"name", "preprocess", "flow", "train"} and described["settings"]["flow"]["bound"] == 20
    assert described["streams"]["flow"]["input"] == {"frames": 4, "channels": 4, "crop_size": [40, 56], "test_crops": 1}
    spec = described["preprocessing"]
    assert set(spec) == {"decode", "rgb", "flow", "crop", "fusion", "collaborative"}
    assert spec["rgb"]["mean"] == pytest.approx([0.485, 0.456, 0.406]) and spec["rgb"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert (spec["flow"]["bound"], spec["flow"]["flow_stack"], spec["flow"]["tvl1"]["nscales"]) == (20, 2, 2)
    assert {"sampling", "to_input"} <= set(spec["rgb"]) and {"windows", "quantise", "to_input"} <= set(spec["flow"])
    assert (bundle / "fusion.json").read_bytes() == (results / "fusion.json").read_bytes()


def test_every_graph_takes_any_frame_count(bundle, results):
    """Each ONNX graph against its torch model at 7, 10 and 25 frames (the streams were exported at 4)."""
    cpu = torch.device("cpu")
    sessions = {name: onnxruntime.InferenceSession(str(bundle / f"{name}.onnx"), providers=["CPUExecutionProvider"])
                for name in ("rgb", "flow", "collaborative")}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for stream, channels in (("rgb", 3), ("flow", 4)):
            model = load_checkpoint(results / "models" / f"{stream}.pt", cpu)[0]
            for frames in FRAME_COUNTS:
                clips = torch.randn(2, frames, channels, 40, 56, generator=generator)
                expected = model(clips)
                logits, features = sessions[stream].run(None, {"clips": clips.numpy()})
                np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4)
                np.testing.assert_allclose(features, expected.features.numpy(), atol=1e-4)
        collaborative = load_collaborative(results / "models" / "collaborative.pt", cpu)[0]
        for static_frames, motion_frames in zip(FRAME_COUNTS, FRAME_COUNTS[::-1]):
            static, motion = torch.randn(3, static_frames, 128, generator=generator), torch.randn(3, motion_frames, 128, generator=generator)
            logits = sessions["collaborative"].run(None, {"static": static.numpy(), "motion": motion.numpy()})[0]
            np.testing.assert_allclose(logits, collaborative(static, motion).logits.numpy(), atol=1e-4)


@pytest.mark.parametrize("model", ["fusion", "collaborative"])
def test_results_and_bundle_give_the_pipeline_scores(bundle, results, tiny_dataset, model):
    """Predict's models, from the results folder and from the bundle, on the shards' test clips: the scores the
    pipeline wrote (fused from the streams' score files, or the collaborative model's), which the report shows."""
    manifest = read_manifest(results / "manifest.csv")
    predictors = [Predictor(results, "cpu", model), Predictor(bundle, "cpu", model)]
    loaders = [scoring_loader(manifest, ["test"], tiny_dataset.shards, spec.modality, spec.flow_stack,
                              tiny_dataset.config.train, torch.device("cpu")) for spec in (predictors[0].rgb_spec, predictors[0].flow_spec)]
    video_ids = [item[1] for item in loaders[0].dataset.items]
    assert video_ids == [item[1] for item in loaders[1].dataset.items] and video_ids
    scores = {name: aligned_logits(read_scores(results / "scores" / f"{name}.csv"), video_ids, name)
              for name in ("rgb", "flow", "collaborative")}
    expected = scores["collaborative"] if model == "collaborative" else read_fusion(results / "fusion.json").fuse(scores["rgb"], scores["flow"])
    for predictor in predictors:
        assert predictor.model == model
        got = torch.cat([predictor.scores(rgb, flow) for (rgb, _), (flow, _) in zip(*loaders)])
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_reference_script_gives_predicts_probabilities(bundle, tiny_videos):
    """The bundle's reference.py (numpy and onnxruntime only) from decoded frames, against predict on the video."""
    imported = {node.names[0].name.split(".")[0] if isinstance(node, ast.Import) else node.module.split(".")[0]
                for node in ast.walk(ast.parse((bundle / "reference.py").read_text())) if isinstance(node, (ast.Import, ast.ImportFrom))}
    assert imported == {"__future__", "json", "pathlib", "typing", "numpy", "onnxruntime"}
    spec = importlib.util.spec_from_file_location("reference", bundle / "reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    ours = reference.Bundle(bundle)
    for model in ("fusion", "collaborative"):
        predictor = Predictor(bundle, "cpu", model)
        for video in sorted((tiny_videos / "videos").rglob("*.avi"))[::12]:
            num_frames, frames = predictor.sample(video)
            assert sorted(frames) == ours.frames_needed(num_frames)
            probabilities = ours.probabilities(frames, predictor.tvl1, model, num_frames)
            top5 = predictor.predict(video).top5
            np.testing.assert_allclose([probabilities[ours.classes.index(name)] for name, _ in top5], [p for _, p in top5], atol=1e-5)


def test_reference_crops_are_the_test_views():
    """The reference script's ten test crops (corners, centre, mirrored; flow x negated) against the pipeline's."""
    spec = importlib.util.spec_from_file_location("reference", "tclsta/export_reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    clips = {"rgb": np.random.default_rng(0).integers(0, 256, (3, 3, 48, 64), dtype=np.uint8),
             "flow": np.random.default_rng(1).integers(0, 256, (3, 4, 48, 64), dtype=np.uint8)}
    bundle = SimpleNamespace(spec={"crop": {"size": [40, 56], "test_crops": {"rgb": 10, "flow": 10}}})
    for stream, clip in clips.items():
        views = dataset.test_views(torch.from_numpy(clip), dataset.ClipSpec(stream, 3, (40, 56), 2, test_crops=10)).numpy()
        np.testing.assert_array_equal(reference.Bundle.crops(bundle, clip, stream), views)


def test_predict_chooses_the_model(bundle, results, tiny_results, tiny_videos, caplog):
    """--model best reads model_choice.json (the bundle's "best"); without one it is the fusion, said in one line."""
    videos = sorted((tiny_videos / "videos").rglob("*.avi"))[:2]
    run = subprocess.run([sys.executable, "-m", "tclsta", "predict", str(bundle), *map(str, videos), "--json", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    in_process = Predictor(results, "cpu")
    assert in_process.model == "collaborative"
    for video, predicted in zip(videos, json.loads(run.stdout)):
        expected = in_process.predict(video)
        assert [r["class"] for r in predicted["top5"]] == [name for name, _ in expected.top5]
        np.testing.assert_allclose([r["score"] for r in predicted["top5"]], [p for _, p in expected.top5], atol=1e-4)
    with caplog.at_level(logging.INFO, logger="tclsta.export"):
        assert Predictor(tiny_results, "cpu").model == "fusion"
    assert [r.getMessage() for r in caplog.records] == [f"no {tiny_results / 'model_choice.json'}: using the fusion model"]


def test_export_names_a_missing_model(tmp_path, results):
    partial = tmp_path / "results"
    (partial / "models").mkdir(parents=True)
    (partial / "models" / "rgb.pt").write_bytes((results / "models" / "rgb.pt").read_bytes())
    with pytest.raises(FileError, match=f"{partial / 'models' / 'flow.pt'}: missing"):
        export_bundle(partial, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
