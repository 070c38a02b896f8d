"""tclsta.atomic: outputs appear whole under their name, with the usual permissions, umask untouched."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from tclsta.atomic import atomic_path, write_text_atomic


def test_output_gets_the_umask_permissions_without_touching_the_umask(tmp_path, monkeypatch):
    previous = os.umask(0o027)
    try:
        def refuse(_mask):  # threads rely on the umask staying put: reading it via os.umask changes it
            raise AssertionError("os.umask called")

        monkeypatch.setattr(os, "umask", refuse)
        writers = [threading.Thread(target=write_text_atomic, args=(tmp_path / f"out{i}.txt", str(i))) for i in range(4)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        monkeypatch.undo()
    finally:
        os.umask(previous)
    for i in range(4):
        path = tmp_path / f"out{i}.txt"
        assert path.read_text() == str(i)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{i}.txt" for i in range(4)]


def test_failed_write_leaves_neither_output_nor_temporary(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
