"""Export a trained dataset's models as one bundle that runs without this pipeline.

``python -m tclsta export results/<dataset> <dir>`` writes::

    <dir>/bundle.json         format="tclsta-bundle", version=1; classes (label order); settings: the
                              preprocess, flow and train sections the rgb stream was trained with, and
                              per stream its own train section (its test protocol) (what
                              `predict` repeats: frame size, TV-L1 parameters and bound, test frames,
                              crop size and crops); per stream its model config and input
                              description; the collaborative model's config, feature sizes and epoch
    <dir>/rgb.pt, flow.pt     TorchScript (torch.jit.trace) of each stream: clips (B, T, C, H, W) float32
                              -> (logits (B, K), frame features (B, T, D)); RGB ImageNet-normalised
                              (C = 3), flow the uint8 encoding mapped to [-1, 1], L pairs stacked (C = 2L)
    <dir>/rgb.onnx, flow.onnx the same in ONNX (torch.onnx's exporter, opset 18), inputs "clips",
                              outputs "logits", "features"; batch and T dynamic
    <dir>/collaborative.pt    TorchScript of the collaborative model: (static features (B, T, Ds),
    <dir>/collaborative.onnx  motion features (B, T', Dm)) -> logits (B, K); ONNX inputs "static",
                              "motion", output "logits"
    <dir>/fusion.json         the learned fusion weights, as the fuse stage wrote them

Traced on the CPU in float32 with the test protocol's clip size; every file is
written atomically. ``predict`` accepts the bundle folder in place of the
results folder (:func:`load_models`).
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from tclsta.atomic import atomic_path, write_text_atomic
from tclsta.collaborative import load_collaborative
from tclsta.config import ModelConfig, TrainConfig, build_section, section_dict
from tclsta.errors import FileError, model_file
from tclsta.evaluate import read_fusion_json
from tclsta.models import AttentionStream, CollaborativeModel
from tclsta.inference import inference_clip_spec, load_checkpoint

log = logging.getLogger(__name__)
BUNDLE_FORMAT = "tclsta-bundle"
BUNDLE_VERSION = 1
STREAMS = ("rgb", "flow")


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


def _save_torchscript(module: nn.Module, example: tuple[Tensor, ...], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the shape checks it warns about hold for any batch
        traced = torch.jit.trace(module, example)
    with atomic_path(path) as tmp:
        traced.save(str(tmp))


def _save_onnx(module: nn.Module, example: tuple[Tensor, ...], names: tuple[list[str], list[str]], path: Path) -> None:
    """ONNX with dynamic batch and time dimensions, checked against the module on the example."""
    import onnxruntime

    inputs, outputs = names
    batch = torch.export.Dim("batch")
    shapes = {name: {0: batch, 1: torch.export.Dim(f"{name}_steps")} for name in inputs}
    with atomic_path(path) as tmp:
        program = torch.onnx.export(module, example, input_names=inputs, output_names=outputs, dynamic_shapes=shapes,
                                    dynamo=True, verbose=False)
        program.save(str(tmp))
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {name: tensor.numpy() for name, tensor in zip(inputs, example)})
        expected = module(*example)
        expected = expected if isinstance(expected, tuple) else (expected,)
        for name, ours, theirs in zip(outputs, expected, got):
            difference = float((ours - torch.from_numpy(theirs)).abs().max())
            if difference > 1e-4:
                raise RuntimeError(f"ONNX output {name!r} differs from torch's by {difference:.2g}")


def export_bundle(results: Path, out_dir: Path, onnx: bool = True) -> dict:
    """Write the bundle of a dataset's results folder into ``out_dir``; returns its bundle.json content."""
    results, out_dir = Path(results), Path(out_dir)
    paths = {"rgb": results / "models" / "rgb.pt", "flow": results / "models" / "flow.pt",
             "collaborative": results / "models" / "collaborative.pt", "fusion": results / "fusion.json"}
    for path in paths.values():
        if not path.is_file():
            raise FileError(path, "missing: run the pipeline for this dataset first (snakemake results/<dataset>/report.html)")
    cpu = torch.device("cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle: dict = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "streams": {}}
    features = {}
    for stream in STREAMS:
        model, model_config, state = load_checkpoint(paths[stream], cpu)
        train = build_section(TrainConfig, state["settings"]["train"], "train")
        spec = inference_clip_spec(stream, model_config.flow_stack, train)
        clips = torch.randn(2, spec.num_frames, spec.channels, *spec.crop_size)
        wrapped = StreamLogits(model).eval()
        _save_torchscript(wrapped, (clips,), out_dir / f"{stream}.pt")
        if onnx:
            _save_onnx(wrapped, (clips,), (["clips"], ["logits", "features"]), out_dir / f"{stream}.onnx")
        with torch.no_grad():
            features[stream] = wrapped(clips)[1]
        if stream == "rgb":
            bundle["classes"], bundle["settings"] = state["classes"], state["settings"]
        bundle["streams"][stream] = {"model_config": section_dict(model_config), "epoch": state["epoch"],
                                     "train": state["settings"]["train"],
                                     "input": {"frames": spec.num_frames, "channels": spec.channels,
                                               "crop_size": list(spec.crop_size), "test_crops": spec.test_crops}}
    model, config, state = load_collaborative(paths["collaborative"], cpu)
    if state["classes"] != bundle["classes"]:
        raise FileError(paths["collaborative"], f"its classes {state['classes']} differ from the streams' {bundle['classes']}")
    wrapped = CollaborativeLogits(model).eval()
    example = (features["rgb"], features["flow"])
    _save_torchscript(wrapped, example, out_dir / "collaborative.pt")
    if onnx:
        _save_onnx(wrapped, example, (["static", "motion"], ["logits"]), out_dir / "collaborative.onnx")
    bundle["collaborative"] = {"config": section_dict(config), "feature_dims": state["dims"], "epoch": state["epoch"]}
    bundle["onnx"] = onnx
    with atomic_path(out_dir / "fusion.json") as tmp:
        shutil.copyfile(paths["fusion"], tmp)
    write_text_atomic(out_dir / "bundle.json", json.dumps(bundle, indent=1))
    log.info("bundle of %s in %s (TorchScript%s)", results, out_dir, " and ONNX" if onnx else "")
    return bundle


class ExportedOutput(NamedTuple):
    """What a bundled stream gives: the fields of ``StreamOutput`` that inference needs."""

    logits: Tensor  # (B, K)
    features: Tensor  # (B, T, D)


class BundledStream:
    """A stream loaded from a bundle's TorchScript, called like an :class:`AttentionStream`."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.module = torch.jit.load(str(path), map_location=device).eval()

    def __call__(self, clips: Tensor) -> ExportedOutput:
        return ExportedOutput(*self.module(clips))


@dataclass
class TrainedModels:
    """What prediction needs, from a results folder or a bundle."""

    rgb: Callable[[Tensor], object]  # clips -> an output with .logits
    flow: Callable[[Tensor], object]
    rgb_config: ModelConfig
    flow_config: ModelConfig
    classes: list[str]
    settings: dict  # preprocess, flow and train sections (of the rgb stream)
    flow_train: dict  # the flow stream's train section (its test protocol may differ)
    fusion: dict  # fusion.json


def is_bundle(path: Path) -> bool:
    return (Path(path) / "bundle.json").is_file()


def load_models(path: Path, device: torch.device) -> TrainedModels:
    """The streams, settings and fusion weights of a bundle (``<dir>/bundle.json``) or a results folder."""
    path = Path(path)
    bundled = is_bundle(path)
    needed = [path / name for name in ("rgb.pt", "flow.pt", "fusion.json")] if bundled else \
        [path / "models" / "rgb.pt", path / "models" / "flow.pt", path / "fusion.json"]
    for file in needed:
        if not file.is_file():
            raise FileError(file, "missing: export the bundle again" if bundled else
                            "missing: run the pipeline for this dataset first (snakemake results/<dataset>/report.html)")
    fusion = read_fusion_json(needed[2])
    if not bundled:
        rgb, rgb_config, state = load_checkpoint(needed[0], device)
        flow, flow_config, flow_state = load_checkpoint(needed[1], device)
        return TrainedModels(rgb, flow, rgb_config, flow_config, state["classes"], state["settings"],
                             flow_state["settings"]["train"], fusion)
    with model_file(path / "bundle.json"):
        bundle = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
        if bundle.get("format") != BUNDLE_FORMAT or bundle.get("version") != BUNDLE_VERSION:
            raise FileError(path / "bundle.json", f"not a {BUNDLE_FORMAT} version {BUNDLE_VERSION} file")
        configs = [build_section(ModelConfig, bundle["streams"][s]["model_config"], "model") for s in STREAMS]
        classes, settings, flow_train = bundle["classes"], bundle["settings"], bundle["streams"]["flow"]["train"]
    streams = []
    for file in needed[:2]:
        with model_file(file):
            streams.append(BundledStream(file, device))
    return TrainedModels(*streams, *configs, classes, settings, flow_train, fusion)
