"""tclsta.gpus: concurrent jobs of one workstation get distinct GPUs (ids from CUDA_VISIBLE_DEVICES)."""

import os
import signal
import subprocess
import sys
import time

import pytest

SHOW = "import os, time; print(os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True); time.sleep({})"


def gpus_job(tmp_path, visible: str, count: int, sleep: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "TMPDIR": str(tmp_path)}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.Popen([sys.executable, "-m", "tclsta.gpus", str(count), "--", sys.executable, "-c", SHOW.format(sleep)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_jobs_get_distinct_gpus_and_wait_for_a_free_one(tmp_path):
    first = gpus_job(tmp_path, "3,7", 1, sleep=3)
    assert first.stdout.readline().strip() == "3"
    second = gpus_job(tmp_path, "3,7", 1, sleep=3)
    assert second.stdout.readline().strip() == "7"
    started = time.time()
    third = gpus_job(tmp_path, "3,7", 1)  # waits until the first ends and frees GPU 3
    out, err = third.communicate(timeout=60)
    assert out.strip() == "3" and time.time() - started > 1 and "waiting for 1 free GPU" in err
    for job in (first, second):
        job.communicate(timeout=60)


def test_no_gpus_runs_unchanged_and_too_many_is_refused(tmp_path):
    out, _ = gpus_job(tmp_path, "", 1).communicate(timeout=60)
    assert out.strip() == ""  # a CPU machine: the job runs as it is
    job = gpus_job(tmp_path, "0,1", 3)
    _, err = job.communicate(timeout=60)
    assert job.returncode != 0 and "asks for 3 GPU(s), this machine has 2" in err


def test_lock_is_released_when_its_holder_is_killed(tmp_path):
    holder = gpus_job(tmp_path, "3", 1, sleep=60)
    assert holder.stdout.readline().strip() == "3"
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    started = time.time()
    out, err = gpus_job(tmp_path, "3", 1).communicate(timeout=30)
    assert out.strip() == "3" and "waiting" not in err and time.time() - started < 20


def planted_symlink(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"tclsta-gpus-{os.getuid()}").symlink_to(elsewhere)
    return elsewhere


def planted_world_writable(tmp_path):
    folder = tmp_path / f"tclsta-gpus-{os.getuid()}"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


def planted_for_another_user(tmp_path):
    if os.getuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    folder = tmp_path / f"tclsta-gpus-{os.getuid()}"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)  # nobody
    return folder


@pytest.mark.parametrize("plant", [planted_symlink, planted_world_writable, planted_for_another_user])
def test_planted_lock_folder_is_refused(tmp_path, plant):
    target = plant(tmp_path)
    job = gpus_job(tmp_path, "0", 1)
    out, err = job.communicate(timeout=60)
    assert job.returncode != 0 and out == ""  # the command never ran
    assert f"tclsta-gpus-{os.getuid()}" in err and "remove it" in err
    assert list(target.iterdir()) == []  # no lock file created through the planted folder


def test_symlinked_lock_file_is_not_followed(tmp_path):
    folder = tmp_path / f"tclsta-gpus-{os.getuid()}"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (folder / "gpu0.lock").symlink_to(victim)
    job = gpus_job(tmp_path, "0", 1)
    _, err = job.communicate(timeout=60)
    assert job.returncode != 0 and "a symlink?" in err
    assert victim.read_text() == "keep"
