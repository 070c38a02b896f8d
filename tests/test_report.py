"""Tests of the HTML report: sections, inline images, escaping, published numbers, atomic write."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tclsta.ablation import COLUMNS, METRICS, VARIANTS
from tclsta.attention_view import attention_figure
from tclsta.report import PLOT_NAMES, figure_png, fusion_agreement, write_report

CLASSES = ["DriftRight", "DriftLeft", "Zoom<&>\"In\"", "ZoomOut", "Spin", "Blink", "Pulse", "Still"]
SECTION_IDS = ("summary", "accuracy", "fusion", "confusion", "per-class", "training", "rejected", "runtime", "settings")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result(rng: np.random.Generator, top1: float, num_classes: int) -> dict:
    per_class = rng.uniform(0.0, 1.0, num_classes).round(3).tolist()
    return {"top1": top1, "top5": 0.98, "mean_class_accuracy": 0.6, "per_class_accuracy": per_class,
            "top1_ci": [top1 - 0.1, min(top1 + 0.1, 1.0)], "top5_ci": [0.95, 1.0], "mean_class_accuracy_ci": [0.5, 0.7]}


def _confusion(rng: np.random.Generator, num_classes: int) -> list[list[int]]:
    return (rng.integers(0, 2, (num_classes, num_classes)) + 3 * np.eye(num_classes, dtype=int)).tolist()


def _metrics(dataset: str, classes: list[str], *, demo_extras: bool) -> dict:
    rng = np.random.default_rng(0)
    num_classes = len(classes)
    rgb_weights = rng.uniform(0.2, 0.8, num_classes)
    rgb_weights += np.sign(rgb_weights - 0.4) * 0.1  # at least 0.1 from the global share: every class leans clearly
    metrics = {
        "dataset": dataset,
        "classes": classes,
        "num_videos": {"train": 64, "val": 32, "test": 32},
        "results": {
            "rgb": _result(rng, 0.61, num_classes),
            "flow": _result(rng, 0.625, num_classes),
            "fused": _result(rng, 0.9, num_classes),
            "late_fusion": _result(rng, 0.8, num_classes),
        },
        "confusion": {stream: _confusion(rng, num_classes) for stream in ("rgb", "flow", "fused")},
        "fusion_weights": {
            "global": {"rgb": 0.4, "flow": 0.6},
            "per_class": {"rgb": rgb_weights.tolist(), "flow": (1 - rgb_weights).tolist()},
        },
        # RGB more accurate exactly where its weight share is above its global 0.4, except on the last class
        "validation_per_class_accuracy": {"rgb": [0.9 if w > 0.4 else 0.2 for w in rgb_weights[:-1]] + [0.1],
                                          "flow": [0.5] * (num_classes - 1) + [None]},
        "bootstrap": {"samples": 2000, "seed": 0, "confidence": 0.95, "over": "test videos"},
        "num_test_videos_scored": 32,
    }
    if demo_extras:
        metrics["expected_ceilings"] = {"rgb": 1.0, "flow": 0.625, "fused": 1.0, "rgb_per_frame": 0.625}
        metrics["rejected"] = [{"video_id": "v<99>", "path": "raw/a&b.mp4", "reason": "audio-only"}]
    return metrics


@pytest.fixture
def make_report(tmp_path: Path):
    """Write realistic pipeline outputs for ``dataset`` and return the path of the rendered report."""

    def make(dataset: str = "demo", classes: list[str] = CLASSES, *, demo_extras: bool = True,
             plot_paths: dict[str, Path] | None = None, attention: tuple[Path, Path] | None = None,
             ablation: Path | None = None, untested_classes: tuple[int, ...] = ()) -> Path:
        inputs = tmp_path / "inputs"
        inputs.mkdir(exist_ok=True)
        metrics_path = inputs / "metrics.json"
        metrics = _metrics(dataset, classes, demo_extras=demo_extras)
        for result in metrics["results"].values():
            for index in untested_classes:  # what evaluate writes for a class without test videos
                result["per_class_accuracy"][index] = None
        metrics_path.write_text(json.dumps(metrics))

        manifest = pd.DataFrame(
            [
                {"video_id": f"{split}_{i}", "path": f"videos/{split}_{i}.mp4", "class_name": classes[i % len(classes)],
                 "label": i % len(classes), "split": split, "shard": f"shards/{split}.h5"}
                for split, count in (("train", 64), ("val", 32), ("test", 32))
                for i in range(count)
            ]
        )
        manifest_path = inputs / "manifest.csv"
        manifest.to_csv(manifest_path, index=False)

        history_paths = {}
        for stream, speed in (("rgb", 1.0), ("flow", 0.6)):
            epochs = np.arange(1, 6)
            history = pd.DataFrame(
                {"epoch": epochs, "train_loss": 2 / (speed * epochs), "train_acc": 1 - 0.5 / (speed * epochs + 0.5),
                 "val_loss": 2.2 / (speed * epochs), "val_acc": 0.9 - 0.5 / (speed * epochs + 0.5)}
            )
            history_paths[stream] = inputs / f"history_{stream}.csv"
            history.to_csv(history_paths[stream], index=False)

        for rule, stem, seconds in (("train_stream", "demo_rgb", 12.5), ("train_stream", "demo_flow", 20.0),
                                    ("extract_flow", "demo", 3725.0)):
            path = tmp_path / "benchmarks" / rule / f"{stem}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                f"{seconds}\t0:00:{int(seconds) % 60:02d}\t812.3\t2048.0\t700.1\t750.2\t1.0\t2.0\t95.0\t{seconds}\n"
            )

        config = {
            "dataset": dataset,
            "preprocess": {"short_side": 256, "flow": {"method": "tvl1", "clip": 20}},
            "model": {"backbone": "resnet50", "frames": 25, "pretrained": True, "lstm_units": 512},
        }
        out_path = tmp_path / "report" / "report.html"
        write_report(out_path, metrics_path=metrics_path, manifest_path=manifest_path,
                     history_paths=history_paths, config=config, benchmark_dirs=[tmp_path / "benchmarks"],
                     plot_paths=plot_paths, attention_json=attention[0] if attention else None,
                     attention_png=attention[1] if attention else None, ablation_csv=ablation)
        return out_path

    return make


def test_report_has_every_section_and_inline_pngs(make_report) -> None:
    out_path = make_report()
    text = out_path.read_text(encoding="utf-8")

    for section_id in SECTION_IDS:
        assert f'id="{section_id}"' in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) >= 4
    assert base64.b64decode(images[0]).startswith(PNG_SIGNATURE)
    assert not re.search(r'(src|href)\s*=\s*["\']?https?://', text)
    assert "<script" not in text


def test_report_content(make_report) -> None:
    text = make_report().read_text(encoding="utf-8")

    assert "61.0" in text and "62.5" in text  # top-1 of rgb; flow top-1 and ceiling
    assert "expected ceiling" in text
    assert "preprocess.flow.method" in text and "tvl1" in text
    assert "1:02:05" in text  # extract_flow's 3725 s
    assert "32.5" in text  # train_stream: 12.5 s + 20.0 s summed over its two jobs
    assert "Zoom&lt;&amp;&gt;&quot;In&quot;" in text
    assert "Zoom<&>" not in text
    assert "raw/a&amp;b.mp4" in text and "v&lt;99&gt;" in text


def test_published_numbers_only_for_ucf101_and_hmdb51(make_report) -> None:
    assert "94.2" not in make_report("demo").read_text(encoding="utf-8")
    for dataset in ("ucf101_split1", "hmdb51"):
        text = make_report(dataset).read_text(encoding="utf-8")
        assert "Published, not reproduced here" in text
        assert "94.2" in text and "69.4" in text


def test_optional_sections_are_left_out(make_report) -> None:
    text = make_report("ucf101", demo_extras=False).read_text(encoding="utf-8")
    assert 'id="rejected"' not in text
    assert "expected ceiling" not in text


def test_many_classes_render(make_report) -> None:
    classes = [f"Class{i:03d}" for i in range(40)]
    text = make_report("ucf101", classes).read_text(encoding="utf-8")
    assert "sorted by fused accuracy" in text
    assert text.count('class="highlight"') == 10


def test_write_is_atomic(make_report) -> None:
    out_path = make_report()
    make_report()  # overwrite in place
    assert [path.name for path in out_path.parent.iterdir()] == ["report.html"]


def test_plots_are_saved_as_the_pngs_embedded(make_report, tmp_path) -> None:
    plot_paths = {name: tmp_path / "plots" / f"{name}.png" for name in PLOT_NAMES}
    text = make_report(plot_paths=plot_paths).read_text(encoding="utf-8")
    embedded = {base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)}
    for path in plot_paths.values():
        png = path.read_bytes()
        assert png.startswith(PNG_SIGNATURE) and png in embedded  # drawn once: the same bytes in both places
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(f"{name}.png" for name in PLOT_NAMES)


def test_unknown_plot_name_is_refused(make_report, tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown plot name"):
        make_report(plot_paths={"confusoin": tmp_path / "x.png"})
    assert not (tmp_path / "x.png").exists()


def test_attention_section_embeds_the_figure_and_escapes_names(make_report, tmp_path) -> None:
    png_path = tmp_path / "attention.png"
    png_path.write_bytes(figure_png(attention_figure([])))
    json_path = tmp_path / "attention.json"
    streams = {"rgb": {"prediction": CLASSES[2]}, "flow": {"prediction": "Spin"}}
    top5 = [{"class": CLASSES[2], "score": 0.75}, {"class": "Spin", "score": 0.25}]
    video = {"video_id": "v<1>", "class_name": CLASSES[2], "streams": streams, "top5": top5}
    json_path.write_text(json.dumps({"videos": [video]}))

    text = make_report(attention=(json_path, png_path)).read_text(encoding="utf-8")
    section = text[text.index('<section id="attention">'):]
    section = section[: section.index("</section>")]
    assert base64.b64encode(png_path.read_bytes()).decode("ascii") in section
    assert "v&lt;1&gt;" in section and "Zoom&lt;&amp;&gt;&quot;In&quot; (0.75), Spin (0.25)" in section
    assert 'id="attention"' not in make_report().read_text(encoding="utf-8")
    assert "on the designed cue" not in section  # not a benchmark dataset

    cue = {stream: {"spatial": 0.412, "spatial_uniform": 0.25, "temporal": 0.75, "temporal_uniform": 0.5, "videos": 30}
           for stream in ("rgb", "flow")}
    json_path.write_text(json.dumps({"videos": [video], "cue": cue}))
    section = make_report(attention=(json_path, png_path)).read_text(encoding="utf-8")
    section = section[section.index('<section id="attention">'):]
    section = section[: section.index("</section>")]
    assert "on the designed cue" in section
    assert "<td>motion (flow)</td><td>41.2</td><td>25.0</td><td>75.0</td><td>50.0</td><td>30</td>" in section


def test_ablation_table_lists_every_variant(make_report, tmp_path) -> None:
    rows = []
    for i, variant in enumerate(VARIANTS):
        row = {"variant": variant.name, "description": variant.description, "fusion": variant.fusion, "num_test_videos": 32,
               "rgb_val_top1": 0.7, "flow_val_top1": 0.6}
        for model, value in (("rgb", 0.6875), ("flow", 0.5 + 0.03 * i), ("fused", 1.0 - 0.05 * i)):
            for metric in METRICS:
                row |= {f"{model}_{metric}": value, f"{model}_{metric}_ci_low": value - 0.1,
                        f"{model}_{metric}_ci_high": value + 0.1}
                diff = value - rows[0][f"{model}_{metric}"] if rows else 0.0
                row |= {f"{model}_{metric}_diff": diff, f"{model}_{metric}_diff_ci_low": diff - 0.1,
                        f"{model}_{metric}_diff_ci_high": diff + 0.1}
        rows.append(row)
    path = tmp_path / "ablation.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    html = make_report(ablation=path).read_text()
    section = html[html.index('id="ablation"'):html.index('id="fusion"')]
    for variant in VARIANTS:
        assert f"<td>{variant.name}</td>" in section
    assert '<td class="num">85.0 [75.0, 95.0]</td>' in section  # fused top-1 of the fourth variant, with its interval
    assert '<td class="num">-15.0 [-25.0, -5.0] *</td>' in section  # its difference to the full model excludes zero
    assert '<td class="num">-5.0 [-15.0, +5.0]</td>' in section  # the second variant's does not: no mark
    assert 'id="ablation"' not in make_report().read_text()  # no table without the file


def test_accuracy_has_intervals_and_fusion_weights_sit_next_to_validation_accuracy(make_report) -> None:
    html = make_report().read_text()
    accuracy = html[html.index('id="accuracy"'):html.index('id="fusion"')]
    assert '<td class="num">90.0 [80.0, 100.0]</td>' in accuracy  # fused top-1 and its interval
    assert "95% bootstrap confidence interval over the 32 test videos" in accuracy
    fusion = html[html.index('id="fusion"'):html.index('id="confusion"')]
    assert "RGB val. acc. (%)" in fusion and '<td class="num">90.0</td>' in fusion and '<td class="num">–</td>' in fusion
    assert f"Of the {len(CLASSES) - 1} classes where one stream is more accurate" in fusion
    assert f"the weights lean to that stream in {len(CLASSES) - 1}.</p>" in fusion


def test_class_without_test_videos_shows_a_dash(make_report) -> None:
    text = make_report(untested_classes=(1,)).read_text(encoding="utf-8")
    text = text[text.index('id="per-class"'):]  # the fusion section lists classes too
    row = re.search(rf"<tr[^>]*><td>{re.escape(CLASSES[1])}</td>(.*?)</tr>", text, re.S)
    assert row is not None
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1)) == ["–"] * 4


def test_report_leads_with_results_and_ends_with_collapsed_settings(make_report) -> None:
    html = make_report().read_text()
    summary = html[html.index('<section id="summary">'):html.index('<section id="fusion">')]
    assert summary.index("<th>top-1 (%)</th>") < summary.index("code version") < summary.index("Videos per split")
    assert html.rindex("<section ") == html.index('<section id="settings">')  # the last section
    settings = html[html.index('<section id="settings">'):]
    assert settings.index("<details><summary>") < settings.index("<td>model.lstm_units</td>") < settings.index("</details>")


def test_weights_lean_only_for_differences_that_matter() -> None:
    metrics = {"classes": ["a", "b", "c", "d"],
               "fusion_weights": {"global": {"rgb": 0.4, "flow": 0.6}, "per_class": {"rgb": [0.401, 0.5, 0.3, 0.36]}},
               "validation_per_class_accuracy": {"rgb": [0.9, 0.9, 0.1, 0.1], "flow": [0.5, 0.5, 0.5, 0.5]}}
    agreement = fusion_agreement(metrics)
    assert agreement["leans"] == ["neither", "RGB", "flow", "neither"]  # 0.001 and 0.04 from the global share: neither
    assert (agreement["decided"], agreement["agree"]) == (4, 2)
