"""A full disk while a shard is written, and shards damaged after writing."""

from __future__ import annotations

import resource
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from conftest import tiny_settings
from reliability.faults import run_stage, shard_contents
from tclsta.errors import BadShardError

SPACE = 100_000  # bytes: less than each stage's tiny shard (frames about 240 kB, flow 170 kB, packed 360 kB)


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (SPACE, SPACE))


@pytest.fixture(params=["tmpfs", "RLIMIT_FSIZE"])
def small_space(request, tmp_path) -> Iterator[tuple[Path, Callable[[], None] | None, str]]:
    """(folder, preexec_fn, expected reason): a tiny tmpfs (ENOSPC), or a file size limit (EFBIG)."""
    folder = tmp_path / "out"
    folder.mkdir()
    if request.param == "RLIMIT_FSIZE":
        yield folder, limit_file_size, "File too large"
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SPACE}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk is simulated with a small tmpfs, and mounting one needs root "
                    f"(CAP_SYS_ADMIN): {mounted.stderr.strip()}; the RLIMIT_FSIZE variant runs without")
    try:
        yield folder, None, "No space left on device"
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("stage", ["extract", "flow", "pack"])
def test_full_disk_fails_the_job_clearly_and_keeps_nothing(tiny_dataset, small_space, stage):
    folder, preexec, reason = small_space
    frames, flow = (tiny_dataset.shards[0].with_name(f"{kind}_0.h5") for kind in ("frames", "flow"))
    output = folder / f"{stage}_0.h5"
    args = {
        "extract": ["--shard", "0", "--manifest", tiny_dataset.manifest_path, "--output", output,
                    "--rejected", folder / "rejected_0.csv"],
        # two worker processes, stopped by the write error while they compute or hold results nobody reads
        "flow": ["--workers", "2", "--frames", frames, "--output", output],
        "pack": ["--frames", frames, "--flow", flow, "--output", output],
    }[stage]
    run = run_stage(stage, tiny_settings(tiny_dataset.root), *args, preexec_fn=preexec)
    assert run.returncode == 2
    assert f"cannot write shard {output}: {reason}" in run.stderr and "free some space and re-run" in run.stderr
    assert "Traceback" not in run.stderr
    assert list(folder.iterdir()) == []  # neither a shard under the final name nor a temporary file
    assert shard_contents(frames) and shard_contents(flow)  # the inputs are intact


def damaged_copy(shard: Path, folder: Path, offset: int, length: int = 1) -> Path:
    """A copy of ``shard`` with ``length`` bytes inverted at ``offset``."""
    copy = folder / shard.name
    shutil.copy(shard, copy)
    with open(copy, "r+b") as file:
        file.seek(offset)
        data = file.read(length)
        file.seek(offset)
        file.write(bytes(b ^ 0xFF for b in data))
    return copy


def test_shard_damaged_in_the_middle_stops_the_job_naming_it(tiny_dataset, tmp_path):
    frames, flow = (tiny_dataset.shards[0].with_name(f"{kind}_0.h5") for kind in ("frames", "flow"))
    damaged = damaged_copy(flow, tmp_path, flow.stat().st_size // 2, length=16)
    run = run_stage("pack", tiny_settings(tiny_dataset.root), "--frames", frames, "--flow", damaged, "--output", tmp_path / "shard_0.h5")
    assert run.returncode == 2
    assert f"bad shard {damaged}: " in run.stderr and "(delete it and re-run the pipeline)" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "shard_0.h5").exists()


def test_no_damaged_byte_is_read_silently(tiny_dataset, tmp_path):
    """Single-byte damage anywhere in a packed shard is detected at read, or changes nothing read."""
    shard = tiny_dataset.shards[0]
    expected = shard_contents(shard)
    detected = 0
    for offset in np.random.default_rng(0).integers(0, shard.stat().st_size, 40):
        damaged = damaged_copy(shard, tmp_path, int(offset))
        try:
            assert shard_contents(damaged) == expected, f"byte {offset} changed what is read"
        except BadShardError as error:
            assert error.path == damaged and "delete it and re-run" in str(error)
            detected += 1
    assert detected >= 30  # almost every byte of a shard is checked data or metadata
