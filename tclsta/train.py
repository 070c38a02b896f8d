"""Training of one stream (static RGB or motion flow) of the spatial-temporal attention model.

A flat loop, top to bottom: data, model, then for each stage of the schedule
(the paper's three: ``spatial`` = backbone + spatial head, ``temporal`` =
temporal head with the backbone frozen, ``joint`` = everything) a fresh
optimiser and learning-rate schedule, and per epoch one pass over the training
videos and one over the validation videos (carved from the training split,
never the test split).

Surviving real runs:

* After every epoch the whole training state (weights, optimiser, scheduler,
  gradient scaler, RNG, history, best so far) is written atomically to
  ``<checkpoint>.resume/last.pt``. A re-run with the same settings resumes from
  it and, on the CPU with a fixed seed, ends exactly as an uninterrupted run;
  a damaged state is moved aside to ``<checkpoint>.resume.damaged/`` and the
  run starts again from the first epoch.
  The best-on-validation weights reach the checkpoint path only when training
  is over, so a killed job leaves no output for Snakemake to mistake as done.
* Multi-GPU: under ``torchrun --nproc_per_node N`` each process takes its share
  of every batch (DistributedDataParallel; NCCL on GPUs, gloo on the CPU).
* On CUDA: automatic mixed precision (bfloat16 where supported) and
  channels-last; ``torch.compile`` when asked; gradient clipping everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from tclsta.atomic import atomic_path, write_text_atomic
from tclsta.config import ModelConfig, TrainConfig, section_dict
from tclsta.data.dataset import ClipSpec, ShardClipDataset, clip_loader, decodes_on_device, model_input
from tclsta.data.manifest import class_names
from tclsta.errors import BadConfigError, BadModelFileError, model_file
from tclsta.inference import build_model, inference_clip_spec, pick_device, save_checkpoint, split_dataset
from tclsta.models import AttentionStream, stream_loss
from tclsta.multilabel import Objective
from tclsta.models.attention import attention_entropy
from tclsta.predict import PREDICT_SETTINGS
from tclsta.progress import progress
from tclsta.settings import StageSettings, section_keys

log = logging.getLogger(__name__)
# Every model key but the score scoring picks; every train key but the validation split's size (the manifest's); and what prediction repeats,
# recorded in the checkpoint.
TRAIN_SETTINGS = StageSettings(
    "train", model=[key for key in section_keys("model") if key != "stream_score"],
    train=[key for key in section_keys("train") if key not in ("val_fraction", "inference_batch")]
).including(PREDICT_SETTINGS)
# attention_entropy: the spatial attention's mean entropy on the validation videos over that of uniform attention
HISTORY_COLUMNS = ["epoch", "stage", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "attention_entropy", "seconds",
                   "data_seconds"]

# What each stage trains, and the weights of the three losses (frame, CAM, temporal) in it.
STAGE_PARTS = {
    "spatial": ("backbone", "spatial", "frame_classifier"),
    "temporal": ("temporal",),
    "joint": ("backbone", "spatial", "temporal", "frame_classifier"),
}
STAGE_LOSS_WEIGHTS = {
    "spatial": {"frame_weight": 1.0, "cam_weight": 1.0, "temporal_weight": 0.0},
    "temporal": {"frame_weight": 0.0, "cam_weight": 0.0, "temporal_weight": 1.0},
    "joint": {"frame_weight": 1.0, "cam_weight": 1.0, "temporal_weight": 1.0},
}


@dataclass(frozen=True)
class Stage:
    name: str  # spatial | temporal | joint
    epochs: int
    lr: float
    first_epoch: int  # global epoch number (from 1) of the stage's first epoch


def training_stages(config: TrainConfig) -> list[Stage]:
    """The schedule as stages with global epoch numbers."""
    stages, first = [], 1
    for entry in config.stages:
        stages.append(Stage(entry["name"], entry["epochs"], entry["lr"], first))
        first += entry["epochs"]
    return stages


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its device, and its rank among ``world_size`` processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_runtime(device_name: str) -> Runtime:
    """One process, or one of the processes ``torchrun`` started (WORLD_SIZE > 1)."""
    device = pick_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Runtime(device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, dist.get_rank(), world_size)


def train_clip_spec(modality: str, flow_stack: int, train: TrainConfig) -> ClipSpec:
    """Training clips: ``train_frames`` random segments (``test_frames`` with ``train.variable_steps``: :func:`sample_steps`
    keeps some), random crops (flips when ``train.flip``, multi-scale crops when ``train.scale_jitter``)."""
    frames = max(train.train_frames, train.test_frames) if train.variable_steps else train.train_frames
    return ClipSpec(modality=modality, num_frames=frames, crop_size=tuple(train.crop_size),
                    flow_stack=flow_stack, train=True, flip=train.flip, scale_jitter=train.scale_jitter)


def sample_steps(clips: torch.Tensor, fewest: int) -> torch.Tensor:
    """A random number of a batch's steps (B, T, ...), from ``fewest`` to all T, kept in order (torch's global RNG)."""
    steps = clips.shape[1]
    count = int(torch.randint(min(fewest, steps), steps + 1, ()))
    keep = torch.randperm(steps)[:count].sort().values
    return clips[:, keep.to(clips.device)]


def set_stage(model: AttentionStream, stage: Stage) -> list[torch.nn.Parameter]:
    """Unfreeze the stage's parts, freeze the others; returns the trainable parameters.

    Frozen parameters get no gradient and no weight decay (they are not in the
    optimiser), and frozen parts stay in eval mode (see :func:`train_mode`).
    """
    for name, part in model.parts().items():
        part.requires_grad_(name in STAGE_PARTS[stage.name])
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: AttentionStream, stage: Stage, partial_bn: bool = False) -> None:
    """Training mode for the stage's parts; frozen parts keep their BatchNorm statistics and no dropout.

    ``partial_bn`` (TSN): every BatchNorm layer of the backbone but the first keeps
    its (pretrained) statistics; the layers' scale and shift still learn.
    """
    model.train()
    for name, part in model.parts().items():
        if name not in STAGE_PARTS[stage.name]:
            part.eval()
    if partial_bn:
        norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for norm in norms[1:]:
            norm.eval()


def make_optimizer(params: list[torch.nn.Parameter], stage: Stage, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=stage.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=stage.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, stage: Stage, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate within a stage, stepped once per epoch: cosine to 0, step decay, or constant."""
    if config.lr_schedule == "cosine":
        factor = lambda e: 0.5 * (1 + math.cos(math.pi * e / stage.epochs))  # noqa: E731
    elif config.lr_schedule == "step":
        factor = lambda e: config.lr_gamma ** (e // config.lr_step_epochs)  # noqa: E731
    else:
        factor = lambda e: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def run_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    runtime: Runtime,
    stage: Stage,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    objective: Objective = Objective(),
) -> dict[str, float]:
    """One pass over ``loader``; trains when an optimiser is given.

    Returns mean loss, accuracy (of a multi-label dataset: the share of videos whose top class is one of
    their labels), the spatial attention's mean normalised entropy, and the seconds spent getting each batch
    onto the device (waiting for
    it; converting it there, JPEG decoding included with ``train.decode_device``), summed over all
    processes when several train together.
    """
    training = optimizer is not None
    use_amp = config.amp and runtime.device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    weights = STAGE_LOSS_WEIGHTS[stage.name if training else "joint"]
    totals = torch.zeros(4, dtype=torch.float64)  # loss sum, correct, count, attention entropy sum
    data_seconds, waited = 0.0, time.perf_counter()
    batches = progress(loader, f"{stage.name} stage, {'training' if training else 'validation'}", unit="batches") if runtime.main else loader
    with torch.set_grad_enabled(training):
        for clips, labels in batches:
            clips, labels = model_input(clips, runtime.device), labels.to(runtime.device)  # (B, T, C, H, W), (B,) or (B, K)
            data_seconds += time.perf_counter() - waited  # waiting for the batch, and decoding it when the device does
            if training and config.variable_steps:
                clips = sample_steps(clips, config.train_frames)
            with torch.autocast(runtime.device.type, dtype=amp_dtype) if use_amp else nullcontext():
                output = model(clips, labels)
                loss = stream_loss(output, labels, criterion=objective.loss, **weights)
            if training:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    params = [p for group in optimizer.param_groups for p in group["params"]]
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            totals += torch.tensor([loss.item() * len(labels), objective.hits(output.logits, labels).sum().item(), len(labels),
                                    attention_entropy(output.spatial_attention.detach().float()).item() * len(labels)])
            waited = time.perf_counter()
    if training and runtime.world_size > 1:
        dist.all_reduce(totals)  # validation runs whole on every process: nothing to gather
    loss_sum, correct, count, entropy = totals.tolist()
    return {"loss": loss_sum / max(count, 1), "acc": correct / max(count, 1), "attention_entropy": entropy / max(count, 1),
            "data_seconds": data_seconds}


