"""Self-contained HTML report of one dataset's results: the file a researcher opens first.

Everything is inlined (CSS, plots as base64 PNG) so the report opens offline and can be
mailed or archived as a single file. Inputs are the pipeline's own outputs: ``metrics.json``,
``manifest.csv``, per-stream ``history.csv``, the dataset config, Snakemake benchmark TSVs and
the attention of a few test videos (``attention.json`` and its figure, ``tclsta/attention_view.py``).

The key figures are drawn once: embedded in the HTML and, when asked, saved as PNG files
(``plot_paths``) for Snakemake's own ``snakemake --report``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator

from tclsta.atomic import write_bytes_atomic, write_text_atomic
from tclsta.data.manifest import classes_in
from tclsta.multilabel import headline_metrics, per_class_key, per_class_name
from tclsta.settings import ENTRY_KEYS, SECTION_TYPES, StageSettings, section_keys


@dataclass(frozen=True)
class PublishedResult:
    """Top-1 accuracy (%) reported in a paper: mean of 3 splits, ImageNet pre-training only."""

    method: str
    ucf101: float
    hmdb51: float


PUBLISHED_RESULTS: tuple[PublishedResult, ...] = (
    PublishedResult("Two-stream (Simonyan & Zisserman 2014)", 88.0, 59.4),
    PublishedResult("Two-stream fusion (Feichtenhofer et al. 2016)", 92.5, 65.4),
    PublishedResult("ST-ResNet (Feichtenhofer et al. 2016)", 93.4, 66.4),
    PublishedResult("TSN (Wang et al. 2016)", 94.2, 69.4),
)
PUBLISHED_DATASET_PREFIXES = ("ucf101", "hmdb51")

# Rows of the accuracy table: key in metrics["results"] and the label shown.
RESULT_LABELS: dict[str, str] = {
    "rgb": "static (RGB)",
    "flow": "motion (flow)",
    "fused": "fused (learned weights)",
    "late_fusion": "late fusion 1:1.5",
    "collaborative": "collaborative model (co-attention)",
}
STREAMS = ("rgb", "flow", "fused")
STREAM_COLORS = {"rgb": "tab:orange", "flow": "tab:blue", "fused": "tab:green"}
SPLITS = ("train", "val", "test")

# Above this many classes the confusion matrix is sorted by accuracy and drawn without cell numbers.
MANY_CLASSES = 30
DISAGREEMENTS_SHOWN = 10
# A class's fusion weight "leans" to a stream when that stream's share exceeds its global share by this much.
LEAN_MARGIN = 0.05
PLOT_DPI = 100
# Figures of the report that can also be saved as PNG files (write_report's plot_paths).
PLOT_NAMES = ("confusion", "confusion_streams", "fusion_weights", "training")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 0 auto; padding: 1.5em; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
nav { font-size: 0.9em; margin-bottom: 1em; }
nav a { margin-right: 1em; color: #0b5cad; text-decoration: none; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
tr.highlight td { background: #fff3cd; }
.note { color: #555; font-size: 0.9em; }
.published { border: 1px dashed #aaa; padding: 0.4em 1em; background: #fcfcfc; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
details summary { cursor: pointer; color: #0b5cad; }
"""


REPORT_SETTINGS = StageSettings("report", ENTRY_KEYS, **{name: section_keys(name) for name in SECTION_TYPES})
"""The summary lists the dataset's whole config."""


