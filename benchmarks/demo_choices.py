"""Two design choices measured on a finished run of a dataset (docs/pipeline.md, "Two choices checked on the demo").

1. Test frames: the temporal head trains on ``train.train_frames`` steps and is tested on
   ``train.test_frames``. Each trained stream is scored again at ``--frames`` step counts
   (``tclsta.inference.score_stream``); top-1 on the validation and test videos.
2. ``collaborative.fit_on``: the collaborative model refitted on the cached stream features,
   once on the validation videos' features and once on the training videos'
   (``tclsta.collaborative.train_collaborative``); test top-1 and log-loss. For context,
   each stream's train / val accuracy at its kept epoch and the mean norm of its frame
   features on the training and the validation videos.

Reads ``results/<dataset>/`` and its shards, ``work/shards/<key>/`` (after ``make demo`` or ``make figures``), and ``config.yaml``;
writes only to a temporary folder. Example::

    .venv/bin/python benchmarks/demo_choices.py --dataset demo
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from tclsta.config import dataset_settings, load_config, parse_dataset
from tclsta.collaborative import train_collaborative
from tclsta.features import read_features
from tclsta.inference import read_scores, score_stream
from tclsta.shared import shards_folder

STREAMS = ("rgb", "flow")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--results", type=Path, help="default: results/<dataset>")
    parser.add_argument("--frames", type=int, nargs="+", default=(6, 10, 25), help="test step counts to score at")
    return parser.parse_args()


def split_logits(scores: pd.DataFrame, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) logits and (N,) labels of the videos of ``split`` in a scores table."""
    rows = scores[scores["split"] == split]
    return torch.tensor(rows.filter(like="score_").to_numpy(), dtype=torch.float32), torch.tensor(rows["label"].to_numpy())


def top1(scores: pd.DataFrame, split: str) -> float:
    logits, labels = split_logits(scores, split)
    return float((logits.argmax(1) == labels).float().mean())


def log_loss(scores: pd.DataFrame, split: str) -> float:
    return float(F.cross_entropy(*split_logits(scores, split)))


def main() -> None:
    args = parse_args()
    config = load_config(args.config)
    dataset = parse_dataset(dataset_settings(config, args.dataset))
    results = args.results or Path("results") / args.dataset
    manifest = pd.read_csv(results / "manifest.csv")
    shards = sorted(shards_folder(config, args.dataset).glob("shard_*.h5"))
    torch.set_num_threads(1)  # as make demo runs its torch jobs: the same sums on every machine
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        print(f"1. Streams trained on {dataset.train.train_frames} steps, scored at other step counts (top-1 val / test):")
        for stream in STREAMS:
            cells = []
            for frames in args.frames:
                out = work / f"{stream}_{frames}.csv"
                score_stream(results / "models" / f"{stream}.pt", shards, manifest,
                             dataclasses.replace(dataset.train, test_frames=frames), out)
                scores = read_scores(out)
                cells.append(f"{frames} steps {top1(scores, 'val'):.1%} / {top1(scores, 'test'):.1%}")
            print(f"   {stream}: " + "; ".join(cells))

        print("2. Collaborative model fitted on validation or training features (test top-1, test log-loss):")
        for fit_on in ("val", "train"):
            config = dataclasses.replace(dataset.collaborative, fit_on=fit_on)
            scores_path = work / f"collaborative_{fit_on}.csv"
            train_collaborative(results / "features" / "rgb.h5", results / "features" / "flow.h5", config,
                                dataset.train.device, work / f"collaborative_{fit_on}.pt", work / f"history_{fit_on}.csv",
                                scores_path)
            scores = read_scores(scores_path)
            print(f"   fit_on {fit_on}: {top1(scores, 'test'):.1%}, {log_loss(scores, 'test'):.4f}")
        for stream in STREAMS:
            history = pd.read_csv(results / "models" / f"{stream}_history.csv")
            kept = history.sort_values(["val_acc", "val_loss"], ascending=[False, True]).iloc[0]  # as training keeps it
            features = read_features(results / "features" / f"{stream}.h5")
            splits = np.array(features.splits)
            norms = {split: float(np.linalg.norm(features.features[splits == split], axis=-1).mean()) for split in ("train", "val")}
            print(f"   {stream} stream, kept epoch {int(kept['epoch'])}: train {kept['train_acc']:.0%} / val "
                  f"{kept['val_acc']:.0%}; mean frame-feature norm train {norms['train']:.1f} / val {norms['val']:.1f}")


if __name__ == "__main__":
    main()
