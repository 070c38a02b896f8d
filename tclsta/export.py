"""Export a trained dataset's models as one bundle that runs without this pipeline.

``python -m tclsta export results/<dataset> --output <dir>`` writes::

    <dir>/bundle.json         format="tclsta-bundle", version=2; classes (label order); "best" (the model
                              predict uses by default, from the results' model_choice.json, else fusion);
                              "preprocessing": the complete recipe from decoded frames to model input
                              (:func:`preprocessing_spec`); settings: the preprocess, flow and train sections
                              the rgb stream was trained with and per stream its own train section; per
                              stream its model config and input; the collaborative model's config
    <dir>/rgb.onnx, flow.onnx each stream: input "clips" (B, T, C, H, W) float32 -> outputs "logits" (B, K),
                              "features" (B, T, D); RGB ImageNet-normalised (C = 3), flow the uint8
                              encoding mapped to [-1, 1], L pairs stacked (C = 2L); B and T dynamic
    <dir>/collaborative.onnx  the collaborative model: inputs "static" (B, T, Ds), "motion" (B, T', Dm),
                              each stream's frame features averaged over the test crops -> "logits" (B, K)
    <dir>/fusion.json         the learned fusion weights, as the fuse stage wrote them
    <dir>/reference.py        numpy + onnxruntime only: bundle.json's recipe from decoded frames to
                              predict's scores (a copy of ``tclsta/export_reference.py``)

The graphs come from torch's ``torch.export``-based ONNX exporter (opset 18), on the CPU in float32,
each checked against the torch model with onnxruntime at two frame counts when it is written. ONNX
only: a PyTorch ``torch.export`` program fixes the LSTM's step count, and TorchScript tracing is
deprecated. Every file is written atomically. ``predict`` accepts the bundle folder in place of the
results folder (:func:`load_models`).
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.export._patches import register_lstm_while_loop_decomposition

from tclsta.atomic import atomic_path, write_text_atomic
from tclsta.collaborative import load_collaborative
from tclsta.config import FlowConfig, ModelConfig, PreprocessConfig, TrainConfig, build_section, section_dict, yaml_key
from tclsta.data.dataset import IMAGENET_MEAN, IMAGENET_STD, ClipSpec
from tclsta.errors import FileError, model_file
from tclsta.evaluate import read_fusion_json
from tclsta.flow import TVL1_PARAMETERS
from tclsta.models import AttentionStream, CollaborativeModel
from tclsta.inference import inference_clip_spec, load_checkpoint

log = logging.getLogger(__name__)
BUNDLE_FORMAT = "tclsta-bundle"
BUNDLE_VERSION = 2
STREAMS = ("rgb", "flow")
MODELS = ("fusion", "collaborative")
"""The models predict can score with: the streams' learned fusion, or the collaborative model."""
MODEL_CHOICE = "model_choice.json"
"""In a results folder: {"best": one of MODELS, ...}, chosen on the validation videos."""
REFERENCE = Path(__file__).with_name("export_reference.py")
QUIET_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")
"""The ONNX exporter's loggers: their INFO lines (one per optimisation pass) are kept out of the export's log."""


class StreamLogits(nn.Module):
    """A stream with plain tensor outputs, as exporters need: clips -> (logits, features)."""

    def __init__(self, stream: AttentionStream) -> None:
        super().__init__()
        self.stream = stream

    def forward(self, clips: Tensor) -> tuple[Tensor, Tensor]:
        output = self.stream(clips)  # clips (B, T, C, H, W)
        return output.logits, output.features  # (B, K), (B, T, D)


class CollaborativeLogits(nn.Module):
    """The collaborative model with a plain tensor output: (static, motion) -> logits."""

    def __init__(self, model: CollaborativeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, static: Tensor, motion: Tensor) -> Tensor:
        return self.model(static, motion).logits  # (B, K)


