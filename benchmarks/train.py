"""Training throughput per stream (clips/s) and the data loader's share of step time, in one run.

For each stream (static RGB, motion flow) with the demo's model and clip settings
(``config.yaml``'s ``demo`` dataset unless ``--dataset`` names another), on the CPU
and, where torch sees one, on the GPU:

* ``loader``: real training steps (forward, the three losses, backward, SGD step)
  fed by ``ShardClipDataset`` through a DataLoader with ``--workers`` workers;
  ``data share`` is the time the step waited for the next batch and converted it on
  the device over the step time. ``--decode-device``: the JPEGs are decoded in the
  workers (``workers``, ``train.decode_device: cpu``), or in one batched call on the
  training device, where the views are also cut (``device``, what ``auto`` does on
  CUDA; on the CPU it runs in the training process);
* ``reference``: the same steps on one batch already decoded, in memory (compute only).

``ratio`` is the reference's clips/s over the loader's (1.0: data loading costs
nothing). The shards come from demo videos generated and preprocessed here
(``--videos`` videos; fast TV-L1 settings, which do not change training cost).
Example::

    .venv/bin/python benchmarks/train.py --steps 20 --workers 2 --decode-device workers device
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tclsta.config import FlowConfig, dataset_settings, load_config, parse_dataset
from tclsta.data.dataset import clip_loader, decode_clips, model_input
from tclsta.data.manifest import build_ucf_manifest
from tclsta.demo import make_demo_dataset
from tclsta.models import stream_loss
from tclsta.preprocess import extract_shard, flow_shard, pack_shard
from tclsta.inference import build_model, split_dataset
from tclsta.train import train_clip_spec


def make_shard(workdir: Path, videos: int, dataset) -> tuple[Path, object]:
    """One packed shard of generated demo videos, and their manifest."""
    demo = dataset.demo
    groups = max(2, videos // (2 * demo.classes_per_kind * demo.clips_per_group))
    make_demo_dataset(workdir, classes_per_kind=demo.classes_per_kind, groups=groups, clips_per_group=demo.clips_per_group,
                      num_frames=demo.num_frames, width=demo.width, height=demo.height)
    manifest = build_ucf_manifest(workdir / "videos", workdir / "splits", 1, 0.3, 1, 0)
    frames, flow, shard = workdir / "frames.h5", workdir / "flow.h5", workdir / "shard.h5"
    extract_shard(manifest, 0, dataset.preprocess, frames, workdir / "rejected.csv")
    flow_shard(frames, FlowConfig(backend="opencv", nscales=2, warps=2, epsilon=0.1), flow, workers=2)
    pack_shard(frames, flow, shard, dataset.flow.bound)
    return shard, manifest


def timed_steps(model, optimizer, batches, device: torch.device, steps: int) -> tuple[float, float, int]:
    """(seconds, seconds waiting for data, clips) of ``steps`` training steps, after one warm-up step."""
    iterator = iter(batches)
    waited = clips = 0
    for step in range(steps + 1):
        if step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            waited = clips = 0
        before = time.perf_counter()
        batch, labels = next(iterator)
        batch, labels = model_input(batch, device), labels.to(device)
        waited += time.perf_counter() - before
        loss = stream_loss(model(batch, labels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clips += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, waited, clips


def endless(loader: DataLoader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--dataset", default="demo", help="whose model, clip and batch settings to use")
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decode-device", nargs="+", choices=["workers", "device"], default=["workers"],
                        help="where the JPEGs are decoded: DataLoader workers, or the training device (one row each)")
    args = parser.parse_args()
    dataset = parse_dataset(dataset_settings(load_config(args.config), args.dataset))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"{args.dataset} settings: backbone {dataset.model.backbone}, {dataset.train.train_frames} frames, crop "
          f"{tuple(dataset.train.crop_size)}, batch {dataset.train.batch_size}; {torch.get_num_threads()} torch threads\n")
    print("| stream | device | JPEGs decoded on | loader clips/s | data share | reference clips/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        shard, manifest = make_shard(Path(tmp), args.videos, dataset)
        for modality, decode in itertools.product(("rgb", "flow"), args.decode_device):
            spec = train_clip_spec(modality, dataset.model.flow_stack, dataset.train)
            data = split_dataset(manifest, ["train", "val"], [shard], spec, 0, encoded=decode == "device")
            loader = clip_loader(data, batch_size=dataset.train.batch_size, shuffle=True, drop_last=True,
                                 num_workers=args.workers, persistent_workers=args.workers > 0)
            for device in devices:
                torch.manual_seed(0)
                model = build_model(dataset.model, modality, 8).to(device).train()
                optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
                seconds, waited, clips = timed_steps(model, optimizer, endless(loader), device, args.steps)
                clips_in_memory, labels = next(iter(loader))
                if decode == "device":
                    clips_in_memory = torch.stack(decode_clips(clips_in_memory, "cpu"))
                batch = clips_in_memory, labels
                ref_seconds, _, ref_clips = timed_steps(model, optimizer, iter(lambda: batch, None), device, args.steps)
                rate, reference = clips / seconds, ref_clips / ref_seconds
                print(f"| {modality} | {device.type} | {decode} | {rate:.1f} | {waited / seconds:.0%} | {reference:.1f} | {reference / rate:.2f} |")


if __name__ == "__main__":
    main()
