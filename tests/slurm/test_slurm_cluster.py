"""The tiny demo DAG through workflow/profiles/slurm on a real one-node SLURM cluster on localhost.

Debian's slurmctld, slurmd and munge (installed with apt-get when missing: needs root) run in a
temp dir: munged as user munge, then slurmctld, then ``slurmd -N localhost``, with the machine's
real CPUs and memory, cons_tres scheduling, two GPU GRES without devices (so the profile's GPU
requests are scheduled; the tiny settings train on the CPU) and no accounting daemon, hence
``--slurm-status-command squeue``. Jobs run as root with the venv's python on their PATH.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from test_workflow import TARGET, snakemake, workdir  # noqa: F401  (workdir is a fixture)

PACKAGES = {"sinfo": "slurm-client", "slurmctld": "slurmctld", "slurmd": "slurmd", "munged": "munge"}
NODE_IDLE_TIMEOUT_S = 90
# Where every SLURM command looks without SLURM_CONF (Debian's default).
CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = CONF.with_name("gres.conf")


def install_missing_packages() -> None:
    """apt-get install the SLURM and munge packages whose commands are missing (root only)."""
    missing = sorted({package for command, package in PACKAGES.items() if shutil.which(command) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"the SLURM test needs {' '.join(missing)} and root to start its daemons: run it as root on "
                    f"Debian/Ubuntu (apt-get), or install them first")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_hardware() -> str:
    """This machine's CPUs and memory as slurmd reports them (``slurmd -C``), without its name."""
    line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    return " ".join(field for field in line.split() if not field.startswith("NodeName="))


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
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# squeue keeps finished jobs this long; the plugin needs it to see them finish.
MinJobAge=300
ReturnToService=2
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 {node_hardware()} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def start(command: list[str], log: Path, user: str | None = None) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, user=user)


def wait_for_idle_node(root: Path, daemons: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + NODE_IDLE_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        exited = [d.args[0] for d in daemons if d.poll() is not None]
        if exited:
            break
        state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True).stdout.strip()
        if state == "idle":
            return
        time.sleep(1)
    logs = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(root.glob("*.log")))
    pytest.fail(f"the SLURM node did not become idle within {NODE_IDLE_TIMEOUT_S} s (node state {state!r}, "
                f"exited daemons: {exited or 'none'})\n{logs}")


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[Path]:
    """A running one-node cluster; yields its slurm.conf. Daemons are stopped by pid afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test starts munged, slurmctld and slurmd, which needs root")
    install_missing_packages()
    root = Path(tempfile.mkdtemp(prefix="tclsta-slurm-"))
    root.chmod(0o755)  # munged runs as munge
    munge_dir = root / "munge"
    munge_dir.mkdir(mode=0o755)  # munged wants its socket folder searchable by all
    for path in (root / "state", root / "spool"):
        path.mkdir()
    munge = pwd.getpwnam("munge")
    os.chown(munge_dir, munge.pw_uid, munge.pw_gid)
    if CONF.exists():
        pytest.fail(f"{CONF} exists: this test runs its own cluster and writes its config there "
                    f"(jobs' nested srun drops SLURM_CONF); run it where SLURM is not configured")
    # Two "GPUs" backed by character devices every machine has: SLURM only needs device files.
    gres = "".join(f"NodeName=localhost Name=gpu File={device}\n" for device in ("/dev/null", "/dev/zero"))
    CONF.write_text(slurm_conf(root))
    GRES_CONF.write_text(gres)
    daemons: list[subprocess.Popen] = []
    try:
        subprocess.run(["mungekey", "--create", f"--keyfile={munge_dir}/munge.key"], user="munge", check=True)
        daemons.append(start(["munged", "--foreground", f"--key-file={munge_dir}/munge.key",
                              f"--socket={munge_dir}/munge.socket", f"--pid-file={munge_dir}/munged.pid",
                              f"--seed-file={munge_dir}/munged.seed", f"--log-file={munge_dir}/munged.log"],
                             root / "munged.log", user="munge"))
        socket_path = munge_dir / "munge.socket"
        for _ in range(50):
            if socket_path.exists():
                break
            time.sleep(0.1)
        daemons.append(start(["slurmctld", "-D", "-i"], root / "slurmctld.out.log"))
        daemons.append(start(["slurmd", "-D", "-N", "localhost"], root / "slurmd.out.log"))
        wait_for_idle_node(root, daemons)
        yield CONF
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True)
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        CONF.unlink()
        GRES_CONF.unlink()
        shutil.rmtree(root, ignore_errors=True)


def test_tiny_dag_runs_through_the_slurm_profile(slurm_cluster, workdir):  # noqa: F811
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    profile.update({
        "slurm-status-command": "squeue",  # no accounting daemon: sacct knows no jobs
        "slurm-init-seconds-before-status-checks": 2,
        "max-threads": os.cpu_count(),
    })
    # The rules ask for cluster-sized memory; tiny jobs fit this machine with 1 GB per CPU.
    profile["default-resources"]["mem_mb_per_cpu"] = 1000
    (workdir / "test-profile").mkdir()
    (workdir / "test-profile/config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))

    run = snakemake(workdir, "--profile", "test-profile", TARGET)
    output = run.stdout + run.stderr
    if run.returncode != 0:
        failed_jobs = "".join(log.read_text()[-1500:] for log in (workdir / ".snakemake/slurm_logs").rglob("*.log"))
        pytest.fail(f"snakemake --executor slurm failed:\n{output[-4000:]}\nSLURM logs of failed jobs:\n{failed_jobs}")
    assert "SLURM jobid" in output
    report = (workdir / TARGET).read_text()
    assert 'id="accuracy"' in report
