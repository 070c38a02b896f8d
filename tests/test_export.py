"""The export bundle: its TorchScript and ONNX models give the in-process scores, and predict accepts it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from tclsta.collaborative import load_collaborative, train_collaborative
from tclsta.data.dataset import model_input
from tclsta.data.manifest import read_manifest
from tclsta.errors import FileError
from tclsta.export import export_bundle
from tclsta.features import extract_features, read_features
from tclsta.predict import Predictor
from tclsta.video import decode_frames


@pytest.fixture(scope="module")
def results(tiny_dataset, tiny_results):
    """The tiny results with a collaborative model added."""
    out = tiny_results
    manifest, config = read_manifest(out / "manifest.csv"), tiny_dataset.config
    for stream in ("rgb", "flow"):
        extract_features(out / "models" / f"{stream}.pt", tiny_dataset.shards, manifest, config.train, out / "features" / f"{stream}.h5")
    train_collaborative(out / "features" / "rgb.h5", out / "features" / "flow.h5",
                        dataclasses.replace(config.collaborative, epochs=3, hidden=16), "cpu",
                        out / "models" / "collaborative.pt", out / "models" / "collaborative_history.csv", out / "scores" / "collaborative.csv")
    return out


@pytest.fixture(scope="module")
def bundle(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    run = subprocess.run([sys.executable, "-m", "tclsta", "export", str(results), "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_bundle_holds_everything(bundle, results):
    names = {"bundle.json", "fusion.json", "rgb.pt", "flow.pt", "collaborative.pt", "rgb.onnx", "flow.onnx", "collaborative.onnx"}
    assert {p.name for p in bundle.iterdir()} == names
    described = json.loads((bundle / "bundle.json").read_text())
    assert described["classes"] == Predictor(results, "cpu").classes
    assert set(described["settings"]) == {"name", "preprocess", "flow", "train"} and described["settings"]["flow"]["bound"] == 20
    assert described["streams"]["flow"]["input"] == {"frames": 4, "channels": 4, "crop_size": [40, 56], "test_crops": 1}
    assert (bundle / "fusion.json").read_bytes() == (results / "fusion.json").read_bytes()


def test_bundle_scores_equal_in_process_scores(bundle, results, tiny_videos):
    """TorchScript and ONNX streams and the collaborative model against the in-process models, on real test clips."""
    ours, theirs = Predictor(results, "cpu"), Predictor(bundle, "cpu")
    videos = sorted((tiny_videos / "videos").rglob("*.avi"))[::7]
    sessions = {s: onnxruntime.InferenceSession(str(bundle / f"{s}.onnx"), providers=["CPUExecutionProvider"]) for s in ("rgb", "flow")}
    with torch.no_grad():
        for video in videos:
            frames = decode_frames(video, None)
            clips = ours.clips(len(frames), dict(enumerate(frames)))
            for stream, clip in zip(("rgb", "flow"), clips):
                clip = model_input(clip, torch.device("cpu"))  # the clips are uint8; the models take normalised floats
                expected = getattr(ours, stream)(clip)
                scripted = getattr(theirs, stream)(clip)
                torch.testing.assert_close(scripted.logits, expected.logits, atol=1e-4, rtol=0)
                torch.testing.assert_close(scripted.features, expected.features, atol=1e-4, rtol=0)
                logits, features = sessions[stream].run(None, {"clips": clip.numpy()})
                np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4)
                np.testing.assert_allclose(features, expected.features.numpy(), atol=1e-4)
            a, b = ours.predict(video), theirs.predict(video)
            assert [name for name, _ in a.top5] == [name for name, _ in b.top5]
            np.testing.assert_allclose([p for _, p in a.top5], [p for _, p in b.top5], atol=1e-4)

    collaborative, _, _ = load_collaborative(results / "models" / "collaborative.pt", torch.device("cpu"))
    static, motion = (torch.from_numpy(read_features(results / "features" / f"{s}.h5").features[:5]) for s in ("rgb", "flow"))
    expected = collaborative(static, motion).logits.detach()
    torch.testing.assert_close(torch.jit.load(str(bundle / "collaborative.pt"))(static, motion), expected, atol=1e-4, rtol=0)
    session = onnxruntime.InferenceSession(str(bundle / "collaborative.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"static": static.numpy(), "motion": motion.numpy()})[0], expected.numpy(), atol=1e-4)


def test_predict_command_accepts_the_bundle(bundle, results, tiny_videos):
    videos = sorted((tiny_videos / "videos").rglob("*.avi"))[:2]
    run = subprocess.run([sys.executable, "-m", "tclsta", "predict", str(bundle), *map(str, videos), "--json", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    in_process = Predictor(results, "cpu")
    for video, predicted in zip(videos, json.loads(run.stdout)):
        expected = in_process.predict(video)
        assert [r["class"] for r in predicted["top5"]] == [name for name, _ in expected.top5]
        np.testing.assert_allclose([r["score"] for r in predicted["top5"]], [p for _, p in expected.top5], atol=1e-4)


def test_export_names_a_missing_model(tmp_path, results):
    partial = tmp_path / "results"
    (partial / "models").mkdir(parents=True)
    (partial / "models" / "rgb.pt").write_bytes((results / "models" / "rgb.pt").read_bytes())
    with pytest.raises(FileError, match=f"{partial / 'models' / 'flow.pt'}: missing"):
        export_bundle(partial, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
