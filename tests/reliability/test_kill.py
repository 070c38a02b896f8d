"""kill -9 early, midway and late in the extraction, flow and pack stages, and of the Snakemake DAG;
the re-run builds shards equal, video by video, to an uninterrupted run."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import tiny_settings
from reliability.faults import kill_after_lines, kill_midway, run_stage, shard_contents, stage_command, temp_files
from test_workflow import shards_of, snakemake, workdir  # noqa: F401  (workdir is a fixture)


# Each stage logs one line per video written; it is killed after the first (early), half (middle) or all
# but the last (late) of shard 0's videos, plus a seeded delay of up to 2 ms (a tiny video is packed in a
# few milliseconds: a longer delay let the late kill land after the stage had finished).
MARKERS = {"extract": "extracted ", "flow": "flow ", "pack": "packed "}
POINTS = {"early": 0, "middle": 1, "late": 2}


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("stage", MARKERS)
def test_killed_stage_leaves_no_partial_shard_and_reruns_to_the_same(tiny_dataset, tmp_path, stage, point):
    settings = tiny_settings(tiny_dataset.root)
    frames, flow, packed = (tiny_dataset.shards[0].with_name(f"{kind}_0.h5") for kind in ("frames", "flow", "shard"))
    reference = {"extract": frames, "flow": flow, "pack": packed}[stage]
    output = tmp_path / reference.name
    args = {
        "extract": ["--shard", "0", "--manifest", tiny_dataset.manifest_path, "--output", output,
                    "--rejected", tmp_path / "rejected_0.csv"],
        "flow": ["--workers", "2", "--frames", frames, "--output", output],
        "pack": ["--frames", frames, "--flow", flow, "--output", output],
    }[stage]
    videos = len(shard_contents(reference))
    done = [1, videos // 2, videos - 1][POINTS[point]]
    delay = np.random.default_rng(POINTS[point]).uniform(0, 0.002)

    status = kill_after_lines(stage_command(stage, settings, *args), tmp_path, MARKERS[stage], done, delay)

    assert status == -9
    assert not output.exists() and len(temp_files(tmp_path)) == 1  # only the killed run's hidden temporary file
    rerun = run_stage(stage, settings, *args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert shard_contents(output) == shard_contents(reference)
    assert not temp_files(tmp_path)  # the re-run removed the killed run's temp file


def test_killed_dag_resumes_after_unlock(workdir, tiny_dataset):  # noqa: F811
    """kill -9 of Snakemake and its jobs while a flow job runs; the README's recovery commands finish the shard."""
    shard = shards_of(workdir) / "shard_0.h5"
    flow_log = workdir / "logs/flow" / f"{shard.parent.name}_0.log"
    delay = np.random.default_rng(0).uniform(0, 1.5)
    command = [sys.executable, "-m", "snakemake", "--cores", "2", str(shard)]
    status = kill_midway(command, workdir, flow_log.exists, delay)
    assert status == -9
    assert not shard.exists()

    locked = snakemake(workdir, str(shard))
    assert locked.returncode != 0 and "--unlock" in locked.stderr
    assert snakemake(workdir, "--unlock").returncode == 0
    resumed = snakemake(workdir, str(shard))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    different_files = ("source_path", "source_mtime")  # the workflow generated its own copy of the demo videos
    assert shard_contents(shard, different_files) == shard_contents(tiny_dataset.shards[0], different_files)
