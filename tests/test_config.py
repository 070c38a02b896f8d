"""Config validation: the shipped config is valid; bad values fail naming the key."""

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tclsta.config import dataset_settings, load_config, parse_dataset, runs_of
from tclsta.errors import BadConfigError

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def shipped() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_shipped_config_is_valid_and_overrides_merge():
    config = load_config(ROOT / "config.yaml")
    demo = parse_dataset(dataset_settings(config, "demo"))
    assert demo.model.backbone == "small"  # dataset override
    assert demo.flow.bound == 20  # top-level default kept
    assert demo.flow.nscales == 3
    assert demo.train.crop_size == (88, 120)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["train"].update(batch_size=-1), "train.batch_size"),
        (lambda c: c["train"].update(batch_size="ten"), "train.batch_size"),
        (lambda c: c["datasets"]["demo"]["train"]["stages"][0].update(epochs=0), "datasets.demo.train.stages.0.epochs"),
        (lambda c: c["datasets"]["demo"]["train"]["stages"][0].update(name="warmup"), "datasets.demo.train.stages.0.name"),
        (lambda c: c["train"].update(flow={"stages": [{"name": "warmup", "epochs": 1, "lr": 0.1}]}), "train.flow.stages.0.name"),
        (lambda c: c["flow"].update(bogus=1), "flow"),
        (lambda c: c["flow"].update(jpeg_quality=101), "flow.jpeg_quality"),
        (lambda c: c["train"].update(decode_device="cuda"), "train.decode_device"),  # auto picks CUDA when training runs there
        (lambda c: c["datasets"]["demo"]["preprocess"].update(short_side=-5), "datasets.demo.preprocess.short_side"),
        (lambda c: c["datasets"]["demo"].update(format="youtube"), "datasets.demo.format"),
        (lambda c: c["datasets"]["benchmark"]["demo"].update(kind="harder"), "datasets.benchmark.demo.kind"),
        (lambda c: c.update(extra_section={}), "<top level>"),
        (lambda c: c["train"].update(batch_size=4.0), "train.batch_size"),  # YAML float where code needs an int
        (lambda c: c["train"].update(flip="yes"), "train.flip"),
        (lambda c: c["train"].update(crop_size=[-1, 56]), "train.crop_size.0"),
        (lambda c: c["datasets"]["demo"]["preprocess"].update(num_shards=0), "datasets.demo.preprocess.num_shards"),
        (lambda c: c["datasets"]["demo"].update(roots="/data"), "datasets.demo"),
        # Values the schema took that crashed later (or ran with a silent nonsense), issue 26.
        (lambda c: c["train"].update(seed=-1), "train.seed"),
        (lambda c: c["collaborative"].update(seed=2**32), "collaborative.seed"),
        (lambda c: c["datasets"]["ucf101"].update(format="folder", test_fraction=math.nan), "datasets.ucf101.test_fraction"),
        (lambda c: c["train"].update(val_fraction=math.nan), "train.val_fraction"),
        (lambda c: c["fusion"].update(lr=math.inf), "fusion.lr"),
        (lambda c: c["preprocess"].update(max_video_seconds=math.inf), "preprocess.max_video_seconds"),
        (lambda c: c["preprocess"].update(num_shards=100_000_000), "preprocess.num_shards"),
        (lambda c: c["train"].update(crop_size=[224, 10**6]), "train.crop_size.1"),
    ],
)
def test_bad_values_name_the_key(tmp_path, edit, key):
    config = shipped()
    edit(config)
    with pytest.raises(BadConfigError) as info:
        load_config(write_config(tmp_path, config))
    assert info.value.key == key
    assert key in str(info.value)


def test_unknown_dataset_is_named():
    with pytest.raises(BadConfigError, match="no such dataset"):
        dataset_settings(load_config(ROOT / "config.yaml"), "ucf202")


