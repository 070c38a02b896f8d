"""The ablation study: each component of the method switched off in turn, on the test split.

Peng, Zhao, Zhang, arXiv 1711.03273 (Sec. IV) ablate spatial attention,
temporal attention, mutual guidance and learned fusion; more variants swap
choices the paper leaves open (which class activation map drives the spatial
attention, its temperature, whether the temporal loss trains it, a fixed or
variable number of training steps). Each :data:`VARIANTS`
entry names what it changes from the dataset's config; the workflow
(``rules/ablation.smk``) trains what a variant needs under
``results/<dataset>/ablation/<variant>/`` (same layout as the full model's
``models/``, ``features/``, ``scores/``) and :func:`ablation_table` tabulates
top-1 and mean class accuracy of the rgb and flow streams and of the variant's
fusion, as ``results/<dataset>/ablation.csv``: each with its 95% bootstrap interval
over the test videos, and its difference to the full model with the paired
bootstrap interval of that difference (the same resamples of the same videos for
every variant; ``tclsta.evaluate.Bootstrap``). The table also gives each stream's
top-1 on the validation videos (``<stream>_val_top1``), from which defaults are
chosen: the test columns are for reading, never for choosing. A multi-label dataset's
table has mAP in place of the accuracies (:data:`MULTILABEL_METRICS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tclsta.config import FusionConfig
from tclsta.settings import StageSettings

if TYPE_CHECKING:  # not imported at run time: the workflow imports this module, and torch is slow to import
    from tclsta.evaluate import Bootstrap
    from tclsta.multilabel import Objective

STREAMS = ("rgb", "flow")

FUSIONS = ("collaborative", "learned", "late")
MODELS = ("rgb", "flow", "fused")
METRICS = ("top1", "mean_class_accuracy")
MULTILABEL_METRICS = ("mAP",)
# Per model and metric: the value, its interval, the difference to the full model and that difference's interval.
STATISTICS = ("", "_ci_low", "_ci_high", "_diff", "_diff_ci_low", "_diff_ci_high")


def table_columns(metrics: tuple[str, ...] = METRICS) -> list[str]:
    """The ablation table's columns for ``metrics``."""
    return ["variant", "description", "fusion", "num_test_videos", *(f"{stream}_val_top1" for stream in STREAMS),
            *(f"{model}_{metric}{statistic}" for model in MODELS for metric in metrics for statistic in STATISTICS)]


COLUMNS = table_columns()


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table."""

    name: str
    description: str
    fusion: str
    """How the streams are fused: "collaborative" (co-attention model), "learned" (fusion weights) or "late" (fixed)."""
    overrides: dict = field(default_factory=dict)
    """Config values changed from the dataset's: {section: {key: value}}."""

    @property
    def retrains_streams(self) -> bool:
        """Whether the streams are trained anew (else the full model's streams are used)."""
        return "model" in self.overrides or "train" in self.overrides

    def run_dir(self, results: Path) -> Path:
        """Where this variant's own outputs live: the full model's folder when it changes nothing."""
        return results / "ablation" / self.name if self.overrides else results

    def streams_dir(self, results: Path) -> Path:
        """The folder holding the stream models, features and scores this variant uses."""
        return self.run_dir(results) if self.retrains_streams else results

    def features(self, results: Path) -> dict[str, Path]:
        """The stream features its collaborative model trains on."""
        return {stream: self.streams_dir(results) / "features" / f"{stream}.h5" for stream in STREAMS}

    def inputs(self, results: Path) -> dict[str, Path]:
        """The files its row is computed from: rgb and flow scores, and the fused scores or fusion weights."""
        fused = {
            "collaborative": self.run_dir(results) / "scores" / "collaborative.csv",
            "learned": results / "fusion.json",
        }
        paths = {stream: self.streams_dir(results) / "scores" / f"{stream}.csv" for stream in STREAMS}
        if self.fusion in fused:
            paths[self.fusion] = fused[self.fusion]
        return paths


