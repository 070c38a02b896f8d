"""Error types raised for bad input; each names the file or key at fault."""

from __future__ import annotations

from pathlib import Path


class TclstaError(Exception):
    """Base class of every error the pipeline reports to a user."""


class BadVideoError(TclstaError):
    """A video that cannot be decoded or is unusable (corrupt, empty, audio-only, too short)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"bad video {self.path}: {reason}")


class BadSplitFileError(TclstaError):
    """A split or class-index file that is malformed or names missing videos."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"bad split file {self.path}: {reason}")


class BadConfigError(TclstaError):
    """A config value that is missing, of the wrong type or out of range."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"bad config value '{key}': {reason}")


class BadShardError(TclstaError):
    """An HDF5 shard that is unreadable or inconsistent; delete it and re-run."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"bad shard {self.path}: {reason} (delete it and re-run the pipeline)")
