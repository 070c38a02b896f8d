"""The conda environments of `--sdm conda`: the pins `make test` uses, and tclsta itself installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def pins(lines) -> dict[str, str]:
    return dict(line.strip().split("==") for line in lines if "==" in line and not line.lstrip().startswith("#"))


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.stem)
def test_env_pins_are_those_of_requirements_and_it_installs_tclsta(env):
    required = pins((REPO / "requirements.txt").read_text().splitlines())
    dependencies = yaml.safe_load(env.read_text())["dependencies"]
    pip = next(d["pip"] for d in dependencies if isinstance(d, dict))
    assert pip and pins(pip) == {name: required[name] for name in pins(pip)}
    assert "python=3.11" in dependencies
    deploy = env.with_name(f"{env.stem}.post-deploy.sh")
    assert deploy.resolve() == REPO / "envs" / "install-tclsta.sh"


def test_post_deploy_script_installs_tclsta_editable(tmp_path):
    """The script itself, run in a fresh environment as Snakemake runs it after creating one, on a copy of
    the sources (an editable install writes its metadata beside them)."""
    source = tmp_path / "tclsta-source"
    shutil.copytree(REPO / "tclsta", source / "tclsta", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "env")], check=True, timeout=120)
    env = {**os.environ, "PATH": f"{tmp_path / 'env' / 'bin'}{os.pathsep}{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    script = str(REPO / "envs" / "install-tclsta.sh")
    run = subprocess.run(["bash", script], cwd=source, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    found = subprocess.run([str(tmp_path / "env" / "bin" / "python"), "-c", "import importlib.util; print(importlib.util.find_spec('tclsta').origin)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found) == source / "tclsta" / "__init__.py"  # editable: the schema beside the package is found

    elsewhere = subprocess.run(["bash", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert elsewhere.returncode == 1 and "set TCLSTA_SOURCE" in elsewhere.stderr


def test_container_recipe_matches_the_pinned_wheels():
    """workflow/containers/flow.def (which no test can build here: no Apptainer) installs requirements.txt's
    pins, on the CUDA the pinned torch wheel is built for, for the GPUs that wheel runs on up to 9.0, plus PTX."""
    import torch

    recipe = (REPO / "workflow/containers/flow.def").read_text()
    arguments = dict(line.strip().split("=", 1) for line in recipe.split("%arguments")[1].split("%")[0].splitlines() if "=" in line)
    required = pins((REPO / "requirements.txt").read_text().splitlines())
    assert torch.__version__.split("+")[0] == required["torch"]
    assert arguments["CUDA_VERSION"] == torch.version.cuda
    assert arguments["OPENCV_VERSION"] == ".".join(required["opencv-contrib-python-headless"].split(".")[:3])
    wheel_archs = {f"{arch[3:-1]}.{arch[-1]}" for arch in torch.cuda.get_arch_list() if int(arch[3:]) <= 90}
    assert set(arguments["CUDA_ARCH_BIN"].split(";")) >= wheel_archs and arguments["CUDA_ARCH_PTX"] == "9.0"
    assert "From: debian:12" in recipe  # Python 3.11 and ffmpeg 5.1, as make test
    assert "requirements.txt /opt/tclsta/requirements.txt" in recipe and "-r /tmp/pins.txt" in recipe