def write_report(
    out_path: Path,
    *,
    metrics_path: Path,
    manifest_path: Path,
    history_paths: dict[str, Path],
    config: dict,
    benchmark_dirs: Sequence[Path] = (),
    attention_json: Path | None = None,
    attention_png: Path | None = None,
    plot_paths: Mapping[str, Path] | None = None,
    ablation_csv: Path | None = None,
) -> None:
    """Write the HTML report of one dataset to ``out_path`` atomically.

    ``attention_json`` and ``attention_png`` (``tclsta.attention_view.write_attention``) add the
    attention section, ``ablation_csv`` (``tclsta.ablation.ablation_table``) the ablation table. ``plot_paths`` maps names of ``PLOT_NAMES`` to PNG files the figure is also
    written to (atomically).
    """
    plot_paths = dict(plot_paths or {})
    unknown = sorted(set(plot_paths) - set(PLOT_NAMES))
    if unknown:
        raise ValueError(f"unknown plot name(s) {unknown}; expected some of {PLOT_NAMES}")
    metrics = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
    manifest = pd.read_csv(manifest_path)
    histories = {stream: pd.read_csv(path) for stream, path in history_paths.items()}
    dataset = metrics["dataset"]
    pngs = {name: figure_png(figure) for name, figure in key_figures(metrics, histories).items()}
    for name, path in plot_paths.items():
        write_bytes_atomic(path, pngs[name])

    multilabel = metrics.get("multilabel", False)
    sections = [("summary", "Summary", _summary_body(metrics, manifest))]
    if ablation_csv is not None:
        sections.append(("ablation", "Ablation (test split)", _ablation_body(pd.read_csv(ablation_csv))))
    sections += [
        ("choices", "Choices made on the validation videos", _choices_body(metrics, histories)),
        ("fusion", "Fusion weights", _fusion_body(metrics, pngs["fusion_weights"])),
        ("confusion", "Confusion matrices (test split)", _confusion_body(metrics, pngs)),
        ("per-class", f"Per-class {'average precision' if multilabel else 'accuracy'} (test split)", _per_class_body(metrics)),
        ("training", "Training curves", _png_img(pngs["training"], "training curves")),
    ]
    if attention_json is not None and attention_png is not None:
        attention = json.loads(Path(attention_json).read_text(encoding="utf-8"))
        attention_body = _attention_body(attention, Path(attention_png).read_bytes())
        sections.append(("attention", "Attention (test videos)", attention_body))
    if metrics.get("rejected"):
        sections.append(("rejected", "Rejected videos", _rejected_body(metrics["rejected"])))
    benchmarks = benchmark_files(benchmark_dirs)
    if benchmarks:
        sections.append(("runtime", "Run time per rule", _runtime_body(benchmarks)))
    sections.append(("settings", "Settings", _settings_body(config)))

    write_text_atomic(out_path, html_page(f"TCLSTA report: {dataset}", sections))


