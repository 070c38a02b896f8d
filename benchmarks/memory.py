"""Peak memory and time of one training step and of one video's scoring at the UCF101 recipe's shapes.

ResNet-50 at 224 x 224 with both attention heads (random initialisation: the weights do not change
the cost), 101 classes, on the CPU:

* ``train``: one training step (forward, the three losses, backward, SGD step with momentum) of a batch
  of ``--videos`` clips of ``train_frames`` (10) frames; the recipe's batch is 8 videos;
* ``score``: one video's test clips, ``test_frames`` (25) frames x 10 crops, through
  :func:`tclsta.inference.video_logits` in chunks of ``--inference-batch`` images.

Each case runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own; the
``baseline`` row is a process that only built the model (torch, the weights). The table gives the
peak, the peak above the baseline and the seconds of the step (of the second step for training,
after a warm-up one). Example (the recipe's training batch does not fit beside other jobs on a
24 GiB machine in fp32: measure 1 and 2 videos and extrapolate, the growth is linear)::

    .venv/bin/python benchmarks/memory.py --train-videos 1 2 --inference-batch 25 100 250
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from tclsta.inference import video_logits
from tclsta.models import AttentionStream, stream_loss

CLASSES = 101
TRAIN_FRAMES, TEST_FRAMES, CROPS, SIZE = 10, 25, 10, 224


def peak_mb() -> float:
    """This process's peak resident memory so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model() -> AttentionStream:
    return AttentionStream(CLASSES, backbone="resnet50", in_channels=3, spatial_hidden=1024, temporal_hidden=512)


def measure(case: str, size: int, threads: int) -> dict:
    """One case in this process: ``train`` with ``size`` videos, ``score`` with ``size`` images per pass, or ``baseline``."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    network = model()
    seconds = 0.0
    if case == "train":
        network.train()
        optimizer = torch.optim.SGD(network.parameters(), lr=1e-3, momentum=0.9)
        clips = torch.randn(size, TRAIN_FRAMES, 3, SIZE, SIZE)
        labels = torch.randint(0, CLASSES, (size,))
        for _ in range(2):  # the second step has the optimiser's momentum buffers, as every later one
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            stream_loss(network(clips, labels), labels).backward()
            optimizer.step()
            seconds = time.perf_counter() - start
    elif case == "score":
        network.eval()
        clips = torch.randint(0, 256, (1, CROPS, TEST_FRAMES, 3, SIZE, SIZE), dtype=torch.uint8)  # as the loader gives them
        start = time.perf_counter()
        video_logits(network, clips, torch.device("cpu"), size)
        seconds = time.perf_counter() - start
    return {"case": case, "size": size, "peak_mb": round(peak_mb()), "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-videos", type=int, nargs="*", default=[1, 2], help="training batches to measure (videos)")
    parser.add_argument("--inference-batch", type=int, nargs="*", default=[100], help="scoring chunks to measure (images)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one measurement, in a child process
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(args.case, args.size, args.threads)))
        return
    cases = [("baseline", 0), *(("train", v) for v in args.train_videos), *(("score", i) for i in args.inference_batch)]
    rows = []
    for case, size in cases:
        run = subprocess.run([sys.executable, __file__, "--case", case, "--size", str(size), "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(run.stdout))
    base = rows[0]["peak_mb"]
    print("| case | size | peak RSS (MB) | above baseline (MB) | seconds |\n| --- | --- | --- | --- | --- |")
    for row in rows:
        size = {"train": f"{row['size']} videos x {TRAIN_FRAMES} frames", "score": f"{row['size']} images per pass",
                "baseline": "model only"}[row["case"]]
        print(f"| {row['case']} | {size} | {row['peak_mb']} | {row['peak_mb'] - base} | {row['seconds']} |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
