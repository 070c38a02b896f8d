"""Distinct GPUs for the concurrent jobs of one workstation.

``python -m tclsta.gpus N -- command ...`` runs ``command`` with ``CUDA_VISIBLE_DEVICES`` set to
N GPUs that no other job started this way holds. A GPU is held through an exclusive ``flock`` on
``<tmp>/tclsta-gpus-<uid>/gpu<id>.lock``; that folder must be a real folder (not a symlink) owned by
the user and writable by nobody else, and lock files are opened without following symlinks. The lock's descriptor is inherited by the command
(``exec``, no wrapper process), so the GPU is released when the command ends, even by ``kill -9``.
Snakemake's ``resources: gpu`` limit (workflow/profiles/local) keeps the sum of N within the
machine's GPUs; a job finding too few free (others' jobs) waits for them.

The command runs unchanged for N = 0, on a machine without GPUs (the job runs on the CPU), and
under SLURM (``SLURM_JOB_ID`` set), where SLURM has already chosen the job's GPUs.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path

LOCK_DIR = Path(tempfile.gettempdir()) / f"tclsta-gpus-{os.getuid()}"


def visible_gpus() -> list[str]:
    """This machine's GPU ids: ``CUDA_VISIBLE_DEVICES`` when set, else one per /dev/nvidia<k>."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    devices = (p.name for p in Path("/dev").glob("nvidia*"))
    return sorted((m.group(1) for m in map(re.compile(r"nvidia(\d+)$").match, devices) if m), key=int)


def lock_dir() -> Path:
    """The user's private lock folder, created 0700; refused when another user could have planted it."""
    try:
        LOCK_DIR.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = LOCK_DIR.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise SystemExit(f"tclsta.gpus: {LOCK_DIR} is not a folder (a symlink?); remove it")
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise SystemExit(f"tclsta.gpus: {LOCK_DIR} belongs to another user or others can write to it; remove it")
    return LOCK_DIR


def try_claim(count: int, gpus: list[str]) -> dict[str, int] | None:
    """Locks on ``count`` free GPUs of ``gpus`` (id -> open descriptor), or None, holding nothing."""
    folder = lock_dir()
    held: dict[str, int] = {}
    for gpu in gpus:
        path = folder / f"gpu{gpu}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise SystemExit(f"tclsta.gpus: cannot open {path} (a symlink?): {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held[gpu] = fd
        if len(held) == count:
            return held
    for fd in held.values():
        os.close(fd)
    return None


def claim(count: int, poll_s: float = 1.0) -> dict[str, int]:
    """Wait until ``count`` GPUs are free and lock them."""
    gpus = visible_gpus()
    if count > len(gpus):
        raise SystemExit(f"tclsta.gpus: a job asks for {count} GPU(s), this machine has {len(gpus)} ({gpus})")
    waiting = False
    while (held := try_claim(count, gpus)) is None:
        if not waiting:
            print(f"tclsta.gpus: waiting for {count} free GPU(s) of {gpus}", file=sys.stderr)
            waiting = True
        time.sleep(poll_s)
    return held


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tclsta.gpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, help="GPUs the command needs (the rule's resources.gpu)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    if args.count > 0 and visible_gpus() and "SLURM_JOB_ID" not in os.environ:
        held = claim(args.count)
        for fd in held.values():
            os.set_inheritable(fd, True)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(held)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
