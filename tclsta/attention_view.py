"""Attention made visible: where and when each trained stream looks, on a few test videos.

Peng, Zhao, Zhang, "Two-stream Collaborative Learning with Spatial-Temporal
Attention for Video Classification", arXiv 1711.03273, Sec. III-A: each stream
weights the positions of every frame's feature map (spatial-level attention)
and the frames of the video (temporal-level attention). For a few test videos,
chosen deterministically from different classes, this module runs both trained
streams on the test-time clips (the ``train.test_frames`` frames of the test
protocol, centre crop) read from the shards, and keeps

* the frames the static stream saw, with its spatial attention (h, w) over each;
* the optical-flow magnitude the motion stream saw, with its spatial attention;
* the temporal attention (T,) of both streams over the frames;
* the top-5 classes of the fusion with the learned weights.

``write_attention`` stores the numbers as JSON (``results/<dataset>/attention.json``)
and draws them as one PNG figure, which the HTML report and Snakemake's
``--report`` both show.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure, SubFigure

from tclsta.atomic import write_bytes_atomic, write_text_atomic
from tclsta.config import DemoConfig, TrainConfig
from tclsta.data.dataset import ClipSpec, ShardClipDataset, flow_windows, model_input, segment_indices, view_plan
from tclsta.demo import benchmark_cue
from tclsta.inference import chunked_outputs, split_dataset
from tclsta.predict import Predictor
from tclsta.progress import progress
from tclsta.report import PLOT_DPI, STREAM_COLORS, figure_png, mpl_text
from tclsta.settings import StageSettings, section_keys

log = logging.getLogger(__name__)
__all__ = ["AttentionView", "CueShare", "attention_figure", "attention_views", "benchmark_cue_attention", "choose_videos",
           "cue_shares", "write_attention"]

# The dataset's kind: on a benchmark dataset the attention on its designed cue is measured too.
ATTENTION_SETTINGS = StageSettings("attention", entry=("format",), demo=section_keys("demo"), train=("inference_batch",))
VIEW_FIELDS = ("logits", "spatial_attention", "temporal_attention")  # what the views read of each stream's output
STREAM_NAMES = {"rgb": "static", "flow": "motion"}
# Frames drawn per stream and video; the temporal attention bars always show all T.
FRAMES_SHOWN = 8
HEATMAP_ALPHA = 0.45


@dataclass
class AttentionView:
    """Both streams' attention on one test video (T frames of the test protocol, centre crop h x w)."""

    video_id: str
    class_name: str
    label: int
    rgb_images: np.ndarray
    """(T, h, w, 3) float32 in [0, 1]: the frames the static stream saw."""
    flow_magnitude: np.ndarray
    """(T, h, w) float32: flow magnitude (in units of the flow bound), mean over the L stacked pairs."""
    frame_indices: dict[str, list[int]]
    """Per stream, the (T,) frame of the video at each step (motion: the first frame of the flow stack)."""
    spatial: dict[str, np.ndarray]
    """Per stream, (T, h', w') attention over feature-map positions, summing to 1 per frame."""
    temporal: dict[str, np.ndarray]
    """Per stream, (T,) attention over the frames, summing to 1."""
    stream_top1: dict[str, str]
    """Per stream, the class it predicts on its own."""
    top5: list[tuple[str, float]]
    """(class, fused probability), best first."""

    def as_dict(self) -> dict:
        """The numbers of the view (no images), for JSON."""
        return {
            "video_id": self.video_id,
            "class_name": self.class_name,
            "label": self.label,
            "top5": [{"class": name, "score": round(score, 6)} for name, score in self.top5],
            "streams": {
                stream: {
                    "prediction": self.stream_top1[stream],
                    "frames": self.frame_indices[stream],
                    "temporal_attention": np.round(self.temporal[stream], 6).tolist(),
                    "spatial_attention": np.round(self.spatial[stream], 6).tolist(),
                }
                for stream in STREAM_NAMES
            },
        }


