"""The tiny demo DAG through the shipped workflow/profiles/slurm on a real one-node SLURM cluster.

The cluster is the test's own: Debian's munged, slurmctld and ``slurmd -N localhost`` (installed
with apt-get when missing; starting them needs root, else the test skips) run from a temporary
folder with their own slurm.conf, which every SLURM command of the test, of Snakemake and of its
jobs finds through ``SLURM_CONF``. Nothing under /etc is written (nor read: the plugin stack file
is the folder's too). It has the machine's CPUs, cons_tres scheduling, two GPU GRES without
devices (so the profile's GPU requests are scheduled; the tiny settings compute on the CPU) and no
accounting daemon. Two things differ from a site's cluster, and how the test meets them:

- snakemake-executor-plugin-slurm-jobstep runs each rule inside its job with a nested ``srun``
  whose environment it strips of every ``SLURM_*`` variable but the job's identity, ``SLURM_CONF``
  included; a site's srun then finds /etc/slurm/slurm.conf or asks a configless slurmd, which
  would mean writing /etc (or /run, and munge's default socket). Instead the jobs find first on
  their PATH (inherited: ``sbatch --export=ALL``) a ``srun`` that sets ``SLURM_CONF`` again and
  runs the real one.
- The rules ask for cluster-sized memory (up to 16 GB, more on a retry): the node declares 64 GB
  (``SlurmdParameters=config_overrides``; nothing enforces it, ``task/none``), so the requests are
  scheduled as the profile makes them.

The profile runs unchanged; the command line adds what this cluster lacks or needs:
``--slurm-status-command squeue`` (no accounting daemon), ``--max-threads`` (the machine's CPUs,
where the profile asks for up to 16) and a short wait before the first status check. The first flow
job is killed with SIGKILL once it runs, as an out-of-memory killer would: the profile's
``retries`` submit it again, and ``scontrol show job`` (finished jobs stay listed, ``MinJobAge``)
shows the second submission asking for twice the memory of the first (the rule's ``mem_mb`` grows
with the attempt).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO
from test_workflow import TARGET, workdir  # noqa: F401  (workdir is a fixture)

PACKAGES = {"sinfo": "slurm-client", "slurmctld": "slurmctld", "slurmd": "slurmd", "munged": "munge"}
NODE_IDLE_TIMEOUT_S = 90
DAG_TIMEOUT_S = 900
NODE_MEMORY_MB = 64000
KILLED_RULE = "flow"


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]  # SLURM_CONF, and PATH with the srun that keeps it and the venv's python

    def run(self, *command: str) -> str:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=True, timeout=60).stdout


def install_missing_packages() -> None:
    """apt-get install the SLURM and munge packages whose commands are missing (root only)."""
    missing = sorted({package for command, package in PACKAGES.items() if shutil.which(command) is None})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        pytest.skip(f"the SLURM test needs {' '.join(missing)}: install them, or run it on Debian/Ubuntu (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_hardware() -> str:
    """This machine's CPUs as slurmd reports them (``slurmd -C``), with NODE_MEMORY_MB of memory, without its name."""
    line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    fields = [f for f in line.split() if not f.startswith(("NodeName=", "RealMemory="))]
    return " ".join([*fields, f"RealMemory={NODE_MEMORY_MB}"])


def slurm_conf(root: Path) -> str:
    return f"""\
ClusterName=tclsta
SlurmctldHost=localhost
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
PlugStackConfig={root}/plugstack.conf
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# squeue and scontrol keep finished jobs this long: the plugin sees them finish, the test their requests.
MinJobAge=3600
ReturnToService=2
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 {node_hardware()} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def srun_keeping_conf(folder: Path, conf: Path) -> None:
    """A ``srun`` in ``folder`` that runs the real one with ``SLURM_CONF=conf``."""
    srun = folder / "srun"
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {shutil.which("srun")} "$@"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def start(command: list[str], log: Path, env: dict[str, str], user: str | None = None) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, user=user)


def wait_for_idle_node(cluster: Cluster, daemons: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + NODE_IDLE_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        exited = [d.args[0] for d in daemons if d.poll() is not None]
        if exited:
            break
        state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=cluster.env, capture_output=True, text=True).stdout.strip()
        if state == "idle":
            return
        time.sleep(1)
    logs = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(cluster.root.glob("*.log")))
    pytest.fail(f"the SLURM node did not become idle within {NODE_IDLE_TIMEOUT_S} s (node state {state!r}, "
                f"exited daemons: {exited or 'none'})\n{logs}")


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[Cluster]:
    """A running one-node cluster of the test's own. Daemons are stopped by pid afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test starts munged (as user munge), slurmctld and slurmd, which needs root")
    install_missing_packages()
    root = Path(tempfile.mkdtemp(prefix="tclsta-slurm-"))
    root.chmod(0o755)  # munged runs as munge
    munge_dir, bin_dir = root / "munge", root / "bin"
    munge_dir.mkdir(mode=0o755)  # munged wants its socket folder searchable by all
    for path in (root / "state", root / "spool", bin_dir):
        path.mkdir()
    munge = pwd.getpwnam("munge")
    os.chown(munge_dir, munge.pw_uid, munge.pw_gid)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root))
    (root / "plugstack.conf").write_text("")
    # Two "GPUs" backed by character devices every machine has: SLURM only needs device files.
    (root / "gres.conf").write_text("".join(f"NodeName=localhost Name=gpu File={device}\n" for device in ("/dev/null", "/dev/zero")))
    srun_keeping_conf(bin_dir, conf)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    cluster = Cluster(root, {**os.environ, "SLURM_CONF": str(conf), "PATH": path})
    daemons: list[subprocess.Popen] = []
    try:
        subprocess.run(["mungekey", "--create", f"--keyfile={munge_dir}/munge.key"], user="munge", check=True)
        daemons.append(start(["munged", "--foreground", f"--key-file={munge_dir}/munge.key",
                              f"--socket={munge_dir}/munge.socket", f"--pid-file={munge_dir}/munged.pid",
                              f"--seed-file={munge_dir}/munged.seed", f"--log-file={munge_dir}/munged.log"],
                             root / "munged.log", cluster.env, user="munge"))
        socket_path = munge_dir / "munge.socket"
        for _ in range(50):
            if socket_path.exists():
                break
            time.sleep(0.1)
        daemons.append(start(["slurmctld", "-D", "-i"], root / "slurmctld.out.log", cluster.env))
        daemons.append(start(["slurmd", "-D", "-N", "localhost"], root / "slurmd.out.log", cluster.env))
        wait_for_idle_node(cluster, daemons)
        yield cluster
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=cluster.env, capture_output=True)
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(root, ignore_errors=True)


