"""Atomic file output: write to a temporary sibling, then rename over the target.

An interrupted job therefore never leaves a half-written file under the final
name, and Snakemake re-runs it cleanly. A temporary file's name holds its writer's
host and process id (``.<name>.<host>-<pid>-<random>.tmp<suffix>``): a writer removes
the temporary files of writers on its host that have ended, never one still writing.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import secrets
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched;
    temporary files of earlier writers that were killed outright are removed first (see :func:`_ended_writer`).
    The suffix is kept so that libraries choosing a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp{glob.escape(path.suffix)}"):
        if _ended_writer(stale.name[len(path.name) + 2:]):
            stale.unlink(missing_ok=True)  # left by a writer killed with SIGKILL
    tmp = _create_unique(path.parent, f".{path.name}.{_HOST}-{os.getpid()}-", f".tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# This host, as temporary names record it (a short hash: host names may hold any character).
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_WRITER = re.compile(r"^([0-9a-f]{8})-(\d{1,9})-")


def _ended_writer(name: str) -> bool:
    """Whether the writer of a temporary file (``name``: its name after ``.<output>.``) has ended.

    Only a writer on this host can be told to have ended (its process id is gone); a name
    without host and process id (written by an older TCLSTA) counts as ended.
    """
    writer = _WRITER.match(name)
    if writer is None:
        return True
    if writer.group(1) != _HOST:
        return False
    try:
        os.kill(int(writer.group(2)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a live process of another user
        pass
    return False


def _create_unique(folder: Path, prefix: str, suffix: str) -> Path:
    """Create a new empty file ``<prefix><random><suffix>`` in ``folder``.

    Unlike ``mkstemp`` (0600), the file gets the usual permissions (0666 less the umask)
    from the kernel, so the process-wide umask is never read or changed (other threads rely on it).
    """
    for _ in range(100):
        candidate = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name {prefix}*{suffix} in {folder}")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_text_if_changed(path: str | Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless the file already holds it (its mtime is then kept).

    Returns True when the file was written.
    """
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text_atomic(path, text)
    return True


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
