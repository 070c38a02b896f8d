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