def _save_onnx(module: nn.Module, examples: tuple[tuple[Tensor, ...], tuple[Tensor, ...]],
               names: tuple[list[str], list[str]], path: Path) -> None:
    """ONNX with dynamic batch and time dimensions (traced on ``examples[0]``), checked against the module with
    onnxruntime on both examples, which differ in their frame counts."""
    import onnxruntime

    inputs, outputs = names
    batch = torch.export.Dim("batch")
    shapes = {name: {0: batch, 1: torch.export.Dim(f"{name}_steps")} for name in inputs}
    # the ONNX exporter captures an LSTM as a loop over its steps, which keeps T dynamic, but its decomposition
    # pass unrolls the LSTM again (fixing T) unless the same loop decomposition is registered around it too
    with atomic_path(path) as tmp, _quiet_exporter(), register_lstm_while_loop_decomposition():
        program = torch.onnx.export(module, examples[0], input_names=inputs, output_names=outputs, dynamic_shapes=shapes,
                                    dynamo=True, verbose=False)
        program.save(str(tmp))
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        for example in examples:
            got = session.run(None, {name: tensor.numpy() for name, tensor in zip(inputs, example)})
            with torch.no_grad():
                expected = module(*example)
            expected = expected if isinstance(expected, tuple) else (expected,)
            for name, ours, theirs in zip(outputs, expected, got):
                difference = float((ours - torch.from_numpy(theirs)).abs().max())
                if difference > 1e-4:
                    raise RuntimeError(f"ONNX output {name!r} of {path.name} differs from torch's by {difference:.2g} "
                                       f"at input shapes {[tuple(t.shape) for t in example]}")


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keeps the ONNX exporter's progress lines and warnings about torch internals out of the export's output; the
    graph is checked against torch right after, so a real problem still shows."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def preprocessing_spec(specs: dict[str, ClipSpec], settings: dict) -> dict:
    """What a consumer does from a video's decoded frames to each graph's input, values and rules."""
    # the recorded settings hold what the config set; the defaults fill in the rest, as for predict
    preprocess = build_section(PreprocessConfig, {key: value for key, value in settings.get("preprocess", {}).items()
                                                  if key == "short_side"}, "preprocess")
    flow = build_section(FlowConfig, {key: value for key, value in settings.get("flow", {}).items()
                                      if key in ("bound", *map(yaml_key, TVL1_PARAMETERS))}, "flow")
    bound = flow.bound
    crops = {
        "size": list(specs["rgb"].crop_size),
        "test_crops": {stream: spec.test_crops for stream, spec in specs.items()},
        "rule": "clips are cut from the frames at their decoded size, no resize. test_crops 1: the centre crop, top = "
                "(H - h) // 2, left = (W - w) // 2 (h, w: the crop size, at most H, W). test_crops 10: the corners (0, 0), "
                "(0, W - w), (H - h, 0), (H - h, W - w) and the centre, then the same five mirrored left-right (a "
                "mirrored flow x component becomes 255 - q). The graphs run on each crop; the logits are averaged "
                "over the crops, and so are the frame features that enter the collaborative model.",
    }
    return {
        "decode": {"short_side": preprocess.short_side, "color": "RGB, uint8, every frame of the video in order",
                   "rule": "resize so that the short side is short_side (the long side scaled alike and rounded to the "
                           "nearest even number; null: keep the size)"},
        "rgb": {"frames": specs["rgb"].num_frames, "channels": 3, "scale": 255.0,
                "mean": [float(m) for m in IMAGENET_MEAN], "std": [float(s) for s in IMAGENET_STD],
                "sampling": "of N frames, T segments: frame i = min(floor((2 i + 1) N / (2 T)), N - 1), i = 0..T-1",
                "to_input": "x = (pixel / scale - mean) / std per channel, layout (T, 3, h, w)"},
        "flow": {"frames": specs["flow"].num_frames, "flow_stack": specs["flow"].flow_stack,
                 "channels": specs["flow"].channels, "bound": bound, "grey": "ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B "
                 "(OpenCV's fixed-point RGB2GRAY: (4899 R + 9617 G + 1868 B + 8192) >> 14)",
                 "tvl1": {yaml_key(name): getattr(flow, name) for name in TVL1_PARAMETERS},
                 "pair": "pair p: TV-L1 flow (dx, dy) from grey frame p to grey frame p + 1",
                 "quantise": "q = rint((clip(f, -bound, bound) + bound) * 255 / (2 bound)) as uint8, each component",
                 "windows": "of N frames, with L = flow_stack and M = max(1, N - L): start s_i = min(floor((2 i + 1) M / "
                            "(2 T)), M - 1), window i = pairs min(s_i + j, N - 2) for j = 0..L-1",
                 "to_input": "x = q * 2 / 255 - 1, channels x0 y0 x1 y1 ... of the window's pairs, layout (T, 2L, h, w)"},
        "crop": crops,
        "fusion": "fused = per_class[0] * log_softmax(rgb logits) + per_class[1] * log_softmax(flow logits), with "
                  "per_class = fusion.json's raw_per_class (2, K); probabilities = softmax(fused)",
        "collaborative": "logits of collaborative.onnx on (static, motion) = each stream's features; "
                         "probabilities = softmax(logits)",
    }


