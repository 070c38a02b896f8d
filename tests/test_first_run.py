"""The first commands a user types, on a fresh clone's config.yaml: without the public datasets
(one message saying where to get them), for an unconfigured dataset, and with a UCF101 copy at
the conventional place (the whole pipeline plans with no config change)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from tclsta.config import load_config, dataset_settings
from tclsta.datasets import manifest_sources, missing_data
from tclsta.errors import MissingDataError
from test_workflow import job_counts, snakemake, workdir  # noqa: F401 (workdir is a fixture)


@pytest.fixture
def fresh_clone(workdir: Path) -> Path:  # noqa: F811
    """The workflow with the config.yaml it ships with."""
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    return workdir


def after_dag_start(run) -> list[str]:
    """What snakemake printed from 'Building DAG of jobs...' on (after its banner)."""
    output = run.stdout + run.stderr
    return output[output.index("Building DAG of jobs"):].splitlines()


@pytest.mark.parametrize(
    "dataset, looked_for, expected",
    [
        ("ucf101", ["data/UCF-101/", "data/ucfTrainTestlist/", "classInd.txt"],
         ["https://www.crcv.ucf.edu/data/UCF101.php", "UCF101.rar", "unar -o data UCF101.rar",
          "UCF101TrainTestSplits-RecognitionTask.zip", "datasets.ucf101.root", "datasets.ucf101.splits_dir"]),
        ("hmdb51", ["data/hmdb51/", "data/testTrainMulti_7030_splits/<class>_test_split1.txt"],
         ["https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/", "hmdb51_org.rar",
          "one RAR per class", "test_train_splits.rar", "unar", "datasets.hmdb51.root", "datasets.hmdb51.splits_dir"]),
    ],
)
def test_missing_public_dataset_says_where_to_get_it(fresh_clone, dataset, looked_for, expected):
    run = snakemake(fresh_clone, "-n", f"results/{dataset}/report.html")
    assert run.returncode != 0
    lines = after_dag_start(run)
    message = "\n".join(lines)
    assert f"MissingDataError: dataset '{dataset}'" in message
    assert "MissingRuleException" not in message and "MissingInputException" not in message
    for text in looked_for + expected + ["downloads nothing"]:
        assert text in message, text
    assert len(lines) <= 30, message  # one screen


def test_unconfigured_dataset_names_the_configured_ones(fresh_clone):
    run = snakemake(fresh_clone, "-n", "results/ucf202/report.html")
    assert run.returncode != 0
    message = "\n".join(after_dag_start(run))
    assert "'datasets.ucf202': no such dataset; the config has benchmark, demo, hmdb51, multilabel_demo, ucf101" in message
    assert "entry under 'datasets:' in config.yaml" in message
    assert "MissingRuleException" not in message


def test_default_target_builds_present_datasets_and_names_the_others(fresh_clone):
    run = snakemake(fresh_clone, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    assert "Skipping dataset 'ucf101'" in output and "Skipping dataset 'hmdb51'" in output
    assert "dataset=demo" in output and "dataset=benchmark" in output and "dataset=ucf101" not in output
    assert "dataset=multilabel_demo" in output
    assert job_counts(output)["report"] == 3

    demo = snakemake(fresh_clone, "-n", "results/demo/report.html")  # make demo's target
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert job_counts(demo.stdout + demo.stderr)["report"] == 1


def test_ucf101_copy_at_the_conventional_place_plans_the_whole_pipeline(fresh_clone, tiny_videos):
    config_before = (fresh_clone / "config.yaml").read_text()
    shutil.copytree(tiny_videos / "videos", fresh_clone / "data/UCF-101")
    (fresh_clone / "data/ucfTrainTestlist").symlink_to(tiny_videos / "splits")  # a link is enough

    dry = snakemake(fresh_clone, "-n", "results/ucf101/report.html")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert job_counts(dry.stdout + dry.stderr)["manifest"] == 1

    # Past the manifest checkpoint, every stage is planned: one extraction, flow and pack job per shard.
    assert snakemake(fresh_clone, "results/ucf101/manifest.csv").returncode == 0
    dry = snakemake(fresh_clone, "-n", "results/ucf101/report.html")
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout + dry.stderr)
    shards = load_config(fresh_clone / "config.yaml")["preprocess"]["num_shards"]
    assert counts["extract_frames"] == counts["flow"] == counts["pack"] == shards
    for rule in ("train_stream", "score_stream", "features"):
        assert counts[rule] == 2, rule
    for rule in ("collaborative", "fuse", "evaluate", "attention", "report"):
        assert counts[rule] == 1, rule
    assert (fresh_clone / "config.yaml").read_text() == config_before


def test_manifest_command_gives_the_same_message(tmp_path):
    output = tmp_path / "manifest.csv"
    run = subprocess.run([sys.executable, "-m", "tclsta", "manifest", "--config", str(REPO / "config.yaml"),
                          "--dataset", "hmdb51", "--output", str(output)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "dataset 'hmdb51': its data is not where config.yaml points" in run.stderr
    assert "hmdb51_org.rar" in run.stderr and "Traceback" not in run.stderr
    assert not output.exists()


def test_folder_dataset_without_its_folder_or_split_csv(tmp_path):
    settings = {"name": "mine", "format": "folder", "root": str(tmp_path / "videos"), "split_csv": str(tmp_path / "split.csv")}
    with pytest.raises(MissingDataError) as info:
        manifest_sources(settings)
    message = str(info.value)
    assert f"{tmp_path}/videos/: no such folder" in message and f"{tmp_path}/split.csv: not found" in message
    assert "set datasets.mine.root in config.yaml" in message

    (tmp_path / "videos/ClassA").mkdir(parents=True)
    (tmp_path / "split.csv").write_text("path,split\n")
    assert missing_data(settings) == []
    assert manifest_sources(settings) == [str(tmp_path / "videos/ClassA"), str(tmp_path / "split.csv")]


def test_hmdb51_sources_are_the_split_files_of_the_chosen_split(tmp_path):
    config = {"datasets": {"hmdb51": {"format": "hmdb51", "root": str(tmp_path / "hmdb51"),
                                      "splits_dir": str(tmp_path / "splits"), "split": 2}}}
    (tmp_path / "hmdb51/brush_hair").mkdir(parents=True)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits/brush_hair_test_split1.txt").write_text("a.avi 1\n")
    settings = dataset_settings(config, "hmdb51")
    assert missing_data(settings) == [f"split files {tmp_path}/splits/<class>_test_split2.txt: none found"]
    (tmp_path / "splits/brush_hair_test_split2.txt").write_text("a.avi 1\n")
    assert manifest_sources(settings) == [str(tmp_path / "splits/brush_hair_test_split2.txt")]
