"""The README's result tables are generated: they must match the recorded figures, and those the pipeline's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from tclsta.ablation import COLUMNS, METRICS, VARIANTS
from tclsta.config import FusionConfig
from tclsta.evaluate import evaluate, fuse_streams
from tclsta.inference import write_scores
from tclsta.figures import (
    StaleReadmeError,
    check_readme,
    collect_figures,
    readme_block,
    readme_blocks,
    rewrite_readme,
    write_figures,
)

FIGURES = REPO / "docs" / "figures"
CLASSES = ["DriftRight", "DriftLeft", "RedPatch", "GreenPatch"]


def test_readme_tables_match_the_recorded_figures() -> None:
    recorded = sorted(path.stem for path in FIGURES.glob("*.json"))
    assert "demo" in recorded
    check_readme(REPO / "README.md", FIGURES, recorded)
    demo = json.loads((FIGURES / "demo.json").read_text())
    assert "| fused (learned weights) | " in readme_block(REPO / "README.md", "demo")
    assert demo["commit"] in readme_block(REPO / "README.md", "demo")
    # After `make demo` or `make figures` in this checkout. The recording machine gives the record exactly; a CPU
    # with other vector instructions may move a test video or two (docs/demo-and-benchmark.md), so what is
    # compared is what such a run reproduces: the test set, and each accuracy within the recorded 95% interval.
    produced = REPO / "results" / "demo" / "metrics.json"
    if produced.is_file():
        fresh = collect_figures(produced.parent)
        assert (fresh["classes"], fresh["num_test_videos"]) == (demo["classes"], demo["num_test_videos"])
        for model, recorded in demo["results"].items():
            for metric in ("top1", "mean_class_accuracy"):
                value, (low, high) = fresh["results"][model][metric], recorded[f"{metric}_ci"]
                assert low <= value <= high, f"{produced}: {model} {metric} {value} outside the recorded {low}..{high}: run `make figures`"


def _results_folder(root: Path, seed: int) -> Path:
    """A dataset's results folder as the pipeline leaves it after `evaluate`, from synthetic stream scores."""
    rng = np.random.default_rng(seed)
    results = root / "tiny"
    rows = [(f"v{split}{i}", split, i % len(CLASSES)) for split in ("val", "test") for i in range(40)]
    ids, splits, labels = zip(*rows)
    for stream in ("rgb", "flow"):
        scores = rng.normal(size=(len(rows), len(CLASSES))) + 2.0 * np.eye(len(CLASSES))[list(labels)]
        write_scores(results / "scores" / f"{stream}.csv", ids, splits, labels, scores)
    manifest = pd.DataFrame({"video_id": ids, "split": splits, "label": labels,
                             "class_name": [CLASSES[label] for label in labels]})
    fusion = FusionConfig(steps=20)
    fuse_streams(results / "scores" / "rgb.csv", results / "scores" / "flow.csv", fusion, CLASSES, results / "fusion.json")
    evaluate(manifest, results / "scores" / "rgb.csv", results / "scores" / "flow.csv", results / "fusion.json", fusion,
             results / "metrics.json", "tiny")
    benchmark = results / "benchmarks" / "train_stream" / "tiny_rgb.tsv"
    benchmark.parent.mkdir(parents=True)
    benchmark.write_text("s\th:m:s\n75.5\t0:01:15\n")
    return results


def test_figures_rewrite_the_readme_and_a_changed_number_is_caught(tmp_path: Path) -> None:
    results = _results_folder(tmp_path, seed=0)
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nbefore\n<!-- figures:tiny begin -->\nold table\n<!-- figures:tiny end -->\nafter\n")
    write_figures([results], tmp_path / "figures", readme)

    metrics = json.loads((results / "metrics.json").read_text())
    block = readme_block(readme, "tiny")
    fused = metrics["results"]["fused"]
    assert f"| fused (learned weights) | {100 * fused['top1']:.1f}% [{100 * fused['top1_ci'][0]:.1f}, " in block
    assert "old table" not in block and "40 test videos" in block and "train_stream 1 min 16 s" in block
    assert readme.read_text().startswith("# Title\n\nbefore\n") and readme.read_text().endswith("end -->\nafter\n")
    check_readme(readme, tmp_path / "figures", ["tiny"])

    readme.write_text(readme.read_text().replace(f"{100 * fused['top1']:.1f}%", "99.9%", 1))
    with pytest.raises(StaleReadmeError, match="tiny"):
        check_readme(readme, tmp_path / "figures", ["tiny"])
    # new numbers from another run: the record changes, and the README no longer matches it
    readme.write_text(readme.read_text().replace("99.9%", f"{100 * fused['top1']:.1f}%", 1))
    check_readme(readme, tmp_path / "figures", ["tiny"])
    (tmp_path / "figures" / "tiny.json").write_text(json.dumps(collect_figures(_results_folder(tmp_path / "b", seed=1))))
    with pytest.raises(StaleReadmeError, match="tiny"):
        check_readme(readme, tmp_path / "figures", ["tiny"])
    with pytest.raises(StaleReadmeError, match="no block"):
        rewrite_readme(tmp_path / "figures" / "tiny.json", {"tiny": "x"})


def test_ablation_block_bolds_only_differences_distinguishable_from_zero(tmp_path: Path) -> None:
    record = collect_figures(_results_folder(tmp_path, seed=0))
    rows = []
    for index, variant in enumerate(VARIANTS):
        row = {"variant": variant.name, "description": variant.description, "fusion": variant.fusion,
               "num_test_videos": 320, "rgb_val_top1": 0.5, "flow_val_top1": 0.5}
        for model in ("rgb", "flow", "fused"):
            for metric in METRICS:
                row |= {f"{model}_{metric}": 0.8, f"{model}_{metric}_ci_low": 0.75, f"{model}_{metric}_ci_high": 0.85,
                        f"{model}_{metric}_diff": -0.01 * index, f"{model}_{metric}_diff_ci_low": -0.02 * index,
                        f"{model}_{metric}_diff_ci_high": 0.04 - 0.02 * index}
        rows.append({column: row[column] for column in COLUMNS})
    blocks = readme_blocks(record | {"ablation": rows})
    lines = blocks["tiny-ablation"].splitlines()
    assert lines[2].startswith("| full | 80.0% [75.0, 85.0] |") and lines[2].endswith("| – | – | – |")
    assert "| -1.0 [-2.0, +2.0] |" in lines[3]  # interval holds zero: plain
    assert "| **-3.0 [-6.0, -2.0]** |" in lines[5]  # interval below zero: bold
    assert blocks["tiny-fusion"].count("\n|") == len(CLASSES) + 1  # header rule and one row per class


def test_cue_block_comes_from_the_attention_record(tmp_path: Path) -> None:
    results = _results_folder(tmp_path, seed=0)
    assert "tiny-cue" not in readme_blocks(collect_figures(results))  # no attention.json: no block
    cue = {stream: {"spatial": 0.5, "spatial_uniform": 0.125, "temporal": 0.6, "temporal_uniform": 0.4, "videos": 80}
           for stream in ("rgb", "flow")}
    (results / "attention.json").write_text(json.dumps({"videos": [], "cue": cue}))
    lines = readme_blocks(collect_figures(results))["tiny-cue"].splitlines()
    assert lines[2:] == ["| static (RGB) | 50.0% | 12.5% | 60.0% | 40.0% | 80 |",
                         "| motion (flow) | 50.0% | 12.5% | 60.0% | 40.0% | 80 |"]