COLLABORATIVE = "collaborative model"
VARIANTS = (
    Variant("full", "the dataset's settings: spatial + temporal attention; " + COLLABORATIVE + " with mutual guidance",
            "collaborative"),
    Variant("learned_fusion", "full streams; learned fusion weights (global + per class)", "learned"),
    Variant("late_fusion", "full streams; fixed late fusion RGB:flow 1:1.5", "late"),
    Variant("no_spatial_attention", "streams with average pooling instead of spatial attention; " + COLLABORATIVE,
            "collaborative", {"model": {"spatial_attention": False}}),
    Variant("no_temporal_attention", "streams averaging over frames instead of temporal attention; " + COLLABORATIVE,
            "collaborative", {"model": {"temporal_attention": False}}),
    Variant("soft_class_map", "spatial attention from the class maps weighted by the CAM head's probabilities "
            "(class_source: soft); " + COLLABORATIVE, "collaborative", {"model": {"class_source": "soft"}}),
    Variant("predicted_class_map", "spatial attention from the predicted class's map (class_source: predicted); "
            + COLLABORATIVE, "collaborative", {"model": {"class_source": "predicted"}}),
    Variant("learned_temperature", "spatial attention's softmax temperature learned (attention_temperature: learned); "
            + COLLABORATIVE, "collaborative", {"model": {"attention_temperature": "learned"}}),
    Variant("detached_attention", "the temporal loss does not train the CAM head through the attention weights "
            "(detach_attention); " + COLLABORATIVE, "collaborative", {"model": {"detach_attention": True}}),
    Variant("variable_steps", "temporal head trained on a random number of steps, train_frames to test_frames "
            "(variable_steps); " + COLLABORATIVE, "collaborative", {"train": {"variable_steps": True}}),
    Variant("release_collaborative", "full streams; " + COLLABORATIVE + " at the authors' release size (hidden 2048)",
            "collaborative", {"collaborative": {"hidden": 2048}}),
    Variant("no_mutual_guidance", "full streams; " + COLLABORATIVE + " with each stream attending to itself",
            "collaborative", {"collaborative": {"mutual_guidance": False}}),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}
ABLATION_SETTINGS = StageSettings("ablation", fusion=("late_fusion_weights",))


def variant_settings(settings: str, variant: str) -> str:
    """A stage's ``--settings`` JSON with ``variant``'s config overrides applied to the sections it holds."""
    chosen = json.loads(settings)
    for section, values in VARIANTS_BY_NAME[variant].overrides.items():
        if section in chosen:
            chosen[section] = {**chosen[section], **values}
    return json.dumps(chosen, sort_keys=True)


def ablation_inputs(results: Path) -> list[Path]:
    """Every file :func:`ablation_table` reads, for the workflow's ``ablation`` rule."""
    return sorted({results / "manifest.csv", *(path for variant in VARIANTS for path in variant.inputs(results).values())})


def ablation_table(results: Path, fusion: FusionConfig) -> pd.DataFrame:
    """Test-split top-1 and mean class accuracy of each variant's rgb, flow and fused predictions, with intervals.

    ``results`` is a dataset's results folder (``results/<dataset>``); ``fusion``
    gives the fixed late-fusion weights. One row per :data:`VARIANTS` entry, columns :data:`COLUMNS`
    (of a multi-label dataset: ``table_columns(MULTILABEL_METRICS)``).
    """
    # here, not at the top: the workflow imports this module, and every job would pay for importing torch
    from tclsta.data.manifest import class_names, multi_hot, read_manifest
    from tclsta.evaluate import Bootstrap, interval
    from tclsta.multilabel import Objective

    manifest = read_manifest(results / "manifest.csv")
    objective = Objective.of(manifest)
    predictions = {variant.name: _test_predictions(variant, results, fusion, objective) for variant in VARIANTS}
    full = VARIANTS[0].name
    video_ids, labels, _ = predictions[full]
    if objective.multilabel:
        labels = multi_hot(manifest, class_names(manifest), video_ids)
    num_classes = predictions[full][2]["rgb"].shape[1]
    bootstrap = Bootstrap.draw(len(video_ids))
    samples: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    rows = []
    for variant in VARIANTS:
        ids, _, scores = predictions[variant.name]
        if sorted(ids) != sorted(video_ids):
            raise RuntimeError(f"ablation variant {variant.name} scored other test videos than the full model")
        order = pd.Index(ids).get_indexer(video_ids)  # the full model's order: every variant shares the resamples
        row = {"variant": variant.name, "description": variant.description, "fusion": variant.fusion,
               "num_test_videos": len(video_ids), **_validation_top1(variant, results)}
        samples[variant.name] = {}
        for model in MODELS:
            samples[variant.name][model] = measured = _measured(scores[model][order], labels, num_classes, bootstrap, objective)
            for metric, (point, resampled, bounds) in measured.items():
                name = f"{model}_{metric}"
                row[name] = float(point)
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = bounds
                row[f"{name}_diff"] = row[name] - rows[0][name] if rows else 0.0
                row[f"{name}_diff_ci_low"], row[f"{name}_diff_ci_high"] = interval(resampled - samples[full][model][metric][1])
        rows.append(row)
    return pd.DataFrame(rows, columns=table_columns(MULTILABEL_METRICS if objective.multilabel else METRICS))


