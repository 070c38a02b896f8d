"""TCLSTA as a Snakemake module of another workflow, with a config of its own: included by local path, or from
the installed package with a prefix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from conftest import REPO, TINY_SETTINGS, run_snakemake
from tclsta.shared import shards_folder

HOST_SNAKEFILE = """{imports}
configfile: "config/config.yaml"


module tclsta:
    snakefile:
        {snakefile}
    config:
        config["tclsta"]{prefix}


use rule * from tclsta exclude all as tclsta_*


rule all:
    input:
        "{results}/report.html",
        "summary.txt",


rule summary:
    input:
        "{results}/metrics.json",
    output:
        "summary.txt",
    shell:
        "cp {{input}} {{output}}"
"""


def host_project(root: Path, prefix: str = "", installed: bool = False, **overrides) -> Path:
    """A workflow of its own (config/config.yaml, workflow in Snakefile) that uses TCLSTA as a module: this
    checkout's Snakefile, or (``installed``) the one of the tclsta package the host's Python imports."""
    dataset = {k: v for k, v in TINY_SETTINGS.items() if k not in ("name", "root", "splits_dir")}
    dataset.update(root="data/mini/videos", splits_dir="data/mini/splits", **overrides)
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(yaml.safe_dump({"samples": "unrelated", "tclsta": {"datasets": {"mini": dataset}}}))
    (root / "Snakefile").write_text(HOST_SNAKEFILE.format(
        imports="from tclsta.locations import SNAKEFILE as TCLSTA_SNAKEFILE\n\n" if installed else "",
        snakefile="str(TCLSTA_SNAKEFILE)" if installed else f'"{REPO / "Snakefile"}"',
        prefix=f'\n    prefix:\n        "{prefix}"' if prefix else "",
        results=f"{prefix}/results/mini" if prefix else "results/mini"))
    return root


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, cores=1, timeout=300)


def test_host_workflow_builds_the_dag_and_runs_a_module_rule(tmp_path):
    host = host_project(tmp_path)
    run = snakemake(host, "-n", "--quiet", "rules")
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = dict(line.split() for line in run.stdout.splitlines() if line.startswith(("tclsta_", "all ", "summary ")))
    assert jobs["all"] == "1" and jobs["summary"] == "1" and "tclsta_all" not in jobs
    for rule, count in {"tclsta_demo_dataset": 1, "tclsta_manifest": 1, "tclsta_train_stream": 2, "tclsta_report": 1}.items():
        assert jobs[rule] == str(count), rule

    run = snakemake(host, "data/mini/splits/classInd.txt")  # one module rule, for real, in the host's folder
    assert run.returncode == 0, run.stderr[-3000:]
    assert len((host / "data/mini/splits/classInd.txt").read_text().splitlines()) == 4
    assert (host / "logs/demo_dataset/mini.log").is_file() and not (host / "config.yaml").exists()


def test_module_validates_the_config_it_is_given(tmp_path):
    host = host_project(tmp_path, preprocess={"num_shards": 0})
    run = snakemake(host, "-n")
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "bad config value 'datasets.mini.preprocess.num_shards': 0 is less than the minimum of 1" in output


def test_installed_module_with_a_prefix_writes_its_files_under_it(tmp_path, installed_tclsta):
    """`prefix: tclsta` moves the module's results and logs under tclsta/; the data stays where the config says.
    The host runs in the venv of the installed wheel and takes the module's Snakefile from the package."""
    host = host_project(tmp_path, prefix="tclsta", installed=True)

    def host_snakemake(*args: str) -> subprocess.CompletedProcess:
        return installed_tclsta.snakemake(*args, cwd=host, cores=1, snakefile=host / "Snakefile")

    run = host_snakemake("-n", "-p")
    assert run.returncode == 0, run.stderr[-3000:]
    for command in ("--results tclsta/results/mini ", "--benchmarks-dir tclsta/results/mini/benchmarks "):
        assert command in run.stdout, command

    shards = Path("tclsta") / shards_folder(yaml.safe_load((host / "config/config.yaml").read_text())["tclsta"], "mini")
    run = host_snakemake(str(shards / "shard_1.h5"))  # demo data, manifest, shard lists, extraction, flow, packing
    assert run.returncode == 0, run.stderr[-3000:]
    assert (host / "data/mini/splits/classInd.txt").is_file() and not (host / "tclsta/data").exists()
    assert (host / shards / "lists/shard_1.csv").is_file() and not (host / "results").exists() and not (host / "work").exists()
    assert (host / f"tclsta/logs/extract_frames/{shards.name}_1.log").is_file() and not (host / "logs").exists()
