"""tclsta.atomic: outputs appear whole under their name, with the usual permissions, umask untouched."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import pytest

from tclsta.atomic import _HOST, atomic_path, write_text_atomic


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


def test_a_second_writer_leaves_the_first_ones_temporary_file_alone(tmp_path):
    """Two writers of one output outside Snakemake: the second's clean-up of killed writers' temporary
    files spares the first one's, which is still writing; a dead writer's is removed."""
    target = tmp_path / "out.txt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    killed = tmp_path / f".out.txt.{_HOST}-{dead.stdout.strip()}-0000.tmp.txt"  # as a writer killed with SIGKILL leaves it
    killed.touch()
    with atomic_path(target) as tmp:
        tmp.write_text("first")
        second = subprocess.run([sys.executable, "-c", f"from tclsta.atomic import write_text_atomic; "
                                                       f"write_text_atomic({str(target)!r}, 'second')"], timeout=60)
        assert second.returncode == 0
        assert tmp.exists() and not killed.exists()
    assert target.read_text() == "first"
    assert list(tmp_path.iterdir()) == [target]
