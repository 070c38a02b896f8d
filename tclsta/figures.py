"""The README's result tables, generated from the pipeline's outputs (``make figures``).

``collect_figures`` reads a dataset's ``results/<dataset>/`` (``metrics.json``, ``ablation.csv`` when
there is one, the rules' benchmark files) into a small JSON record with the commit it ran on,
kept under ``docs/figures/<dataset>.json`` so the README's numbers have a tracked source;
``readme_blocks`` turns a record into Markdown tables and ``rewrite_readme`` replaces the blocks
between ``<!-- figures:<block> begin -->`` and ``<!-- figures:<block> end -->`` in the README.
A test checks that the README's blocks are exactly what the recorded figures give.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from tclsta.atomic import write_text_atomic
from tclsta.errors import TclstaError
from tclsta.report import benchmark_files
from tclsta.shared import shards_folder

ACCURACY_ROWS = {
    "rgb": "static (RGB)",
    "flow": "motion (flow)",
    "fused": "fused (learned weights)",
    "late_fusion": "late fusion 1:1.5",
    "collaborative": "collaborative model (co-attention)",
}
ABLATION_MODELS = (("rgb", "RGB"), ("flow", "flow"), ("fused", "fused"))


class StaleReadmeError(TclstaError):
    """The README lacks a figures block, or its block differs from the recorded figures."""


def collect_figures(results: Path, config: dict | None = None) -> dict:
    """The README's figures of one dataset from its results folder, with the commit and the rules' run times
    (with ``config``, the config it ran with, those of its shared preprocessing too, ``work/shards/<key>/``)."""
    results = Path(results)
    metrics = json.loads((results / "metrics.json").read_text(encoding="utf-8"))
    benchmarks = [results / "benchmarks"]
    if config is not None:
        benchmarks.append(shards_folder(config, metrics["dataset"]) / "benchmarks")
    keep = ("top1", "top1_ci", "top5", "top5_ci", "mean_class_accuracy", "mean_class_accuracy_ci")
    figures = {
        "dataset": metrics["dataset"],
        "commit": commit(),
        "classes": metrics["classes"],
        "num_test_videos": metrics["num_test_videos_scored"],
        "results": {name: {key: result[key] for key in keep} for name, result in metrics["results"].items()},
        "expected_ceilings": metrics.get("expected_ceilings"),
        "fusion_weights": metrics["fusion_weights"],
        "validation_per_class_accuracy": metrics["validation_per_class_accuracy"],
        "rule_seconds": _rule_seconds(benchmarks),
        "exact_intervals": "exact" in metrics.get("bootstrap", {}),  # Clopper-Pearson where the bootstrap collapses
    }
    ablation = results / "ablation.csv"
    if ablation.is_file():
        figures["ablation"] = pd.read_csv(ablation).to_dict("records")
    attention = results / "attention.json"
    cue = json.loads(attention.read_text(encoding="utf-8")).get("cue") if attention.is_file() else None
    if cue:
        figures["cue"] = cue
    return figures


def commit() -> str:
    """Short commit of the working tree this runs in, marked when tracked files differ from it."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode:
        return "unknown"
    dirty = git("diff", "--quiet", "HEAD", "--", ".", ":(exclude)README.md", ":(exclude)docs/figures").returncode
    return head.stdout.strip() + (" with uncommitted changes" if dirty else "")


def _rule_seconds(folders: list[Path]) -> dict[str, float]:
    """Seconds per rule, summed over its jobs (Snakemake's benchmark files, <folder>/<rule>/<job>.tsv)."""
    seconds: dict[str, float] = {}
    for rule, path in benchmark_files(folders):
        value = float(pd.read_csv(path, sep="\t")["s"].mean())
        seconds[rule] = round(seconds.get(rule, 0.0) + value, 1)
    return seconds


def readme_blocks(figures: Mapping) -> dict[str, str]:
    """The README blocks of one dataset's figures: ``<dataset>`` (accuracy table and run time), and when there
    is an ablation, ``<dataset>-ablation`` and ``<dataset>-fusion`` (per-class weights against validation accuracy)."""
    name = figures["dataset"]
    blocks = {name: _accuracy_block(figures)}
    if "ablation" in figures:
        blocks[f"{name}-ablation"] = _ablation_block(figures)
        blocks[f"{name}-fusion"] = _fusion_block(figures)
    if "cue" in figures:
        blocks[f"{name}-cue"] = _cue_block(figures["cue"])
    return blocks


def _accuracy_block(figures: Mapping) -> str:
    ceilings = figures.get("expected_ceilings") or {}
    header = "| model | top-1 | top-5 | mean class accuracy | expected ceiling |\n| --- | --- | --- | --- | --- |\n"
    lines = []
    for key, label in ACCURACY_ROWS.items():
        if key in figures["results"]:
            result = figures["results"][key]
            cells = [_pct_ci(result[m], result[f"{m}_ci"]) for m in ("top1", "top5", "mean_class_accuracy")]
            ceiling = f"{100 * ceilings[key]:.1f}%" if key in ceilings else "–"
            lines.append(f"| {label} | {' | '.join(cells)} | {ceiling} |")
    total = sum(figures["rule_seconds"].values())
    slowest = sorted(figures["rule_seconds"].items(), key=lambda item: -item[1])[:4]
    return (
        f"`make figures` at commit {figures['commit']}, {figures['num_test_videos']} test videos; "
        "in brackets the 95% bootstrap interval over the test videos"
        + (" (exact Clopper-Pearson where all are right or all wrong)" if figures.get("exact_intervals") else "") + ".\n\n"
        + header + "\n".join(lines) + "\n\n"
        + f"Rule run times summed over jobs (`results/{figures['dataset']}/benchmarks/`): {_minutes(total)}; "
        + ", ".join(f"{rule} {_minutes(seconds)}" for rule, seconds in slowest) + "."
    )


