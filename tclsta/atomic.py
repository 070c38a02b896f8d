"""Atomic file output: write to a temporary sibling, then rename over the target.

An interrupted job therefore never leaves a half-written file under the final
name, and Snakemake re-runs it cleanly.
"""

from __future__ import annotations

import glob
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched;
    temporary files of earlier writers that were killed outright are removed first.
    The suffix is kept so that libraries choosing a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp{glob.escape(path.suffix)}"):
        stale.unlink(missing_ok=True)  # left by a writer killed with SIGKILL; one job writes a given output
    tmp = _create_unique(path.parent, f".{path.name}.", f".tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
