"""Multi-label datasets: the labels CSV format, average precision, sigmoid fusion, and the multi-label demo carried
through the real Snakemake pipeline to its report, its mAP checked against the designed ceiling."""

import copy
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import TINY_SETTINGS
from test_workflow import snakemake, workdir  # noqa: F401
from tclsta.config import FusionConfig
from tclsta.data.manifest import build_multilabel_manifest, class_names, read_manifest
from tclsta.errors import BadSplitFileError
from tclsta.fusion import learn_fusion
from tclsta.multilabel import Objective, average_precision

# The tiny demo as a multi-label dataset: 2 directions x 2 colours, 3 groups (1 for test) of 2 clips per pairing.
TINY_MULTILABEL = copy.deepcopy(TINY_SETTINGS)
TINY_MULTILABEL["demo"] |= {"kind": "multilabel"}
TINY_MULTILABEL["train"] |= {"stages": [{"name": "joint", "epochs": 6, "lr": 0.003}]}
TINY_MULTILABEL["collaborative"] = {"epochs": 30, "hidden": 32, "batch_size": 16}
TARGET = "results/mltiny/report.html"


def test_average_precision_counts_ties_and_resampled_videos():
    scores = np.array([[0.9], [0.8], [0.8], [0.1]])
    targets = np.array([[1], [0], [1], [0]], np.float32)
    # precision at the first positive 1/1; the tied pair is one threshold: 2 of 3 -> AP (1 + 2/3) / 2
    assert average_precision(scores, targets, np.ones((1, 4)))[0, 0] == pytest.approx(5 / 6)
    # drawing the first video twice is two positives at the top: (1 + 1 + 3/4) / 3
    assert average_precision(scores, targets, np.array([[2.0, 1, 1, 1]]))[0, 0] == pytest.approx(11 / 12)
    assert np.isnan(average_precision(scores, np.zeros((4, 1), np.float32), np.ones((1, 4)))[0, 0])


