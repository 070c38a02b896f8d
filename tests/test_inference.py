"""The inference stages stand on tclsta.inference alone (none imports the trainer); test crops go through a network in chunks."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from tclsta.data.dataset import model_input
from tclsta.data.manifest import read_manifest
from tclsta.inference import chunked_outputs, load_checkpoint, scoring_loader, stream_score_choice, video_logits, write_scores

INFERENCE_STAGES = ("inference", "features", "attention_view", "predict", "evaluate", "collaborative", "fusion", "ablation", "report")


def test_inference_stages_do_not_import_the_trainer():
    modules = ", ".join(f"tclsta.{name}" for name in INFERENCE_STAGES)
    code = f"import json, sys, {modules}; print(json.dumps([m for m in sys.modules if m.startswith('tclsta.')]))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    imported = json.loads(run.stdout)
    assert "tclsta.inference" in imported and "tclsta.predict" in imported  # the check sees what was imported
    assert "tclsta.train" not in imported


@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_chunked_scoring_and_features_equal_one_pass(tiny_dataset, tiny_results, stream):
    """10 test crops through the network a few images at a time give what one pass over the whole batch gives."""
    device = torch.device("cpu")
    model, model_config, _ = load_checkpoint(tiny_results / "models" / f"{stream}.pt", device)
    train = dataclasses.replace(tiny_dataset.config.train, test_crops=10, inference_batch=10 * 4 * 3)  # 3 videos per batch
    loader = scoring_loader(read_manifest(tiny_dataset.manifest_path), ["test"], tiny_dataset.shards, stream,
                            model_config.flow_stack, train, device)
    clips, _ = next(iter(loader))
    assert clips.shape[:3] == (3, 10, train.test_frames)  # (videos, crops, frames)
    with torch.no_grad():  # the computation before chunking: every image of the batch at once
        whole = model(model_input(clips.flatten(0, 1), device))
    expected = {name: getattr(whole, name).view(3, 10, *getattr(whole, name).shape[1:]).mean(1) for name in ("logits", "features")}
    for images in (1, 7, 10 * 4 * 3):  # one clip per pass (images < frames), one clip, everything
        chunked = chunked_outputs(model, clips, device, images, ("logits", "features"))
        for name, value in expected.items():
            torch.testing.assert_close(chunked[name], value, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(video_logits(model, clips, device, 7), expected["logits"], rtol=1e-5, atol=1e-5)


def test_stream_score_is_chosen_on_validation_and_reported_on_test(tmp_path):
    """``auto`` takes the source most accurate on the validation rows; a fixed setting is kept; each source's
    validation and test top-1 come with the choice. Here the frames are right on validation, the head on test."""
    labels = np.array([0, 1, 0, 1, 0, 1])
    splits = np.array(["val", "val", "val", "test", "test", "test"])
    right, wrong = np.eye(2)[labels] * 5.0, np.eye(2)[1 - labels] * 5.0
    lstm = np.where((splits == "test")[:, None], right, wrong)
    frames = np.log(np.where((splits == "val")[:, None], np.eye(2)[labels] * 0.8 + 0.1, np.eye(2)[1 - labels] * 0.8 + 0.1))
    write_scores(tmp_path / "s.csv", [f"v{i}" for i in range(6)], splits, labels, lstm, {"lstm": lstm, "frames": frames})
    table = pd.read_csv(tmp_path / "s.csv")
    auto = stream_score_choice(table, "auto")
    assert auto["chosen"] == "frames" and auto["val_top1"]["frames"] == 1.0 and auto["val_top1"]["lstm"] == 0.0
    assert auto["test_top1"] == {"lstm": 1.0, "frames": 0.0, "both": 1.0}
    assert stream_score_choice(table, "lstm")["chosen"] == "lstm"