def html_page(title: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """A self-contained page of ``(id, heading, HTML body)`` sections, with a navigation line."""
    nav = " ".join(f'<a href="#{section_id}">{_esc(heading)}</a>' for section_id, heading, _ in sections)
    body = "\n".join(
        f'<section id="{section_id}">\n<h2>{_esc(heading)}</h2>\n{content}\n</section>'
        for section_id, heading, content in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n"
    )


def key_figures(metrics: Mapping, histories: Mapping[str, pd.DataFrame]) -> dict[str, Figure]:
    """The report's figures by name (``PLOT_NAMES``), from ``metrics.json`` and the training histories."""
    return {
        **_confusion_figures(metrics),
        "fusion_weights": _per_class_weights_figure(metrics["classes"], metrics["fusion_weights"]["per_class"]),
        "training": _training_figure(histories),
    }


# ---------------------------------------------------------------- sections


def _summary_body(metrics: dict, manifest: pd.DataFrame) -> str:
    """The test accuracy of every model first, then dataset, classes, code version, generation time and videos
    per split."""
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    facts = [
        ("dataset", metrics["dataset"]),
        ("classes", str(len(metrics["classes"]))),
        ("code version", _code_version()),
        ("generated", generated),
    ]
    evaluated = metrics.get("num_videos", {})
    split_rows = []
    for split in SPLITS:
        videos = manifest[manifest["split"] == split]
        split_rows.append([split, str(len(videos)), str(len(classes_in(manifest, split))), str(evaluated.get(split, "–"))])
    split_rows.append(["all", str(len(manifest)), str(len(metrics["classes"])), "–"])
    return (
        f'<h3 id="accuracy">{"mAP" if metrics.get("multilabel", False) else "Accuracy"} (test split)</h3>\n'
        + _accuracy_body(metrics)
        + _table(["", ""], facts, show_header=False)
        + "<h3>Videos per split</h3>"
        + _table(["split", "videos in manifest", "classes", "videos used (metrics)"], split_rows, numeric_from=1)
    )


def _settings_body(config: Mapping) -> str:
    """The dataset's whole config, collapsed: the report leads with results."""
    settings = _flatten(config)
    if not settings:
        return '<p class="note">No config given.</p>'
    return (f"<details><summary>{len(settings)} settings of the dataset's config (click to show)</summary>\n"
            + _table(["key", "value"], settings.items()) + "\n</details>")


def _accuracy_body(metrics: dict) -> str:
    """Top-1 / top-5 / mean class accuracy (multi-label: mAP) per model, the demo ceilings and published numbers."""
    results = metrics["results"]
    ceilings = metrics.get("expected_ceilings")
    shown = headline_metrics(metrics.get("multilabel", False))
    header = ["model", *shown.values()]
    if ceilings:
        header.append("expected ceiling (%)")
    rows = []
    for key, label in RESULT_LABELS.items():
        if key not in results:
            continue
        result = results[key]
        row = [label, *(_pct_ci(result[name], result.get(f"{name}_ci")) for name in shown)]
        if ceilings:
            row.append(_pct(ceilings[key]) if key in ceilings else "–")
        rows.append(row)
    parts = [_table(header, rows, numeric_from=1)]
    bootstrap = metrics.get("bootstrap")
    if bootstrap:
        parts.append(
            f'<p class="note">In brackets: {100 * bootstrap["confidence"]:.0f}% bootstrap confidence interval over the '
            f'{metrics.get("num_test_videos_scored", "")} test videos ({bootstrap["samples"]} resamples, '
            f'seed {bootstrap["seed"]}); where every video is right or every one wrong the bootstrap collapses to a '
            "point, and the interval is the exact (Clopper-Pearson) one.</p>"
        )
    if ceilings:
        parts.append(
            '<p class="note">The synthetic demo is built so that flow, blind to colour, cannot exceed its expected '
            f"ceiling, and neither can a classifier of single RGB frames ({_pct(ceilings['rgb_per_frame'])}%); "
            "the static stream's ceiling is 100% because its LSTM sees the texture move across the frames and can "
            f"read the drift direction from them: above {_pct(ceilings['rgb_per_frame'])}% it does so.</p>"
        )
    if metrics["dataset"].lower().startswith(PUBLISHED_DATASET_PREFIXES):
        parts.append(_published_block())
    return "\n".join(parts)


def _ablation_body(table: pd.DataFrame) -> str:
    """Each component switched off in turn: per-stream and fused top-1 with intervals, and each difference to the full
    model with its paired interval; differences whose interval excludes zero are marked."""
    models = (("rgb", "RGB"), ("flow", "flow"), ("fused", "fused"))
    metric, shown = ("mAP", "mAP") if "rgb_mAP" in table.columns else ("top1", "top-1")  # multi-label: mAP
    header = ["variant", "changed", "fusion", "RGB val top-1 (%)", "flow val top-1 (%)"]
    for _, label in models:
        header += [f"{label} {shown} (%)", f"{label} − full (pp)"]
    rows = []
    for row in table.itertuples():
        cells = [row.variant, row.description, row.fusion, _pct(row.rgb_val_top1), _pct(row.flow_val_top1)]
        for model, _ in models:
            value = getattr(row, f"{model}_{metric}")
            cells.append(_pct_ci(value, (getattr(row, f"{model}_{metric}_ci_low"), getattr(row, f"{model}_{metric}_ci_high"))))
            cells.append("–" if row.Index == 0 else _difference(
                getattr(row, f"{model}_{metric}_diff"),
                (getattr(row, f"{model}_{metric}_diff_ci_low"), getattr(row, f"{model}_{metric}_diff_ci_high"))))
        rows.append(cells)
    note = ('<p class="note">Variants that change a stream retrain both streams with that component off or that option '
            "changed; the others reuse the full model's streams and change only the fusion. The validation columns "
            "(each stream's top-1 on the validation videos) are what defaults are chosen from. In brackets: 95% bootstrap intervals over the "
            f"{int(table['num_test_videos'].iloc[0]) if len(table) else 0} test videos; a difference's interval is "
            "paired (the same resampled videos for both models). <b>*</b>: the interval excludes zero, so the difference "
            "is distinguishable from resampling noise; unmarked differences are not.</p>")
    return _table(header, rows, numeric_from=3, highlight={0}) + "\n" + note


def _choices_body(metrics: Mapping, histories: Mapping[str, pd.DataFrame]) -> str:
    """Each stream's score (lstm, frames or both) and the fused model, with the validation top-1 each was chosen by;
    and how peaked each stream's spatial attention is (its entropy on the validation videos at the kept epoch)."""
    parts = []
    choices = metrics.get("stream_scores") or {}
    if choices:
        from tclsta.inference import STREAM_SCORES

        header = ["stream", "score used", *(f"{name}: val / test top-1 (%)" for name in STREAM_SCORES)]
        rows = [[stream, f"{choice['chosen']} ({'chosen on val' if choice['setting'] == 'auto' else 'set in the config'})",
                 *(f"{_pct(choice['val_top1'][name])} / {_pct(choice['test_top1'][name])}" for name in STREAM_SCORES)]
                for stream, choice in choices.items()]
        parts.append(_table(header, rows, numeric_from=2))
    model_choice = metrics.get("model_choice")
    if model_choice:
        validation = model_choice["validation"]
        parts.append(f'<p>Best fused model on the validation videos: <b>{_esc(model_choice["best"])}</b> '
                     f'(cross-validated top-1: fusion weights {_pct(validation["fusion"])}%, collaborative model '
                     f'{_pct(validation["collaborative"])}%, {validation["videos"]} videos). Rule: {_esc(model_choice["rule"])}.</p>')
    entropy = {stream: history for stream, history in histories.items() if "attention_entropy" in history}
    if entropy:
        cells = []
        for stream, history in entropy.items():
            kept = history.sort_values(["val_acc", "val_loss"], ascending=[False, True]).iloc[0]
            cells.append(f"{_esc(stream)} {kept['attention_entropy']:.3f} (epoch {int(kept['epoch'])})")
        parts.append("<p>Spatial attention entropy on the validation videos at the kept epoch, over that of uniform "
                     f"attention (1: uniform, 0: one position): {'; '.join(cells)}. Per epoch: the training history "
                     "(<code>attention_entropy</code>).</p>")
    return "\n".join(parts) or "<p>None recorded.</p>"


def _difference(value: float, bounds: tuple[float, float]) -> str:
    """A difference in percentage points with its interval, starred when the interval excludes zero."""
    from tclsta.evaluate import excludes_zero

    mark = " *" if excludes_zero(bounds) else ""
    return f"{100 * value:+.1f} [{100 * bounds[0]:+.1f}, {100 * bounds[1]:+.1f}]{mark}"


def _published_block() -> str:
    """Literature numbers for UCF101 / HMDB51, clearly marked as not reproduced."""
    rows = [[result.method, f"{result.ucf101:.1f}", f"{result.hmdb51:.1f}"] for result in PUBLISHED_RESULTS]
    return (
        '<div class="published"><h3>Published, not reproduced here</h3>'
        '<p class="note">Top-1 accuracy (%), mean of 3 splits, ImageNet pre-training only; '
        "from the papers, for orientation.</p>"
        + _table(["method", "UCF101", "HMDB51"], rows, numeric_from=1)
        + "</div>"
    )


def _fusion_body(metrics: dict, per_class_png: bytes) -> str:
    """Global fusion weights, and the per-class weights next to each stream's per-class validation accuracy
    (what they were learned from)."""
    weights = metrics["fusion_weights"]
    global_rows = [[stream, f"{weight:.3f}"] for stream, weight in weights["global"].items()]
    parts = [_table(["stream", "global weight"], global_rows, numeric_from=1)]
    multilabel = metrics.get("multilabel", False)
    validation, metric = metrics.get(f"validation_{per_class_key(multilabel)}"), per_class_name(multilabel)
    if validation:
        rows, agreement = [], fusion_agreement(metrics)
        for index, name in enumerate(metrics["classes"]):
            rgb_share = weights["per_class"]["rgb"][index]
            rows.append([name, f"{rgb_share:.3f}", f"{1 - rgb_share:.3f}",
                         _pct_or_dash(validation["rgb"][index]), _pct_or_dash(validation["flow"][index]),
                         agreement["leans"][index], agreement["more_accurate"][index]])
        parts.append(
            "<h3>Per-class weights and validation accuracy</h3>"
            + _table(["class", "RGB weight", "flow weight", f"RGB val. {metric} (%)", f"flow val. {metric} (%)",
                      "weight leans to", "more accurate on val."], rows, numeric_from=1)
            + f'<p class="note">A class\'s weight "leans" to a stream when that stream\'s share is above its global '
            f"share by at least {LEAN_MARGIN:.2f} (smaller differences: \"neither\"). Of the {agreement['decided']} classes where one stream is more accurate on the validation videos, "
            f"the weights lean to that stream in {agreement['agree']}.</p>"
        )
    parts.append(_png_img(per_class_png, "per-class fusion weights"))
    return "\n".join(parts)


def fusion_agreement(metrics: Mapping) -> dict:
    """Per class, the stream the learned weights lean to (share above its global share by ``LEAN_MARGIN``, else
    "neither") and the stream more accurate
    on validation ("tie" when equal); ``decided``: classes with a more accurate stream, ``agree``: of those, the
    classes whose weights lean to it."""
    weights = metrics["fusion_weights"]
    validation = metrics[f"validation_{per_class_key(metrics.get('multilabel', False))}"]
    leans, more_accurate = [], []
    for index in range(len(metrics["classes"])):
        share = weights["per_class"]["rgb"][index] - weights["global"]["rgb"]
        leans.append("RGB" if share >= LEAN_MARGIN else "flow" if share <= -LEAN_MARGIN else "neither")
        rgb, flow = (validation[stream][index] for stream in ("rgb", "flow"))
        more_accurate.append("tie" if rgb is None or flow is None or rgb == flow else "RGB" if rgb > flow else "flow")
    decided = [i for i, stream in enumerate(more_accurate) if stream != "tie"]
    return {"leans": leans, "more_accurate": more_accurate, "decided": len(decided),
            "agree": sum(leans[i] == more_accurate[i] for i in decided)}


def _confusion_body(metrics: dict, pngs: Mapping[str, bytes]) -> str:
    """Fused confusion matrix large, RGB and flow as small multiples, rows normalised for colour."""
    num_classes = len(metrics["classes"])
    note = (
        f'<p class="note">{num_classes} classes: sorted by fused accuracy (best first), cell counts omitted.</p>'
        if num_classes > MANY_CLASSES
        else '<p class="note">Rows: true class (multi-label: each label of a video), columns: predicted class '
        "(the highest-scored). Numbers are video counts; colour is the fraction of the row.</p>"
    )
    return (
        note
        + _png_img(pngs["confusion"], "fused confusion matrix")
        + _png_img(pngs["confusion_streams"], "RGB and flow confusion matrices")
    )


def _per_class_body(metrics: dict) -> str:
    """Per-class accuracy of the three models; the classes where RGB and flow disagree most stand out."""
    classes = metrics["classes"]
    # A class without test videos has no accuracy (null): NaN here, shown as "–".
    per_class = per_class_key(metrics.get("multilabel", False))
    accuracy = {stream: np.asarray(metrics["results"][stream][per_class], dtype=float) for stream in STREAMS}
    gap = np.abs(accuracy["rgb"] - accuracy["flow"])
    ranked = [index for index in np.argsort(-gap, kind="stable")[:DISAGREEMENTS_SHOWN] if gap[index] > 0]

    def percentages(index: int) -> list[str]:
        return [*(_pct(accuracy[stream][index]) for stream in STREAMS), _pct(gap[index])]

    percentage_columns = ["RGB (%)", "flow (%)", "fused (%)", "|RGB − flow| (pp)"]
    if ranked:
        disagreement = f"<h3>Largest RGB / flow disagreement (top {len(ranked)})</h3>" + _table(
            ["class", "better stream", *percentage_columns],
            [[classes[i], _better_stream(accuracy, i), *percentages(i)] for i in ranked],
            numeric_from=2,
        )
    else:
        disagreement = '<p class="note">RGB and flow have the same accuracy on every class.</p>'
    return (
        disagreement
        + '<h3>All classes</h3><p class="note">Highlighted: the classes listed above.</p>'
        + _table(
            ["class", *percentage_columns],
            [[name, *percentages(i)] for i, name in enumerate(classes)],
            numeric_from=1,
            highlight=set(ranked),
        )
    )


def _attention_body(attention: Mapping, png: bytes) -> str:
    """The attention figure of a few test videos and, per video, each stream's prediction and the fused top-5."""
    rows = [
        [
            video["video_id"],
            video["class_name"],
            video["streams"]["rgb"]["prediction"],
            video["streams"]["flow"]["prediction"],
            ", ".join(f"{entry['class']} ({entry['score']:.2f})" for entry in video["top5"]),
        ]
        for video in attention["videos"]
    ]
    if not rows:
        return '<p class="note">No test videos to show.</p>'
    return (
        '<p class="note">Test videos from different classes, at the test protocol\'s frames (centre crop). '
        "Per video: the frames the static stream saw and the optical-flow magnitude the motion stream saw "
        "(a sample of the frames), each with the stream's spatial attention as a heatmap "
        "(one colour scale per stream and video: blue the least weight, red the most); "
        "the temporal attention of both streams over all the frames (dotted: uniform weights); "
        "the top-5 classes of the fused prediction.</p>"
        + _png_img(png, "spatial and temporal attention of test videos")
        + _table(["video", "true class", "static (RGB) predicts", "motion (flow) predicts", "fused top-5"], rows)
        + _cue_body(attention.get("cue"))
    )


def _cue_body(cue: Mapping | None) -> str:
    """On a benchmark dataset: how much of each stream's attention falls on the designed cue, against uniform."""
    if not cue:
        return ""
    rows = [[RESULT_LABELS[stream], *(_pct(share[key]) for key in ("spatial", "spatial_uniform", "temporal", "temporal_uniform")),
             str(share["videos"])] for stream, share in cue.items()]
    return (
        '<p class="note">Attention on the designed cue, over all test videos (the generator knows where the target '
        "patch is and in which frames it shows its colour, the static stream's cue, and drifts, the motion stream's): "
        "spatial, the share of attention on the feature-map cells the target overlaps, at the steps showing the cue; "
        "temporal, the share on those steps; each next to what uniform attention gives.</p>"
        + _table(["stream", "spatial on the target", "uniform", "temporal on the cue's steps", "uniform", "test videos"], rows)
    )


def _rejected_body(rejected: Sequence[Mapping[str, str]]) -> str:
    """Videos left out of the dataset, with the reason."""
    rows = [[entry["video_id"], entry["path"], entry["reason"]] for entry in rejected]
    return f'<p class="note">Videos rejected: {len(rows)}.</p>' + _table(["video id", "path", "reason"], rows)


def benchmark_files(folders: Iterable[Path]) -> list[tuple[str, Path]]:
    """Snakemake's benchmark files in ``folders``, ``<folder>/<rule>/<job>.tsv`` (a job's name may hold
    folders: ``ucf101/split1_rgb``), each with its rule."""
    return [(path.relative_to(folder).parts[0], path) for folder in map(Path, folders) for path in sorted(folder.glob("*/**/*.tsv"))]


def _runtime_body(benchmarks: Sequence[tuple[str, Path]]) -> str:
    """Wall-clock time per Snakemake rule, summed over its jobs (one benchmark file per job)."""
    jobs = []
    for rule, path in benchmarks:
        benchmark = pd.read_csv(path, sep="\t")
        # Several rows in one file are repeats of the same job (Snakemake's repeat()): count their mean once.
        jobs.append(
            {
                "rule": rule,
                "seconds": pd.to_numeric(benchmark["s"], errors="coerce").mean(),
                "max_rss": pd.to_numeric(benchmark.get("max_rss"), errors="coerce").max(),
            }
        )
    per_rule = (
        pd.DataFrame(jobs)
        .groupby("rule")
        .agg(jobs=("seconds", "size"), seconds=("seconds", "sum"), max_rss=("max_rss", "max"))
        .sort_values("seconds", ascending=False)
    )
    rows = [
        [
            stats.Index,
            str(stats.jobs),
            _hms(stats.seconds),
            f"{stats.seconds:.1f}",
            "–" if pd.isna(stats.max_rss) else f"{stats.max_rss:.0f}",
        ]
        for stats in per_rule.itertuples()
    ]
    total = per_rule["seconds"].sum()
    rows.append(["total", str(per_rule["jobs"].sum()), _hms(total), f"{total:.1f}", "–"])
    return _table(["rule", "jobs", "h:m:s", "seconds", "peak max_rss (MB)"], rows, numeric_from=1)


# ---------------------------------------------------------------- figures


def _confusion_figures(metrics: Mapping) -> dict[str, Figure]:
    """The fused confusion matrix (``confusion``) and the RGB and flow ones (``confusion_streams``)."""
    classes = metrics["classes"]
    matrices = {stream: np.asarray(metrics["confusion"][stream], dtype=float) for stream in STREAMS}
    many = len(classes) > MANY_CLASSES
    order = np.argsort(-_row_accuracy(matrices["fused"]), kind="stable") if many else np.arange(len(classes))
    panel_inches = _confusion_inches(len(classes))
    return {
        "confusion": _confusion_figure({"fused": matrices["fused"]}, classes, order, panel_inches=panel_inches),
        "confusion_streams": _confusion_figure(
            {stream: matrices[stream] for stream in ("rgb", "flow")}, classes, order, panel_inches=0.75 * panel_inches
        ),
    }


def _training_figure(histories: Mapping[str, pd.DataFrame]) -> Figure:
    """Loss and accuracy against epoch, train solid and validation dashed, per stream."""
    figure = Figure(figsize=(11, 4), dpi=PLOT_DPI, layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for stream, history in histories.items():
        color = STREAM_COLORS.get(stream)
        for split, style in (("train", "-"), ("val", "--")):
            loss_axes.plot(history["epoch"], history[f"{split}_loss"], style, color=color, label=f"{stream} {split}")
            accuracy_axes.plot(history["epoch"], history[f"{split}_acc"], style, color=color, label=f"{stream} {split}")
    for axes, quantity in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(quantity)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return figure


def _per_class_weights_figure(classes: Sequence[str], per_class: Mapping[str, Sequence[float]]) -> Figure:
    """Horizontal grouped bars, one group per class, so long class names stay readable."""
    positions = np.arange(len(classes))
    bar_height = 0.4
    figure = Figure(figsize=(8, 1.2 + 0.3 * len(classes)), dpi=PLOT_DPI, layout="constrained")
    axes = figure.subplots()
    for offset, stream in ((-bar_height / 2, "rgb"), (bar_height / 2, "flow")):
        axes.barh(positions + offset, per_class[stream], height=bar_height, color=STREAM_COLORS[stream], label=stream)
    axes.set_yticks(positions, [mpl_text(name) for name in classes], fontsize=_tick_fontsize(len(classes)))
    axes.invert_yaxis()
    axes.set_xlabel("fusion weight")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def _confusion_figure(
    matrices: Mapping[str, np.ndarray], classes: Sequence[str], order: np.ndarray, *, panel_inches: float
) -> Figure:
    """One panel per matrix, classes in ``order``; counts written in cells only for few classes."""
    figure = Figure(figsize=(panel_inches * len(matrices), panel_inches), dpi=PLOT_DPI, layout="constrained")
    labels = [mpl_text(classes[index]) for index in order]
    all_axes = np.atleast_1d(figure.subplots(1, len(matrices)))
    for axes, (stream, matrix) in zip(all_axes, matrices.items()):
        image = _draw_confusion(axes, matrix[np.ix_(order, order)], labels)
        axes.set_title(stream)
    figure.colorbar(image, ax=all_axes, shrink=0.8, label="fraction of true class")
    return figure


def _draw_confusion(axes: Axes, counts: np.ndarray, labels: Sequence[str]) -> AxesImage:
    """Colour cells by row fraction; annotate counts unless there are too many classes."""
    row_totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(labels))
    fontsize = _tick_fontsize(len(labels))
    axes.set_xticks(ticks, labels, rotation=90, fontsize=fontsize)
    axes.set_yticks(ticks, labels, fontsize=fontsize)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(labels) <= MANY_CLASSES:
        for (row, col), count in np.ndenumerate(counts):
            if count:
                color = "white" if fractions[row, col] > 0.5 else "black"
                axes.text(col, row, f"{count:.0f}", ha="center", va="center", fontsize=fontsize, color=color)
    return image


def figure_png(figure: Figure) -> bytes:
    """``figure`` rendered with Agg as PNG bytes."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _png_img(png: bytes, alt: str) -> str:
    """An inline ``<img>`` tag of PNG bytes."""
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{_esc(alt)}">'


def _confusion_inches(num_classes: int) -> float:
    """Side of the main confusion panel: grows with the classes, capped to keep the PNG small."""
    return float(np.clip(2.5 + 0.18 * num_classes, 5.0, 18.0))


def _tick_fontsize(num_classes: int) -> float:
    """Tick label size that shrinks once there are many classes."""
    return 8.0 if num_classes <= MANY_CLASSES else max(3.0, 8.0 * MANY_CLASSES / num_classes)


def mpl_text(text: str) -> str:
    """Escape ``$`` so matplotlib shows class names literally instead of parsing mathtext."""
    return text.replace("$", r"\$")


# ---------------------------------------------------------------- helpers


def _table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric_from: int | None = None,
    highlight: Set[int] = frozenset(),
    show_header: bool = True,
) -> str:
    """HTML table of escaped cells; cells from column ``numeric_from`` on are right-aligned."""
    lines = ["<table>"]
    if show_header:
        lines.append("<tr>" + "".join(f"<th>{_esc(column)}</th>" for column in columns) + "</tr>")
    for index, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{_esc(cell)}</td>' if numeric_from is not None and col >= numeric_from
            else f"<td>{_esc(cell)}</td>"
            for col, cell in enumerate(row)
        )
        row_class = ' class="highlight"' if index in highlight else ""
        lines.append(f"<tr{row_class}>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _flatten(config: Mapping, prefix: str = "") -> dict[str, str]:
    """Nested config as ``{"a.b.c": value}``; non-string leaves shown as JSON (as in YAML)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


def _code_version() -> str:
    """Short git commit of the repository holding this file, or "unknown" outside git."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return completed.stdout.strip() or "unknown"


def _row_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Per-class accuracy (recall) from a confusion matrix; classes without videos count as 0."""
    totals = confusion.sum(axis=1)
    return np.divide(np.diag(confusion), totals, out=np.zeros_like(totals), where=totals > 0)


def _better_stream(accuracy: Mapping[str, np.ndarray], index: int) -> str:
    return "RGB" if accuracy["rgb"][index] > accuracy["flow"][index] else "flow"


def _pct(fraction: float) -> str:
    return "–" if np.isnan(fraction) else f"{100 * fraction:.1f}"


def _pct_or_dash(fraction: float | None) -> str:
    return "–" if fraction is None else _pct(fraction)


def _pct_ci(fraction: float, bounds: Sequence[float] | None) -> str:
    """A percentage with its interval in brackets, when there is one."""
    return _pct(fraction) if bounds is None else f"{_pct(fraction)} [{_pct(bounds[0])}, {_pct(bounds[1])}]"


def _hms(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)
