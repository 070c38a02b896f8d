"""tclsta.gpus: concurrent jobs of one workstation get distinct GPUs (ids from CUDA_VISIBLE_DEVICES)."""

import os
import subprocess
import sys
import time

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