def _measured(scores: np.ndarray, labels: np.ndarray, num_classes: int, bootstrap: Bootstrap,
              objective: Objective) -> dict[str, tuple[float, np.ndarray, list[float]]]:
    """Each metric of the table: its value on the test videos, its (B,) bootstrap samples and its interval
    (an accuracy's exact one where every video is right or every one wrong: ``accuracy_interval``)."""
    from tclsta.evaluate import accuracy_interval, interval

    if objective.multilabel:
        from tclsta.multilabel import average_precision

        with np.errstate(all="ignore"):
            resampled = np.nanmean(average_precision(scores, labels, bootstrap.weights), 1)
            point = np.nanmean(average_precision(scores, labels, np.ones((1, len(scores)))), 1)[0]
        return {"mAP": (point, resampled, interval(resampled))}
    correct = (scores.argmax(1) == labels).astype(float)
    resampled = bootstrap.accuracy_samples(correct, labels, num_classes)
    per_class = [correct[labels == k].mean() for k in np.unique(labels)]
    return {metric: (point, resampled[key], accuracy_interval(resampled[key], correct))
            for metric, key, point in (("top1", "accuracy", correct.mean()),
                                       ("mean_class_accuracy", "mean_class_accuracy", np.mean(per_class)))}


def _validation_top1(variant: Variant, results: Path) -> dict[str, float]:
    """Each stream's top-1 on the validation videos, as ``<stream>_val_top1``."""
    from tclsta.inference import read_scores

    top1 = {}
    for stream in STREAMS:
        table = read_scores(variant.inputs(results)[stream])
        val = table[table["split"] == "val"]
        top1[f"{stream}_val_top1"] = float((val.filter(like="score_").to_numpy().argmax(1) == val["label"].to_numpy()).mean())
    return top1


def _test_predictions(variant: Variant, results: Path, fusion: FusionConfig,
                      objective: Objective) -> tuple[list[str], np.ndarray, dict]:
    """A variant's test videos, their labels and the (N, K) scores of its rgb, flow and fused predictions."""
    from tclsta.evaluate import aligned_logits, paired_scores, read_fusion
    from tclsta.inference import read_scores
    from tclsta.fusion import late_fusion

    paths = variant.inputs(results)
    rgb, flow, labels, video_ids = paired_scores(read_scores(paths["rgb"]), read_scores(paths["flow"]), "test")
    if variant.fusion == "collaborative":
        fused = aligned_logits(read_scores(paths["collaborative"]), video_ids, paths["collaborative"])
    elif variant.fusion == "learned":
        fused = read_fusion(paths["learned"]).fuse(rgb, flow)
    else:
        fused = late_fusion(rgb, flow, tuple(fusion.late_fusion_weights), objective)
    return video_ids, labels.numpy(), {"rgb": rgb.numpy(), "flow": flow.numpy(), "fused": fused.numpy()}