def _ablation_block(figures: Mapping) -> str:
    header = ["variant", *(f"{label} top-1" for _, label in ABLATION_MODELS),
              *(f"{label} − full (pp)" for _, label in ABLATION_MODELS)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for index, row in enumerate(figures["ablation"]):
        values = [_pct_ci(row[f"{m}_top1"], (row[f"{m}_top1_ci_low"], row[f"{m}_top1_ci_high"])) for m, _ in ABLATION_MODELS]
        differences = ["–" if index == 0 else _difference(row, m) for m, _ in ABLATION_MODELS]
        lines.append(f"| {row['variant']} | " + " | ".join(values + differences) + " |")
    return (
        "\n".join(lines) + "\n\n"
        + "Differences to the full model with their paired 95% bootstrap interval (the same resampled test videos for "
        "both); **bold**: the interval excludes zero, so the difference is distinguishable from resampling noise."
    )


def _difference(row: Mapping, model: str) -> str:
    value, low, high = (row[f"{model}_top1{suffix}"] for suffix in ("_diff", "_diff_ci_low", "_diff_ci_high"))
    text = f"{100 * value:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
    return f"**{text}**" if low > 0 or high < 0 else text


def _fusion_block(figures: Mapping) -> str:
    weights, validation = figures["fusion_weights"], figures["validation_per_class_accuracy"]
    lines = ["| class | RGB weight | flow weight | RGB val. accuracy | flow val. accuracy |", "|" + " --- |" * 5]
    for index, name in enumerate(figures["classes"]):
        rgb = weights["per_class"]["rgb"][index]
        accuracy = [("–" if validation[s][index] is None else f"{100 * validation[s][index]:.1f}%") for s in ("rgb", "flow")]
        lines.append(f"| {name} | {rgb:.3f} | {1 - rgb:.3f} | {accuracy[0]} | {accuracy[1]} |")
    share = weights["global"]["rgb"]
    return "\n".join(lines) + f"\n\nGlobal weights: RGB {share:.3f}, flow {1 - share:.3f}."


def _cue_block(cue: Mapping) -> str:
    lines = ["| stream | spatial attention on the target | uniform | temporal attention on the cue's steps | uniform | test videos |",
             "|" + " --- |" * 6]
    for stream, share in cue.items():
        label = ACCURACY_ROWS[stream]
        cells = [f"{100 * share[key]:.1f}%" for key in ("spatial", "spatial_uniform", "temporal", "temporal_uniform")]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {share['videos']} |")
    return "\n".join(lines)


def rewrite_readme(readme: Path, blocks: Mapping[str, str]) -> None:
    """Replace each named block of the README with its new content (atomically); every block must exist."""
    text = Path(readme).read_text(encoding="utf-8")
    for name, content in blocks.items():
        pattern = _block_pattern(name)
        if not pattern.search(text):
            raise StaleReadmeError(f"{readme} has no block '<!-- figures:{name} begin -->' ... '<!-- figures:{name} end -->'")
        text = pattern.sub(lambda match: f"{match.group(1)}\n{content}\n{match.group(3)}", text)
    write_text_atomic(readme, text)


def readme_block(readme: Path, name: str) -> str:
    """The current content of a README block."""
    match = _block_pattern(name).search(Path(readme).read_text(encoding="utf-8"))
    if not match:
        raise StaleReadmeError(f"{readme} has no figures block '{name}'")
    return match.group(2).strip("\n")


def check_readme(readme: Path, figures_dir: Path, datasets: list[str]) -> None:
    """Raise StaleReadmeError naming every README block that differs from what the recorded figures give."""
    stale = []
    for dataset in datasets:
        figures = json.loads((Path(figures_dir) / f"{dataset}.json").read_text(encoding="utf-8"))
        stale += [name for name, content in readme_blocks(figures).items() if readme_block(readme, name) != content]
    if stale:
        raise StaleReadmeError(f"{readme}: the figures block(s) {', '.join(stale)} differ from {figures_dir}; "
                               "run `make figures`")


def _block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- figures:{re.escape(name)} begin -->)(.*?)(<!-- figures:{re.escape(name)} end -->)", re.S)


def write_figures(results_dirs: list[Path], output_dir: Path, readme: Path, config: dict | None = None) -> None:
    """Collect each dataset's figures into ``output_dir/<dataset>.json`` and rewrite the README's blocks from them."""
    blocks = {}
    for results in results_dirs:
        figures = collect_figures(results, config)
        write_text_atomic(Path(output_dir) / f"{figures['dataset']}.json", json.dumps(figures, indent=1) + "\n")
        blocks |= readme_blocks(figures)
    rewrite_readme(readme, blocks)


def _pct_ci(value: float, bounds: tuple[float, float]) -> str:
    return f"{100 * value:.1f}% [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]"


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)  # rounded first: 59.6 s is "1 min 00 s", never "0 min 60 s"
    return f"{minutes} min {rest:02d} s"