def choose_videos(videos: Sequence[tuple[str, int]], count: int) -> list[int]:
    """Positions of ``count`` of the (video id, label) ``videos``, from as many classes as possible.

    The classes are spread evenly over the sorted labels (so that, e.g., both kinds of
    demo classes appear); each contributes its videos in id order, one per round.
    """
    by_class: dict[int, list[int]] = {}
    for index in sorted(range(len(videos)), key=lambda i: videos[i][0]):  # id order within each class
        by_class.setdefault(videos[index][1], []).append(index)
    labels = sorted(by_class)
    classes = labels if count >= len(labels) else [labels[i * len(labels) // count] for i in range(count)]
    rounds = itertools.zip_longest(*(by_class[label] for label in classes))  # first of each class, then second, ...
    return [index for videos_of_round in rounds for index in videos_of_round if index is not None][:count]


def step_frames(num_frames: int, spec: ClipSpec) -> list[int]:
    """The frame of the video at each test-time step (motion: the first frame of the flow stack)."""
    if spec.modality == "rgb":
        return segment_indices(num_frames, spec.num_frames, None)
    return [int(window[0]) for window in flow_windows(num_frames, spec, None)]


def centre_crop_test_sets(predictor: Predictor, manifest: pd.DataFrame, shards: Sequence[Path]) -> dict[str, ShardClipDataset]:
    """Per stream, the test videos' clips of the test protocol on the centre crop (whatever train.test_crops says),
    the same videos in the same order for both streams."""
    specs = {
        "rgb": dataclasses.replace(predictor.rgb_spec, test_crops=1),
        "flow": dataclasses.replace(predictor.flow_spec, test_crops=1),
    }
    return {stream: split_dataset(manifest, ["test"], shards, spec, 0) for stream, spec in specs.items()}


@torch.no_grad()
def attention_views(
    model_dir: Path, manifest: pd.DataFrame, shards: Sequence[Path], count: int, device: str = "auto",
    inference_batch: int = TrainConfig.inference_batch,
) -> list[AttentionView]:
    """Run both trained streams of ``model_dir`` (a dataset's results folder) on ``count`` test videos, at most
    ``inference_batch`` images per forward pass."""
    predictor = Predictor(model_dir, device, "fusion", inference_batch)  # the view shows the fused top-5
    models = {"rgb": predictor.rgb, "flow": predictor.flow}
    datasets = centre_crop_test_sets(predictor, manifest, shards)
    specs = {stream: dataset.spec for stream, dataset in datasets.items()}
    items = datasets["rgb"].items  # (shard, video_id, label, num_frames); the same videos in the same order for flow
    chosen = choose_videos([(video_id, label) for _, video_id, label, _ in items], count)
    if not chosen:
        return []
    log.info("attention maps: both streams on %d of %d test videos (centre crop, %d frames)", len(chosen), len(items),
             specs["rgb"].num_frames)
    clips = {stream: torch.stack([datasets[stream][i][0] for i in chosen]) for stream in datasets}  # (B, T, C, h, w)
    outputs = {stream: chunked_outputs(models[stream], clips[stream], predictor.device, inference_batch, VIEW_FIELDS)
               for stream in datasets}
    fused = predictor.fusion.fuse(outputs["rgb"]["logits"], outputs["flow"]["logits"])  # (B, K)
    top = predictor.fusion.objective.probabilities(fused).topk(min(5, len(predictor.classes)))

    views = []
    for row, index in enumerate(chosen):
        _, video_id, label, num_frames = items[index]
        rgb = clips["rgb"][row].numpy()  # (T, 3, h, w) uint8
        flow = model_input(clips["flow"][row], "cpu").numpy()  # (T, 2L, h, w) in [-1, 1]
        views.append(
            AttentionView(
                video_id=video_id,
                class_name=predictor.classes[label],
                label=label,
                rgb_images=rgb.transpose(0, 2, 3, 1) / np.float32(255.0),  # (T, h, w, 3) in [0, 1]
                flow_magnitude=np.hypot(flow[:, 0::2], flow[:, 1::2]).mean(1),  # (T, h, w)
                frame_indices={stream: step_frames(num_frames, spec) for stream, spec in specs.items()},
                spatial={stream: output["spatial_attention"][row].numpy() for stream, output in outputs.items()},
                temporal={stream: output["temporal_attention"][row].numpy() for stream, output in outputs.items()},
                stream_top1={
                    stream: predictor.classes[int(output["logits"][row].argmax())] for stream, output in outputs.items()
                },
                top5=[(predictor.classes[int(i)], float(p)) for p, i in zip(top.values[row], top.indices[row])],
            )
        )
    return views


def write_attention(
    model_dir: Path,
    manifest: pd.DataFrame,
    shards: Sequence[Path],
    json_path: Path,
    png_path: Path,
    count: int,
    device: str = "auto",
    benchmark: DemoConfig | None = None,
    inference_batch: int = TrainConfig.inference_batch,
) -> None:
    """Write the attention of ``count`` test videos as JSON and as a PNG figure, both atomically.

    ``benchmark``: the generator settings of a benchmark dataset (``demo.kind: benchmark``); the JSON then
    also gives, under ``cue``, each stream's attention on the designed cue of every test video
    (:func:`benchmark_cue_attention`). ``inference_batch``: images per forward pass.
    """
    views = attention_views(model_dir, manifest, shards, count, device, inference_batch)
    record: dict = {"videos": [view.as_dict() for view in views]}
    if benchmark is not None:
        record["cue"] = {stream: dataclasses.asdict(share)
                         for stream, share in benchmark_cue_attention(model_dir, manifest, shards, benchmark, device,
                                                                             inference_batch).items()}
    write_bytes_atomic(png_path, figure_png(attention_figure(views)))
    write_text_atomic(json_path, json.dumps(record, indent=1))


# ---------------------------------------------------------------- attention on the benchmark's cue


@dataclass
class CueShare:
    """One stream's attention on the designed cue, averaged over test videos, next to what uniform attention gives."""

    spatial: float
    """Attention mass on the feature-map cells the target patch overlaps, at the steps that show the cue."""
    spatial_uniform: float
    """The same for uniform attention: the share of cells the target overlaps."""
    temporal: float
    """Attention mass on the steps that show the cue (static stream: the target's colour; motion stream: its drift)."""
    temporal_uniform: float
    """The same for uniform attention: the share of such steps."""
    videos: int
    """Test videos with at least one step showing the cue (static stream: of the classes with a coloured target)."""


def cue_shares(
    spatial: np.ndarray, temporal: np.ndarray, on_cue: np.ndarray, box: tuple[float, float, float, float],
    crop_origin: tuple[int, int], crop_size: tuple[int, int],
) -> tuple[float, float, float, float]:
    """(spatial, spatial uniform, temporal, temporal uniform) shares of one video's attention on its cue.

    ``spatial`` (T, h, w) and ``temporal`` (T,) attention; ``on_cue`` (T,) bool: the steps showing the cue,
    at least one; ``box`` (x0, y0, x1, y1) the target in the stored frame's pixels; the feature map's h x w
    cells tile the crop of ``crop_size`` (height, width) at ``crop_origin`` (top, left).
    """
    cells_y, cells_x = spatial.shape[1:]
    top, left = crop_origin
    rows = top + np.arange(cells_y + 1) * crop_size[0] / cells_y  # cell edges in frame pixels
    cols = left + np.arange(cells_x + 1) * crop_size[1] / cells_x
    x0, y0, x1, y1 = box
    on_target = ((rows[:-1] < y1) & (rows[1:] > y0))[:, None] & ((cols[:-1] < x1) & (cols[1:] > x0))[None, :]  # (h, w)
    spatial_share = spatial[on_cue][:, on_target].sum(axis=1).mean()
    return float(spatial_share), float(on_target.mean()), float(temporal[on_cue].sum()), float(on_cue.mean())


@torch.no_grad()
def benchmark_cue_attention(
    model_dir: Path, manifest: pd.DataFrame, shards: Sequence[Path], benchmark: DemoConfig, device: str = "auto",
    inference_batch: int = TrainConfig.inference_batch,
) -> dict[str, CueShare]:
    """Per stream, how much attention falls on the cue of each test video of a benchmark dataset.

    The generator knows where and when each clip's cue is (``tclsta.demo.benchmark_cue``): the target patch
    and the frames in which it shows its colour (the static stream's cue) and drifts (the motion stream's).
    Shares well above the uniform ones say that the trained attention finds the cue.
    """
    predictor = Predictor(model_dir, device, "fusion", inference_batch)
    models = {"rgb": predictor.rgb, "flow": predictor.flow}
    datasets = centre_crop_test_sets(predictor, manifest, shards)
    items = datasets["rgb"].items  # (shard, video_id, label, num_frames); the same videos in the same order for flow
    batch_size = max(1, inference_batch // datasets["rgb"].spec.num_frames)  # videos per step
    shares: dict[str, list[tuple[float, float, float, float]]] = {stream: [] for stream in models}
    log.info("attention on the benchmark's cue: both streams on %d test videos", len(items))
    for start in progress(range(0, len(items), batch_size), "attention on the cue", unit="batches"):
        indices = range(start, min(start + batch_size, len(items)))
        outputs = {stream: chunked_outputs(model, torch.stack([datasets[stream][i][0] for i in indices]), predictor.device,
                                           inference_batch, VIEW_FIELDS[1:])
                   for stream, model in models.items()}  # clips (B, T, C, h, w)
        for row, index in enumerate(indices):
            _, video_id, _, num_frames = items[index]
            cue = benchmark_cue(video_id, benchmark)
            height, width = datasets["rgb"].frame_sizes[index]  # the stored frames'
            box = tuple(width / benchmark.width * v for v in cue.box)
            for stream, output in outputs.items():
                shown = cue.coloured if stream == "rgb" else cue.moving
                if shown is None:  # a grey target (motion classes): nothing for the static stream to find
                    continue
                spec = datasets[stream].spec
                on_cue = np.array([shown[0] <= f < shown[1] for f in step_frames(num_frames, spec)])
                if not on_cue.any():
                    continue
                top, left, crop_height, crop_width = view_plan(height, width, spec, None).boxes[0]  # the centre crop
                shares[stream].append(cue_shares(
                    output["spatial_attention"][row].numpy(), output["temporal_attention"][row].numpy(), on_cue,
                    box, (top, left), (crop_height, crop_width),
                ))
    return {stream: CueShare(*np.mean(values, axis=0).tolist(), videos=len(values)) for stream, values in shares.items()}


# ---------------------------------------------------------------- figure


def attention_figure(views: Sequence[AttentionView]) -> Figure:
    """One block per video: frames with the spatial attention of each stream, temporal attention, fused top-5."""
    steps = max((len(view.rgb_images) for view in views), default=0)
    columns = min(FRAMES_SHOWN, steps)
    figure = Figure(figsize=(1.3 * max(columns, 4) + 3.5, 4.4 * max(len(views), 1)), dpi=PLOT_DPI, layout="constrained")
    if not views:
        figure.text(0.5, 0.5, "no test videos", ha="center", va="center")
        return figure
    for subfigure, view in zip(np.atleast_1d(figure.subfigures(len(views), 1)), views):
        _draw_view(subfigure, view, columns)
    return figure


def _draw_view(subfigure: SubFigure, view: AttentionView, columns: int) -> None:
    """Two rows of frames with heatmaps (static, motion), the temporal attention bars, the top-5 bars."""
    steps = len(view.rgb_images)
    shown = np.linspace(0, steps - 1, columns).round().astype(int)
    grid = subfigure.add_gridspec(3, columns + 1, height_ratios=(1.0, 1.0, 0.9), width_ratios=(*[1.0] * columns, 2.6))
    # One grey scale per video for the flow magnitude, so that still frames look still.
    flow_style = {"cmap": "gray", "vmin": 0.0, "vmax": max(float(view.flow_magnitude.max()), 1e-6)}
    backgrounds = {"rgb": (view.rgb_images, {}), "flow": (view.flow_magnitude, flow_style)}
    for row, (stream, (images, style)) in enumerate(backgrounds.items()):
        attention = view.spatial[stream]  # (T, h', w')
        low, high = float(attention.min()), float(attention.max())  # one colour scale per stream and video
        for column, step in enumerate(shown):
            axes = subfigure.add_subplot(grid[row, column])
            height, width = images.shape[1:3]
            axes.imshow(images[step], **style)
            axes.imshow(
                attention[step], cmap="jet", alpha=HEATMAP_ALPHA, vmin=low, vmax=high,
                extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="bilinear",
            )
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_title(f"t={step} · frame {view.frame_indices[stream][step]}", fontsize=7)
            if column == 0:
                axes.set_ylabel(STREAM_NAMES[stream], fontsize=9)

    bars = subfigure.add_subplot(grid[2, :columns])
    positions = np.arange(steps)
    for offset, stream in ((-0.2, "rgb"), (0.2, "flow")):
        bars.bar(positions + offset, view.temporal[stream], width=0.4, color=STREAM_COLORS[stream],
                 label=STREAM_NAMES[stream])
    bars.axhline(1.0 / steps, color="grey", linestyle=":", linewidth=1, label="uniform")
    bars.set_xticks(positions)
    bars.tick_params(labelsize=7)
    bars.set_xlabel("step t", fontsize=8)
    bars.set_ylabel("temporal attention", fontsize=8)
    bars.set_ylim(0.0, 1.45 * max(float(view.temporal["rgb"].max()), float(view.temporal["flow"].max()), 1.0 / steps))
    bars.legend(fontsize=7, ncols=3, loc="upper right")

    top5 = subfigure.add_subplot(grid[:, columns])
    names = [name for name, _ in view.top5]
    scores = top5.barh(np.arange(len(names)), [score for _, score in view.top5],
                       color=[STREAM_COLORS["fused"] if name == view.class_name else "lightgrey" for name in names])
    top5.bar_label(scores, fmt="%.2f", fontsize=7, padding=2)
    top5.set_yticks(np.arange(len(names)), [mpl_text(name) for name in names], fontsize=8)
    top5.invert_yaxis()
    top5.set_xlim(0.0, 1.2)  # room for the labels
    top5.set_xticks(np.linspace(0.0, 1.0, 6))
    top5.set_xlabel("fused probability", fontsize=8)
    top5.set_title("fused top-5 (green: true class)", fontsize=8)
    subfigure.suptitle(mpl_text(f"{view.video_id}: true class {view.class_name}"), fontsize=10)