def jobs(cluster: Cluster) -> list[dict[str, str]]:
    """Every job slurmctld still knows (``scontrol show job``), as key=value fields, oldest first."""
    listing = cluster.run("scontrol", "show", "job", "--oneliner")
    found = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in listing.splitlines() if line.startswith("JobId=")]
    return sorted(found, key=lambda job: int(job["JobId"]))


def megabytes(size: str) -> float:
    """``8000M`` or ``15.62G`` (scontrol's units) in MB."""
    return float(size[:-1]) * {"M": 1, "G": 1024, "T": 1024**2}[size[-1]]


def kill_first_running_job(cluster: Cluster, rule: str, snakemake: subprocess.Popen) -> str:
    """Wait for a job of ``rule`` to run, then SIGKILL its processes; its job id."""
    deadline = time.monotonic() + DAG_TIMEOUT_S
    while snakemake.poll() is None and time.monotonic() < deadline:
        for line in cluster.run("squeue", "-h", "-t", "RUNNING", "-o", "%i %k").splitlines():
            job_id, comment = line.split(maxsplit=1)
            if comment.startswith(f"rule_{rule}_"):
                cluster.run("scancel", "--signal=KILL", job_id)
                return job_id
        time.sleep(0.2)
    pytest.fail(f"no {rule} job ran (snakemake exit status {snakemake.poll()})")


def test_tiny_dag_runs_through_the_shipped_slurm_profile_and_a_killed_job_is_retried_with_more_memory(
        slurm_cluster, workdir):  # noqa: F811
    command = [sys.executable, "-m", "snakemake", "--profile", str(REPO / "workflow/profiles/slurm"),
               "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
               "--max-threads", str(os.cpu_count()), TARGET]
    log = workdir / "snakemake.log"
    with log.open("w") as out:
        snakemake = subprocess.Popen(command, cwd=workdir, env=slurm_cluster.env, stdout=out, stderr=subprocess.STDOUT)
        try:
            killed = kill_first_running_job(slurm_cluster, KILLED_RULE, snakemake)
            status = snakemake.wait(timeout=DAG_TIMEOUT_S)
        finally:
            if snakemake.poll() is None:
                snakemake.kill()
                snakemake.wait()
    output = log.read_text()
    if status != 0:
        job_logs = "".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in (workdir / ".snakemake/slurm_logs").rglob("*.log"))
        pytest.fail(f"snakemake --profile workflow/profiles/slurm failed:\n{output[-4000:]}\nSLURM job logs:\n{job_logs}")
    assert 'id="accuracy"' in (workdir / TARGET).read_text()

    everything = jobs(slurm_cluster)
    first = next(job for job in everything if job["JobId"] == killed)
    again = [job for job in everything if job["Comment"] == first["Comment"] and int(job["JobId"]) > int(killed)]
    assert first["JobState"] in ("FAILED", "CANCELLED"), first
    assert [job["JobState"] for job in again] == ["COMPLETED"], again  # retried once, by the profile's retries
    memory = [megabytes(job["MinMemoryNode"]) for job in (first, again[0])]
    assert memory[1] == pytest.approx(2 * memory[0], rel=0.01), memory  # the rule's mem_mb, 8000 * attempt
    assert all(job["JobState"] == "COMPLETED" for job in everything if job is not first), everything
