"""The three-split protocol: each split's results side by side, with their mean and standard deviation.

Papers give UCF101 and HMDB51 results as the mean accuracy over the three official splits. A dataset
entry with ``split: all`` (or a list of splits) trains and scores each split on its own, under
``results/<dataset>/split<N>/``; this stage reads their ``metrics.json`` (and ``ablation.csv``) into
``results/<dataset>/splits.csv`` and the report ``results/<dataset>/report.html``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from tclsta.atomic import atomic_path, write_text_atomic
from tclsta.report import PUBLISHED_DATASET_PREFIXES, RESULT_LABELS, _esc, _pct, _published_block, _table, html_page

METRICS = {"top1": "top-1", "top5": "top-5", "mean_class_accuracy": "mean class accuracy"}
ABLATION_MODELS = {"rgb": "RGB", "flow": "flow", "fused": "fused"}
ABLATION_METRICS = ("top1", "mean_class_accuracy")
_SPLIT_FOLDER = re.compile(r"split(\d+)$")


def split_number(folder: Path) -> int:
    """The split of a run's results folder, ``results/<dataset>/split<N>``."""
    match = _SPLIT_FOLDER.search(Path(folder).name)
    if not match:
        raise ValueError(f"{folder}: not a split's results folder (results/<dataset>/split<N>)")
    return int(match.group(1))


def split_table(folders: list[Path], ablation: bool) -> pd.DataFrame:
    """One row per model and metric (and per ablation variant, model and metric): each split's test value
    (columns ``split<N>``), their mean and their standard deviation across splits (n - 1 in the denominator;
    0 for one split). ``variant`` is empty for the models of ``metrics.json``."""
    values: dict[tuple[str, str, str], dict[str, float]] = {}
    for folder in folders:
        column = f"split{split_number(folder)}"
        metrics = json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))
        for model, result in metrics["results"].items():
            for metric in METRICS:
                values.setdefault(("", model, metric), {})[column] = result[metric]
        if ablation:
            for row in pd.read_csv(Path(folder) / "ablation.csv").to_dict("records"):
                for model in ABLATION_MODELS:
                    for metric in ABLATION_METRICS:
                        values.setdefault((row["variant"], model, metric), {})[column] = row[f"{model}_{metric}"]
    columns = [f"split{split_number(folder)}" for folder in folders]
    table = pd.DataFrame([{"variant": variant, "model": model, "metric": metric, **per_split}
                          for (variant, model, metric), per_split in values.items()],
                         columns=["variant", "model", "metric", *columns])
    table["mean"] = table[columns].mean(axis=1)
    table["std"] = table[columns].std(axis=1, ddof=1).fillna(0.0) if len(columns) > 1 else 0.0
    return table


def write_split_report(dataset: str, folders: list[Path], ablation: bool, html_path: Path, csv_path: Path) -> None:
    """``splits.csv`` (:func:`split_table`) and the report of a dataset run on several splits, each linked."""
    table = split_table(folders, ablation)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    splits = [split_number(folder) for folder in folders]
    sections = [("splits", "Mean over splits (test split of each)", _models_body(dataset, table, splits))]
    if ablation:
        sections.append(("ablation", "Ablation, mean over splits", _ablation_body(table)))
    links = [f'<li><a href="{_esc(Path(folder).name)}/report.html">split {n}</a>: {_esc(folder)}/</li>'
             for n, folder in zip(splits, folders)]
    sections.append(("reports", "Each split's report", f"<ul>{''.join(links)}</ul>"))
    title = f"TCLSTA report: {dataset}, splits {', '.join(map(str, splits))}"
    write_text_atomic(html_path, html_page(title, sections))


def _mean_std(row: pd.Series) -> str:
    return f"{_pct(row['mean'])} ± {_pct(row['std'])}"


def _models_body(dataset: str, table: pd.DataFrame, splits: list[int]) -> str:
    models = table[table["variant"] == ""].set_index(["model", "metric"])
    rows = []
    for model, label in RESULT_LABELS.items():
        if (model, "top1") in models.index:
            top1 = models.loc[(model, "top1")]
            rows.append([label, *(_pct(top1[f"split{n}"]) for n in splits),
                         *(_mean_std(models.loc[(model, metric)]) for metric in METRICS)])
    header = ["model", *(f"split {n} top-1 (%)" for n in splits), *(f"{label}, mean ± std (%)" for label in METRICS.values())]
    parts = [
        _table(header, rows, numeric_from=1),
        f'<p class="note">Each split trains its own streams, fusion weights and collaborative model on its own '
        f"validation carve and is scored on its own test videos; ± is the standard deviation across the "
        f"{len(splits)} splits. The mean top-1 over the three official splits is the number papers report.</p>",
    ]
    if dataset.lower().startswith(PUBLISHED_DATASET_PREFIXES):
        parts.append(_published_block())
    return "\n".join(parts)


def _ablation_body(table: pd.DataFrame) -> str:
    variants = table[table["variant"] != ""].set_index(["variant", "model", "metric"])
    rows = [[variant, *(_mean_std(variants.loc[(variant, model, "top1")]) for model in ABLATION_MODELS)]
            for variant in dict.fromkeys(variants.index.get_level_values("variant"))]
    header = ["variant", *(f"{label} top-1, mean ± std (%)" for label in ABLATION_MODELS.values())]
    return _table(header, rows, numeric_from=1) + '<p class="note">Each split\'s table, with intervals, is in its report.</p>'