def train_stream(
    shards: Sequence[Path],
    manifest: pd.DataFrame,
    modality: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    checkpoint_path: Path,
    history_path: Path,
    recorded: dict | None = None,
) -> None:
    """Train one stream; write its best checkpoint and its per-epoch history (CSV, and JSON beside it).

    ``recorded`` (the settings of ``PREDICT_SETTINGS``: preprocessing, flow and test protocol) is
    stored in the checkpoint so that prediction on new videos repeats them exactly.
    """
    checkpoint_path, history_path = Path(checkpoint_path), Path(history_path)
    runtime = start_runtime(train_config.device)
    torch.manual_seed(train_config.seed)
    classes, objective = class_names(manifest), Objective.of(manifest)
    if objective.multilabel and model_config.class_source == "label":
        raise BadConfigError("model.class_source", "'label' needs one label per video: use predicted or agnostic for a multi-label dataset")
    encoded = decodes_on_device(train_config.decode_device, runtime.device)  # JPEGs decoded by model_input on the GPU
    train_set = split_dataset(manifest, ["train"], shards, train_clip_spec(modality, model_config.flow_stack, train_config),
                              train_config.seed, encoded, objective)
    val_spec = dataclasses.replace(inference_clip_spec(modality, model_config.flow_stack, train_config), test_crops=1)  # model selection: centre crop
    val_set = split_dataset(manifest, ["val"], shards, val_spec, train_config.seed, encoded, objective)
    if not len(train_set) or not len(val_set):
        raise RuntimeError(f"{modality} stream: {len(train_set)} training and {len(val_set)} validation videos in the shards; need both")
    # The same global order of samples however many processes share it: process r takes every r-th.
    sampler = DistributedSampler(train_set, runtime.world_size, runtime.rank, shuffle=True, seed=train_config.seed)
    loader_args = dict(num_workers=train_config.num_workers, pin_memory=runtime.device.type == "cuda")
    train_loader = clip_loader(train_set, batch_size=max(1, train_config.batch_size // runtime.world_size), sampler=sampler,
                               drop_last=len(train_set) > train_config.batch_size, **loader_args)
    val_loader = clip_loader(val_set, batch_size=train_config.batch_size, **loader_args)

    model = build_model(model_config, modality, len(classes)).to(runtime.device)
    if runtime.device.type == "cuda" and train_config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(enabled=train_config.amp and runtime.device.type == "cuda" and not torch.cuda.is_bf16_supported())
    stages = training_stages(train_config)
    resume_dir = checkpoint_path.with_name(checkpoint_path.name + ".resume")
    run_key = _run_key(modality, model_config, train_config, train_set, val_set, runtime.world_size)
    history, best, start_epoch, resumed = [], {"val_acc": -1.0, "val_loss": math.inf}, 1, _load_resume_state(resume_dir, run_key, runtime)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        history, best, start_epoch = resumed["history"], resumed["best"], resumed["epoch"] + 1
        torch.set_rng_state(resumed["rng"])
        log.info("%s stream: resuming after epoch %d from %s", modality, resumed["epoch"], resume_dir / "last.pt")
    tensorboard = _tensorboard_writer(checkpoint_path.with_name(f"{checkpoint_path.stem}_tensorboard")) if runtime.main else None
    log.info("%s stream: %d train / %d val videos, %d classes, %s, %d process(es), stages %s", modality, len(train_set),
             len(val_set), len(classes), runtime.device, runtime.world_size, ", ".join(f"{s.name} x{s.epochs}" for s in stages))

    for stage in stages:
        last_epoch = stage.first_epoch + stage.epochs - 1
        if last_epoch < start_epoch:
            continue  # finished before the interruption
        trainable = set_stage(model, stage)
        network = model
        if runtime.world_size > 1:  # wrapped per stage: DDP registers the parameters that need gradients
            network = DistributedDataParallel(model, find_unused_parameters=True)
        if train_config.compile:
            network = torch.compile(network)
        optimizer = make_optimizer(trainable, stage, train_config)
        scheduler = make_scheduler(optimizer, stage, train_config)
        if resumed is not None and start_epoch > stage.first_epoch:  # interrupted inside this stage
            optimizer.load_state_dict(resumed["optimizer"])
            scheduler.load_state_dict(resumed["scheduler"])
            scaler.load_state_dict(resumed["scaler"])
        for epoch in range(max(start_epoch, stage.first_epoch), last_epoch + 1):
            start = time.time()
            lr = optimizer.param_groups[0]["lr"]
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            train_mode(model, stage, train_config.partial_bn and model_config.pretrained is not None)
            train = run_epoch(network, train_loader, runtime, stage, train_config, optimizer, scaler, objective)
            scheduler.step()
            model.eval()
            val = run_epoch(model, val_loader, runtime, stage, train_config, objective=objective)
            row = dict(epoch=epoch, stage=stage.name, lr=lr, train_loss=train["loss"], train_acc=train["acc"], val_loss=val["loss"],
                       val_acc=val["acc"], attention_entropy=val["attention_entropy"], seconds=time.time() - start, data_seconds=train["data_seconds"] + val["data_seconds"])
            history.append(row)
            log.info("epoch %d (%s, lr %.2g): train loss %.4f acc %.3f | val loss %.4f acc %.3f attention entropy %.3f | %.1f s "
                     "(data %.1f s)", epoch, stage.name, lr, row["train_loss"], row["train_acc"], row["val_loss"], row["val_acc"],
                     row["attention_entropy"], row["seconds"], row["data_seconds"])
            if not runtime.main:
                continue
            if tensorboard is not None:
                for key in ("train_loss", "train_acc", "val_loss", "val_acc", "attention_entropy", "lr"):
                    tensorboard.add_scalar(key, row[key], epoch)
            if (row["val_acc"], -row["val_loss"]) > (best["val_acc"], -best["val_loss"]):
                best = {"val_acc": row["val_acc"], "val_loss": row["val_loss"], "epoch": epoch}
                save_checkpoint(resume_dir / "best.pt", model, modality, model_config, classes, epoch, row["val_acc"], recorded or {})
            _save_resume_state(resume_dir / "last.pt", run_key, model, optimizer, scheduler, scaler, epoch, history, best)

    if runtime.world_size > 1:
        dist.barrier()
    if runtime.main:
        _write_history(history, history_path)
        with atomic_path(checkpoint_path) as tmp:
            shutil.copyfile(resume_dir / "best.pt", tmp)
        shutil.rmtree(resume_dir)
        if tensorboard is not None:
            tensorboard.close()
    if runtime.world_size > 1:
        dist.destroy_process_group()


def _run_key(modality: str, model: ModelConfig, train: TrainConfig, *parts: object) -> str:
    """Fingerprint of what determines a run: a saved state is resumed only by the same run."""
    described = [modality, section_dict(model), section_dict(train)]
    for part in parts:
        described.append([item[1] for item in part.items] if isinstance(part, ShardClipDataset) else part)
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


RESUME_KEYS = ("run_key", "model", "optimizer", "scheduler", "scaler", "rng", "epoch", "history", "best")


def _load_resume_state(resume_dir: Path, run_key: str, runtime: Runtime) -> dict | None:
    """The state ``resume_dir`` holds of this run, or None: when there is none, when another run saved it
    (it is deleted) or when it is damaged (it is moved aside to ``<resume_dir>.damaged``, and said so)."""
    path = resume_dir / "last.pt"
    if not path.is_file():
        return None
    try:
        with model_file(path):
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {key: state[key] for key in RESUME_KEYS}
    except BadModelFileError as exc:
        aside = resume_dir.with_name(resume_dir.name + ".damaged")
        log.warning("%s; moved to %s, training starts again from the first epoch", exc, aside)
        _discard(resume_dir, runtime, aside)
        return None
    if state["run_key"] != run_key:
        log.info("ignoring %s: saved by a run with other settings, data or process count", path)
        _discard(resume_dir, runtime)
        return None
    return state


def _discard(resume_dir: Path, runtime: Runtime, aside: Path | None = None) -> None:
    """Delete ``resume_dir`` (move it to ``aside``, replacing what is there) once every process has read it."""
    if runtime.world_size > 1:
        dist.barrier()  # every process has read it before the main one starts over
    if runtime.main and aside is None:
        shutil.rmtree(resume_dir)
    elif runtime.main:
        shutil.rmtree(aside, ignore_errors=True)
        resume_dir.rename(aside)


def _save_resume_state(path: Path, run_key: str, model: AttentionStream, optimizer: torch.optim.Optimizer,
                       scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
                       epoch: int, history: list[dict], best: dict) -> None:
    state = {
        "run_key": run_key,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": torch.get_rng_state(),
        "epoch": epoch,
        "history": history,
        "best": best,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _write_history(history: list[dict], csv_path: Path) -> None:
    """Per-epoch metrics as CSV and, beside it, as JSON."""
    with atomic_path(csv_path) as tmp:
        pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)
    write_text_atomic(csv_path.with_suffix(".json"), json.dumps(history, indent=1))


def _tensorboard_writer(log_dir: Path):
    """A TensorBoard writer (event files under ``log_dir``; imported here, only the main process writes)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))
