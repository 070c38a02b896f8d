"""kill -9 at random points of the flow and pack stages and of the Snakemake DAG; the re-run
builds shards equal, video by video, to an uninterrupted run."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import tiny_settings
from reliability.faults import kill_midway, run_stage, shard_contents, stage_command, temp_files
from test_workflow import snakemake, workdir  # noqa: F401  (workdir is a fixture)

SHARD = "results/tiny/shards/shard_0.h5"


@pytest.mark.parametrize(
    "stage, seed, max_delay",
    [("flow", 0, 1.5), ("flow", 1, 1.5), ("pack", 0, 0.1), ("pack", 1, 0.1), ("pack", 2, 0.1)],
)
def test_killed_stage_leaves_no_partial_shard_and_reruns_to_the_same(tiny_dataset, tmp_path, stage, seed, max_delay):
    settings = tiny_settings(tiny_dataset.root)
    frames, flow, packed = (tiny_dataset.shards[0].with_name(f"{kind}_0.h5") for kind in ("frames", "flow", "shard"))
    output = tmp_path / (flow if stage == "flow" else packed).name
    reference = flow if stage == "flow" else packed
    if stage == "flow":
        args = ["--workers", "2", "--frames", frames, "--output", output]
    else:
        args = ["--frames", frames, "--flow", flow, "--output", output]
    delay = np.random.default_rng(seed).uniform(0, max_delay)  # after the stage starts writing

    status = kill_midway(stage_command(stage, settings, *args), tmp_path, lambda: bool(temp_files(tmp_path)), delay)

    assert status == -9
    assert not output.exists() or shard_contents(output) == shard_contents(reference)  # absent or whole
    rerun = run_stage(stage, settings, *args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert shard_contents(output) == shard_contents(reference)
    assert not temp_files(tmp_path)  # the re-run removed the killed run's temp file


def test_killed_dag_resumes_after_unlock(workdir, tiny_dataset):  # noqa: F811
    """kill -9 of Snakemake and its jobs while a flow job runs; the README's recovery commands finish the shard."""
    flow_log = workdir / "logs/flow/tiny_0.log"
    delay = np.random.default_rng(0).uniform(0, 1.5)
    command = [sys.executable, "-m", "snakemake", "--cores", "2", SHARD]
    status = kill_midway(command, workdir, flow_log.exists, delay)
    assert status == -9
    assert not (workdir / SHARD).exists()

    locked = snakemake(workdir, SHARD)
    assert locked.returncode != 0 and "--unlock" in locked.stderr
    assert snakemake(workdir, "--unlock").returncode == 0
    resumed = snakemake(workdir, SHARD)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    different_files = ("source_path", "source_mtime")  # the workflow generated its own copy of the demo videos
    assert shard_contents(workdir / SHARD, different_files) == shard_contents(tiny_dataset.shards[0], different_files)