@pytest.mark.parametrize("split, runs", [("all", [1, 2, 3]), ([3, 1], [1, 3]), (2, None)])
def test_several_splits_are_runs_of_their_own(tmp_path, split, runs):
    config = shipped()
    config["datasets"]["ucf101"]["split"] = split
    config = load_config(write_config(tmp_path, config))
    if runs is None:
        assert runs_of(config, "ucf101") == ["ucf101"] and parse_dataset(dataset_settings(config, "ucf101")).split == 2
        return
    assert runs_of(config, "ucf101") == [f"ucf101/split{n}" for n in runs]
    for n in runs:
        settings = dataset_settings(config, f"ucf101/split{n}")
        assert (settings["name"], parse_dataset(settings).split) == (f"ucf101/split{n}", n)
    with pytest.raises(BadConfigError, match="results/ucf101/split<N>/, the mean in results/ucf101/report.html"):
        parse_dataset(dataset_settings(config, "ucf101"))
    missing = next(n for n in (2, 4) if n not in runs)
    with pytest.raises(BadConfigError, match=f"'ucf101/split{missing}' is not one of its runs"):
        dataset_settings(config, f"ucf101/split{missing}")


@pytest.mark.parametrize("entry, key", [({"split": "some"}, "datasets.ucf101.split"), ({"split": [1, 1]}, "datasets.ucf101.split"),
                                        ({"split": [4]}, "datasets.ucf101.split")])
def test_bad_split_lists_are_refused(tmp_path, entry, key):
    config = shipped()
    config["datasets"]["ucf101"].update(entry)
    with pytest.raises(BadConfigError) as info:
        load_config(write_config(tmp_path, config))
    assert info.value.key == key


def test_several_splits_need_a_format_with_splits():
    config = {"datasets": {"mine": {"format": "folder", "root": "/data/videos", "split": "all"}}}
    with pytest.raises(BadConfigError, match="several splits need format ucf101, hmdb51, demo, not folder"):
        dataset_settings(config, "mine")


def test_unreadable_yaml_is_reported(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("datasets: [unclosed")
    with pytest.raises(BadConfigError, match="cannot read"):
        load_config(path)


def test_cli_names_a_bad_value_without_traceback(tmp_path):
    config = shipped()
    config["datasets"]["demo"]["train"] = {"batch_size": -4}
    result = subprocess.run([sys.executable, "-m", "tclsta", "manifest", "--config", str(write_config(tmp_path, config)),
                             "--dataset", "demo", "--output", str(tmp_path / "manifest.csv")], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "bad config value 'datasets.demo.train.batch_size': -4 is less than the minimum of 1" in result.stderr
    assert not (tmp_path / "manifest.csv").exists()


def test_nan_is_named_as_not_a_finite_number(tmp_path):
    config = shipped()
    config["train"]["val_fraction"] = math.nan
    with pytest.raises(BadConfigError, match=r"^bad config value 'train.val_fraction': nan is not a finite number \(in "):
        load_config(write_config(tmp_path, config))


DUPLICATE = "datasets:\n  demo: {format: demo, root: v, splits_dir: s}\ntrain:\n  batch_size: 8\n  seed: 0\n  batch_size: 16\n"


def test_a_key_given_twice_is_refused_naming_it(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(DUPLICATE)
    with pytest.raises(BadConfigError, match=re.escape(f"'batch_size': given twice in one mapping ({path}, line 6)")):
        load_config(path)


def test_snakemake_refuses_what_load_config_refuses(tmp_path):
    """Snakemake reads config.yaml with its own loader: the Snakefile runs the project's checks on it."""
    for name in ("Snakefile", "rules", "workflow"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    nan = DUPLICATE.replace("  batch_size: 16\n", "  val_fraction: .nan\n")
    for text, message in ((DUPLICATE, "bad config value 'batch_size': given twice in one mapping (config.yaml, line 6)"),
                          (nan, "bad config value 'train.val_fraction': nan is not a finite number")):
        (tmp_path / "config.yaml").write_text(text)
        run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode != 0 and message in run.stdout + run.stderr, run.stdout[-2000:]