def chosen_model(folder: Path, model: str) -> str:
    """``model`` of MODELS, or for "best" the choice recorded in ``folder``'s model_choice.json (fusion, and a log
    line saying so, when there is none)."""
    if model != "best":
        return model
    path = Path(folder) / MODEL_CHOICE
    if not path.is_file():
        log.info("no %s: using the fusion model", path)
        return "fusion"
    best = json.loads(path.read_text()).get("best")
    if best not in MODELS:
        raise FileError(path, f"'best' is {best!r}, expected one of {', '.join(MODELS)}")
    return best


def export_bundle(results: Path, out_dir: Path) -> dict:
    """Write the bundle of a dataset's results folder into ``out_dir``; returns its bundle.json content."""
    results, out_dir = Path(results), Path(out_dir)
    paths = {"rgb": results / "models" / "rgb.pt", "flow": results / "models" / "flow.pt",
             "collaborative": results / "models" / "collaborative.pt", "fusion": results / "fusion.json"}
    for path in paths.values():
        if not path.is_file():
            raise FileError(path, "missing: run the pipeline for this dataset first (snakemake results/<dataset>/report.html)")
    cpu = torch.device("cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle: dict = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "best": chosen_model(results, "best"), "streams": {}}
    specs = {}
    for stream in STREAMS:
        model, model_config, state = load_checkpoint(paths[stream], cpu)
        train = build_section(TrainConfig, state["settings"]["train"], "train")
        spec = specs[stream] = inference_clip_spec(stream, model_config.flow_stack, train)
        examples = tuple((torch.randn(2, t, spec.channels, *spec.crop_size),) for t in (spec.num_frames, spec.num_frames + 3))
        wrapped = StreamLogits(model).eval()
        _save_onnx(wrapped, examples, (["clips"], ["logits", "features"]), out_dir / f"{stream}.onnx")
        if stream == "rgb":
            bundle["classes"], bundle["settings"] = state["classes"], state["settings"]
        bundle["streams"][stream] = {"model_config": section_dict(model_config), "epoch": state["epoch"],
                                     "train": state["settings"]["train"],
                                     "input": {"frames": spec.num_frames, "channels": spec.channels,
                                               "crop_size": list(spec.crop_size), "test_crops": spec.test_crops}}
    model, config, state = load_collaborative(paths["collaborative"], cpu)
    if state["classes"] != bundle["classes"]:
        raise FileError(paths["collaborative"], f"its classes {state['classes']} differ from the streams' {bundle['classes']}")
    # frame features with other frame counts per stream in each example, so the graph keeps the two counts apart
    static_dim, motion_dim = state["dims"]
    examples = tuple((torch.randn(2, static, static_dim), torch.randn(2, motion, motion_dim)) for static, motion in ((5, 7), (9, 3)))
    _save_onnx(CollaborativeLogits(model).eval(), examples, (["static", "motion"], ["logits"]),
               out_dir / "collaborative.onnx")
    bundle["collaborative"] = {"config": section_dict(config), "feature_dims": state["dims"], "epoch": state["epoch"]}
    bundle["preprocessing"] = preprocessing_spec(specs, bundle["settings"])
    with atomic_path(out_dir / "fusion.json") as tmp:
        shutil.copyfile(paths["fusion"], tmp)
    with atomic_path(out_dir / "reference.py") as tmp:
        shutil.copyfile(REFERENCE, tmp)
    write_text_atomic(out_dir / "bundle.json", json.dumps(bundle, indent=1))
    log.info("bundle of %s in %s: rgb.onnx, flow.onnx, collaborative.onnx, fusion.json, reference.py, bundle.json "
             "(best model: %s)", results, out_dir, bundle["best"])
    return bundle


class ExportedOutput(NamedTuple):
    """What a bundled stream gives: the fields of ``StreamOutput`` that inference needs."""

    logits: Tensor  # (B, K)
    features: Tensor  # (B, T, D)


class OnnxGraph:
    """One of a bundle's ONNX graphs in onnxruntime (CUDA when ``device`` is and onnxruntime has it)."""

    def __init__(self, path: Path, device: torch.device) -> None:
        import onnxruntime

        cuda = device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        self.inputs = [node.name for node in self.session.get_inputs()]
        self.device = device

    def __call__(self, *tensors: Tensor) -> list[Tensor]:
        arrays = {name: np.ascontiguousarray(t.detach().float().cpu().numpy()) for name, t in zip(self.inputs, tensors)}
        return [torch.from_numpy(out).to(self.device) for out in self.session.run(None, arrays)]


class BundledStream(OnnxGraph):
    """A stream of a bundle, called like an :class:`AttentionStream`."""

    def __call__(self, clips: Tensor) -> ExportedOutput:
        return ExportedOutput(*super().__call__(clips))


class BundledCollaborative(OnnxGraph):
    """The collaborative model of a bundle: (static (B, T, Ds), motion (B, T', Dm)) frame features -> logits (B, K)."""

    def __call__(self, static: Tensor, motion: Tensor) -> Tensor:
        return super().__call__(static, motion)[0]


Collaborative = Callable[[Tensor, Tensor], Tensor]
"""(static (B, T, Ds), motion (B, T', Dm)) frame features -> logits (B, K)."""


@dataclass
class TrainedModels:
    """What prediction needs, from a results folder or a bundle."""

    rgb: Callable[[Tensor], object]  # clips -> an output with .logits and .features
    flow: Callable[[Tensor], object]
    rgb_config: ModelConfig
    flow_config: ModelConfig
    classes: list[str]
    settings: dict  # preprocess, flow and train sections (of the rgb stream)
    flow_train: dict  # the flow stream's train section (its test protocol may differ)
    model: str  # which of MODELS scores: "fusion" or "collaborative"
    fusion: dict  # fusion.json
    collaborative: Collaborative | None  # with model "collaborative"


def is_bundle(path: Path) -> bool:
    return (Path(path) / "bundle.json").is_file()


def load_models(path: Path, device: torch.device, model: str = "best") -> TrainedModels:
    """The streams, settings and the scoring model (``model``: one of MODELS, or "best": the results folder's
    model_choice.json, the bundle's "best") of a bundle (``<dir>/bundle.json``) or a results folder."""
    path = Path(path)
    bundled = is_bundle(path)
    names = {"rgb": "rgb.onnx", "flow": "flow.onnx", "collaborative": "collaborative.onnx"} if bundled else \
        {"rgb": "models/rgb.pt", "flow": "models/flow.pt", "collaborative": "models/collaborative.pt"}
    bundle = _read_bundle(path / "bundle.json") if bundled else None
    model = bundle["best"] if bundled and model == "best" else chosen_model(path, model)
    needed = [names["rgb"], names["flow"], "fusion.json"] + ([names["collaborative"]] if model == "collaborative" else [])
    for name in needed:
        if not (path / name).is_file():
            raise FileError(path / name, "missing: export the bundle again" if bundled else
                            "missing: run the pipeline for this dataset first (snakemake results/<dataset>/report.html)")
    fusion = read_fusion_json(path / "fusion.json")
    if bundled:
        with model_file(path / names["rgb"]):
            rgb = BundledStream(path / names["rgb"], device)
        with model_file(path / names["flow"]):
            flow = BundledStream(path / names["flow"], device)
        collaborative = None
        if model == "collaborative":
            with model_file(path / names["collaborative"]):
                collaborative = BundledCollaborative(path / names["collaborative"], device)
        configs = [build_section(ModelConfig, bundle["streams"][s]["model_config"], "model") for s in STREAMS]
        return TrainedModels(rgb, flow, *configs, bundle["classes"], bundle["settings"], bundle["streams"]["flow"]["train"],
                             model, fusion, collaborative)
    rgb, rgb_config, state = load_checkpoint(path / names["rgb"], device)
    flow, flow_config, flow_state = load_checkpoint(path / names["flow"], device)
    collaborative = None
    if model == "collaborative":
        network, _, collaborative_state = load_collaborative(path / names["collaborative"], device)
        if collaborative_state["classes"] != state["classes"]:
            raise FileError(path / names["collaborative"], f"its classes differ from the streams' {state['classes']}")
        collaborative = CollaborativeLogits(network).eval()
    return TrainedModels(rgb, flow, rgb_config, flow_config, state["classes"], state["settings"],
                         flow_state["settings"]["train"], model, fusion, collaborative)


def _read_bundle(path: Path) -> dict:
    """A bundle's bundle.json, checked (a damaged one is a ``BadModelFileError``)."""
    with model_file(path):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        if bundle.get("format") != BUNDLE_FORMAT or bundle.get("version") != BUNDLE_VERSION:
            raise FileError(path, f"not a {BUNDLE_FORMAT} version {BUNDLE_VERSION} file: export the bundle again")
        for key in ("streams", "classes", "settings", "best"):
            bundle[key]  # KeyError names a missing part
        for stream in STREAMS:
            bundle["streams"][stream]["model_config"], bundle["streams"][stream]["train"]
    return bundle
