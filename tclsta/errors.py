"""Error types raised for bad input; each names the file or key at fault."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class TclstaError(Exception):
    """Base class of every error the pipeline reports to a user."""


class FileError(TclstaError):
    """A problem with one file: the message is ``<what> <path>: <reason>``."""

    what = "bad file"

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.what} {self.path}: {reason}")


class BadVideoError(FileError):
    """A video that cannot be decoded or is unusable (corrupt, empty, audio-only, too short)."""

    what = "bad video"


class BadFrameFolderError(BadVideoError):
    """A folder of existing frames and flow (rawframes) with a missing frame or mismatched flow."""

    what = "bad frame folder"


def as_bad_video(path: str | Path, error: Exception) -> BadVideoError:
    """``error``, raised while reading the video ``path``, as a ``BadVideoError`` naming it."""
    if isinstance(error, BadVideoError):
        return error
    return BadVideoError(path, f"{type(error).__name__}: {error}")


class BadSplitFileError(FileError):
    """A split or class-index file that is malformed or names missing videos."""

    what = "bad split file"


class BadShardError(FileError):
    """An HDF5 shard that is unreadable or inconsistent; delete it and re-run."""

    what = "bad shard"

    def __init__(self, path: str | Path, reason: str):
        super().__init__(path, f"{reason} (delete it and re-run the pipeline)")


class BadModelFileError(FileError):
    """A checkpoint, resume state, fusion or bundle file that cannot be read back (damaged, or not ours)."""

    what = "bad model file"

    def __init__(self, path: str | Path, reason: str):
        super().__init__(path, f"{reason} (damaged, or not written by this TCLSTA: delete it and re-run the stage that writes it)")


@contextmanager
def model_file(path: str | Path) -> Iterator[None]:
    """Read a model file and rebuild from it in this context: whatever fails (a truncated or foreign file, a
    missing key, a wrong shape) is a :class:`BadModelFileError` naming it. Running out of memory is not."""
    try:
        yield
    except (TclstaError, MemoryError):
        raise
    except Exception as exc:
        import torch  # loaded already by whoever reads model files

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        first_line = next(iter(str(exc).strip().splitlines()), "")
        raise BadModelFileError(path, f"{type(exc).__name__}: {first_line[:300]}") from exc


class ShardWriteError(FileError):
    """A shard that could not be written (disk full, quota, I/O error); nothing is left under its name."""

    what = "cannot write shard"

    def __init__(self, path: str | Path, reason: str):
        super().__init__(path, f"{reason} (nothing was kept under this name; free some space and re-run)")


class WorkerError(TclstaError):
    """A worker process that ended (killed, out of memory) before returning its result."""


class BadConfigError(TclstaError):
    """A config value that is missing, of the wrong type or out of range."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"bad config value '{key}': {reason}")


class MissingFileError(FileError):
    """An input file or folder that is not there."""

    what = "no such file"


class BadTableError(FileError):
    """A CSV file with a missing column or a value of the wrong kind."""

    what = "bad CSV"


class DeviceError(BadConfigError):
    """A device that was asked for but is not there (``cuda`` without a visible GPU)."""


class MissingDataError(TclstaError):
    """A configured dataset whose videos or split files are not where its entry points."""

    def __init__(self, dataset: str, missing: list[str], instructions: str):
        self.dataset = dataset
        self.missing = missing
        looked_for = "\n".join(f"    {line}" for line in missing)
        super().__init__(f"dataset '{dataset}': its data is not where config.yaml points.\n{looked_for}\n{instructions}")