def test_labels_csv_manifest_and_its_errors(tmp_path):
    for name in ("a/v1.avi", "a/v2.avi", "b/v3.avi", "b/v4.avi", "c/v5.avi"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    listing = tmp_path / "labels.csv"
    listing.write_text("path,split,labels\na/v1.avi,train,Dog;Beach\na/v2.avi,train,Beach\nb/v3.avi,test,Dog ; Beach\n"
                       "b/v4.avi,train,Dog\nc/v5.avi,test,Beach\n")
    manifest = build_multilabel_manifest(tmp_path, listing, 0.0, 2, 0)
    assert class_names(manifest) == ["Beach", "Dog"]
    assert manifest.set_index("video_id").loc["b/v3", "labels"] == "Dog;Beach"
    assert manifest.set_index("video_id").loc["b/v3", "label"] == 1  # the first listed class, Dog
    targets = Objective.of(manifest).targets(manifest, ["Beach", "Dog"], ["a/v1", "a/v2"])
    assert targets.tolist() == [[1.0, 1.0], [1.0, 0.0]]
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    assert Objective.of(read_manifest(tmp_path / "manifest.csv")).multilabel

    for text, message in [("path,split\na/v1.avi,train\n", "needs columns 'path', 'split' and 'labels'"),
                          ("path,split,labels\na/v1.avi,train, ; \n", "row 2: expected a path, split train or test and at least one label"),
                          ("path,split,labels\na/v1.avi,val,Dog\n", "row 2"),
                          ("path,split,labels\na/v1.avi,train,Dog\nb/v3.avi,test,Cat\n", "no training videos for class(es) ['Cat']")]:
        listing.write_text(text)
        with pytest.raises(BadSplitFileError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            build_multilabel_manifest(tmp_path, listing, 0.0, 2, 0)


def test_sigmoid_fusion_weights_lean_to_the_stream_that_knows_each_class():
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(200, 2, generator=generator) > 0.5).float()  # class 0: rgb's cue, class 1: flow's
    cue, noise = 2 * targets - 1, 2 * torch.randn(200, 2, generator=generator)  # logits that know, logits that guess
    rgb = torch.stack([cue[:, 0], noise[:, 1]], 1)
    flow = torch.stack([noise[:, 0], cue[:, 1]], 1)
    weights = learn_fusion(rgb, flow, targets, FusionConfig(steps=300), Objective(multilabel=True))
    share = weights.per_class[0] / weights.per_class.sum(0)
    assert share[0] > 0.7 and share[1] < 0.3
    fused = weights.fuse(rgb, flow)
    assert ((fused > 0) == targets.bool()).float().mean() > 0.95  # fused logits: positive above probability 1/2


def test_multilabel_demo_reaches_its_report_with_map_at_its_ceiling(workdir):  # noqa: F811
    (workdir / "config.yaml").write_text(yaml.safe_dump({"datasets": {"mltiny": {
        **{k: v for k, v in TINY_MULTILABEL.items() if k != "name"},
        "root": "data/mltiny/videos", "splits_dir": "data/mltiny/splits"}}}))
    run = snakemake(workdir, TARGET)
    assert run.returncode == 0, run.stderr[-3000:]

    listing = pd.read_csv(workdir / "data/mltiny/splits/labels.csv")
    assert len(listing) == 24 and set(listing["labels"]) == {"DriftRight;RedPatch", "DriftRight;GreenPatch",
                                                              "DriftLeft;RedPatch", "DriftLeft;GreenPatch"}
    metrics = json.loads((workdir / "results/mltiny/metrics.json").read_text())
    assert metrics["multilabel"] and metrics["num_test_videos_scored"] == 8
    assert set(metrics["results"]) == {"rgb", "flow", "fused", "late_fusion", "collaborative"}
    for result in metrics["results"].values():
        assert result["mAP_ci"][0] <= result["mAP"] <= result["mAP_ci"][1]
        assert len(result["per_class_ap"]) == len(result["per_class_ap_ci"]) == 4
    ceiling = metrics["expected_ceilings"]["fused"]
    assert ceiling == 1.0 and metrics["results"]["fused"]["mAP_ci"][1] >= ceiling  # the ceiling within its interval
    assert len(metrics["validation_per_class_ap"]["rgb"]) == 4
    report = (workdir / TARGET).read_text()
    assert "mAP (%)" in report and "Per-class average precision" in report and "RGB val. AP (%)" in report

    videos = sorted((workdir / "data/mltiny/videos").rglob("*.avi"))[:2]
    run = subprocess.run([sys.executable, "-m", "tclsta", "predict", "results/mltiny", *map(str, videos), "--json",
                          "--threshold", "0.3"], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for result in json.loads(run.stdout):
        probabilities = result["probabilities"]
        assert sorted(probabilities) == ["DriftLeft", "DriftRight", "GreenPatch", "RedPatch"]
        assert all(0 <= p <= 1 for p in probabilities.values())
        assert result["labels"] == [name for name, p in probabilities.items() if p > 0.3]


def test_ablation_table_of_a_multilabel_dataset_has_map_columns(tmp_path):
    from tclsta.ablation import MULTILABEL_METRICS, VARIANTS, ablation_inputs, ablation_table, table_columns
    from tclsta.evaluate import fuse_streams
    from tclsta.inference import write_scores

    classes = ["A", "B", "C"]
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 3)) > 0.5).astype(np.float32)
    targets[:, 0] = 1 - targets[:, 1]  # every video has at least one label
    ids = [f"v{i:02d}" for i in range(40)]
    splits = ["val"] * 20 + ["test"] * 20
    manifest = pd.DataFrame({"video_id": ids, "path": ids, "class_name": "A", "label": 0, "split": splits, "group": ids,
                             "shard": 0, "labels": [";".join(c for c, t in zip(classes, row) if t) for row in targets]})
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    perfect, noisy = 4 * targets - 2, rng.normal(size=targets.shape)  # logits that rank perfectly, logits that guess
    for path in ablation_inputs(tmp_path):
        if path.suffix == ".csv" and path.name != "manifest.csv":
            good = path.name == "collaborative.csv" and path.parent.parent == tmp_path  # the full model
            write_scores(path, ids, splits, [0] * 40, perfect if good else noisy)
    fuse_streams(tmp_path / "scores/rgb.csv", tmp_path / "scores/flow.csv", FusionConfig(steps=20), classes,
                 tmp_path / "fusion.json", read_manifest(tmp_path / "manifest.csv"))

    table = ablation_table(tmp_path, FusionConfig())
    assert list(table.columns) == table_columns(MULTILABEL_METRICS) and len(table) == len(VARIANTS)
    full, learned = table.iloc[0], table.iloc[1]
    assert full["fused_mAP"] == 1.0 and full["fused_mAP_ci_low"] == 1.0
    assert learned["fused_mAP"] < 0.9 and learned["fused_mAP_diff_ci_high"] < 0  # the paired interval excludes zero
