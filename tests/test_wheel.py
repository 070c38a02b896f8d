"""The wheel: what it carries and declares. The installed wheel runs the demo DAG, predict, export and
figures in tests/test_workflow.py, and the rawframes import in tests/test_rawframes.py."""

from __future__ import annotations

import subprocess
import zipfile

import yaml
from packaging.requirements import Requirement

from conftest import REPO, fresh_venv, wheel_metadata

NOT_RUNTIME = {"pytest", "pytest-timeout", "snakefmt", "snakemake-executor-plugin-slurm"}  # extras: test, lint, slurm


def test_wheel_carries_the_package_and_the_workflow_and_declares_what_it_needs(installed_tclsta):
    with zipfile.ZipFile(installed_tclsta.wheel) as archive:
        names = set(archive.namelist())
    tracked = subprocess.run(["git", "ls-files", "tclsta", "Snakefile", "config.yaml", "rules", "envs", "workflow"],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for path in tracked:
        assert (path if path.startswith("tclsta/") else f"tclsta/pipeline/{path}") in names, path

    metadata = wheel_metadata(installed_tclsta.wheel)
    declared = {Requirement(r).name.lower(): Requirement(r) for r in metadata.get_all("Requires-Dist")}
    pinned = [Requirement(line) for line in (REPO / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    for pin in pinned:  # every pinned runtime package is declared, at a floor the pin satisfies
        if pin.name not in NOT_RUNTIME:
            assert pin.name in declared and declared[pin.name].specifier.contains(next(iter(pin.specifier)).version), pin
    assert {"tensorboard", "onnx", "onnxscript", "onnxruntime"} <= set(declared)
    # 1.6.0 is the first plugin release with tasks_per_gpu (the SLURM profile sets it)
    assert 'snakemake-executor-plugin-slurm>=1.6.0; extra == "slurm"' in metadata.get_all("Requires-Dist")
    profile = yaml.safe_load((installed_tclsta.pipeline / "workflow/profiles/slurm/config.yaml").read_text())
    assert any("tasks_per_gpu" in values for values in profile["set-resources"].values())
    assert metadata.get_all("Project-URL") and len(metadata.get_all("Classifier")) >= 5


def test_snakefile_without_tclsta_says_what_to_install(installed_tclsta, tmp_path):
    """Snakemake alone (no tclsta in its Python) stops with one line saying what to install."""
    python = fresh_venv(tmp_path / "venv", ["snakemake"])
    (tmp_path / "work").mkdir()
    run = subprocess.run([str(python), "-m", "snakemake", "-n", "--snakefile", str(installed_tclsta.pipeline / "Snakefile"),
                          "--configfile", str(installed_tclsta.pipeline / "config.yaml")],
                         cwd=tmp_path / "work", capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "needs the tclsta package in the Python that runs Snakemake: pip install tclsta" in run.stdout + run.stderr
