"""The real Snakemake DAG on a temp copy of the workflow with a tiny demo config."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_SETTINGS, run_snakemake
from tclsta.shared import shards_folder

from tclsta.data.shards import ShardReader

TARGET = "results/tiny/report.html"


def write_tiny_config(folder: Path) -> None:
    dataset = {k: v for k, v in TINY_SETTINGS.items() if k != "name"}
    (folder / "config.yaml").write_text(yaml.safe_dump({"datasets": {"tiny": dataset}}))


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A copy of the workflow whose config holds only the tiny demo dataset."""
    for name in ("Snakefile", "rules", "workflow", "envs"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    write_tiny_config(tmp_path)
    return tmp_path


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args)


def shards_of(workdir: Path, run: str = "tiny") -> Path:
    """The folder of the shards ``run`` reads under ``workdir``'s config (work/shards/<key>)."""
    return workdir / shards_folder(yaml.safe_load((workdir / "config.yaml").read_text()), run)


def test_demo_dag_end_to_end_then_nothing_to_do(tmp_path, installed_tclsta):
    """The whole DAG as a pip-installed tclsta runs it: the wheel's own Snakefile and stages, in a venv
    that holds only what the wheel declares, from a folder outside the checkout that holds only config.yaml."""
    workdir = tmp_path
    write_tiny_config(workdir)
    run = installed_tclsta.snakemake(TARGET, cwd=workdir)
    assert run.returncode == 0, run.stderr[-3000:]
    report = (workdir / TARGET).read_text()
    for section in ('id="summary"', 'id="accuracy"', 'id="confusion"', 'id="attention"', 'id="runtime"', "data:image/png;base64,"):
        assert section in report
    metrics = json.loads((workdir / "results/tiny/metrics.json").read_text())
    assert metrics["num_test_videos_scored"] == 8
    assert set(metrics["results"]) == {"rgb", "flow", "fused", "late_fusion", "collaborative"}
    assert metrics["expected_ceilings"] == {"rgb": 1.0, "flow": 0.75, "fused": 1.0, "rgb_per_frame": 0.75}
    assert sorted(p.name for p in shards_of(workdir).glob("*.h5")) == ["shard_0.h5", "shard_1.h5"]  # temp files gone
    for rule in ("demo_dataset", "manifest", "extract_frames", "flow", "pack", "train_stream", "score_stream", "fuse", "evaluate", "report"):
        assert any((workdir / "logs" / rule).iterdir()), rule
    logs = {rule: "".join(p.read_text() for p in (workdir / "logs" / rule).iterdir()) for rule in ("score_stream", "features", "attention")}
    for rule, says in (("score_stream", "scoring the flow stream: 16 videos, 1 crop(s) x 4 frames at 40x56 each"),
                       ("features", "frame features of the rgb stream: 16 videos"), ("attention", "attention maps: both streams")):
        assert says in logs[rule], (rule, logs[rule][-2000:])  # features: val and test only, as the model is fitted on val

    again = installed_tclsta.snakemake(TARGET, cwd=workdir)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # the inference batch is memory, not a result: changing it re-runs what uses trained models, no training
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["datasets"]["tiny"]["train"]["inference_batch"] = 7
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts((dry := installed_tclsta.snakemake("-n", TARGET, cwd=workdir)).stdout + dry.stderr)
    assert counts["score_stream"] == counts["features"] == 2 and counts["attention"] == 1, counts
    assert "train_stream" not in counts and "flow" not in counts, counts

    # predict: the trained models on test videos, in memory; one unreadable video does not stop the others
    videos = sorted((workdir / "data/tiny/videos").rglob("*.avi"))[:2]
    broken = workdir / "broken.mp4"
    broken.write_bytes(b"not a video")
    run = installed_tclsta.run("tclsta", "predict", "results/tiny", *map(str, videos), str(broken), "--json", cwd=workdir)
    assert run.returncode == 1
    results = json.loads(run.stdout)
    assert [r["video"] for r in results] == [*map(str, videos), str(broken)]
    for result in results[:2]:
        assert len(result["top5"]) == 4  # the tiny dataset has 4 classes
        assert abs(sum(r["score"] for r in result["top5"]) - 1) < 1e-4
        assert [r["score"] for r in result["top5"]] == sorted((r["score"] for r in result["top5"]), reverse=True)
    assert "broken.mp4" in results[2]["error"] and "broken.mp4" in run.stderr

    # the commands no rule runs, from the installed package too
    for command in (["export", "results/tiny", "--output", "bundle"], ["figures", "--print", "results/tiny"]):
        run = installed_tclsta.run("tclsta", *command, cwd=workdir)
        assert run.returncode == 0, (command, run.stderr[-3000:])
    assert (workdir / "bundle/bundle.json").is_file() and "tiny" in run.stdout

    # split: all, over the same videos: split N tests group N (disjoint), each split trains and scores on
    # its own (lighter training here), all read the shards made above, and one report gives the mean
    three = {k: v for k, v in TINY_SETTINGS.items() if k != "name"}
    three["split"] = "all"
    three["train"] = {**three["train"], "stages": [{"name": "joint", "epochs": 1, "lr": 0.003}], "test_frames": 2}
    three["collaborative"] = {"epochs": 2}
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    (workdir / "config.yaml").write_text(yaml.safe_dump({"datasets": {**config["datasets"], "three": three}}))
    run = installed_tclsta.snakemake("results/three/report.html", cwd=workdir)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(list((workdir / "logs/extract_frames").iterdir())) == 2 == len(list((workdir / "logs/flow").iterdir()))
    tests = []
    for split in (1, 2, 3):
        manifest = pd.read_csv(workdir / f"results/three/split{split}/manifest.csv")
        tests.append(set(manifest.loc[manifest["split"] == "test", "video_id"]))
        assert len(tests[-1]) == 8 and all(f"_g0{split}_" in video for video in tests[-1])
        assert json.loads((workdir / f"results/three/split{split}/metrics.json").read_text())["num_test_videos_scored"] == 8
    assert not (tests[0] & tests[1] or tests[1] & tests[2] or tests[0] & tests[2])
    table = pd.read_csv(workdir / "results/three/splits.csv", keep_default_na=False)
    top1 = table[(table["variant"] == "") & (table["metric"] == "top1")].set_index("model")
    assert set(top1.index) == {"rgb", "flow", "fused", "late_fusion", "collaborative"}
    splits = top1[["split1", "split2", "split3"]].astype(float)
    assert np.allclose(top1["mean"].astype(float), splits.mean(axis=1), atol=1e-4)
    assert np.allclose(top1["std"].astype(float), splits.std(axis=1, ddof=1), atol=1e-4)
    report = (workdir / "results/three/report.html").read_text()
    assert "splits 1, 2, 3" in report and f"{100 * float(top1.loc['fused', 'mean']):.1f} ± " in report
    for split in (1, 2, 3):
        assert f'href="split{split}/report.html"' in report and (workdir / f"results/three/split{split}/report.html").is_file()


def test_corrupt_video_fails_its_shard_by_name_and_keeps_the_rest(workdir):
    assert snakemake(workdir, "data/tiny/splits/classInd.txt").returncode == 0
    victim = workdir / "data/tiny/videos/DriftLeft/v_DriftLeft_g02_c01.avi"
    victim.write_bytes(b"\x00garbage" * 200)
    run = snakemake(workdir, "--keep-going", TARGET)
    assert run.returncode != 0
    logs = "".join(p.read_text() for p in (workdir / "logs/extract_frames").iterdir())
    assert str(victim.relative_to(workdir)) in logs and "corrupt" in logs
    built = sorted(p.name for p in shards_of(workdir).glob("shard_*.h5"))
    assert len(built) == 1  # the shard without the bad video completed
    assert not list(workdir.rglob(".*.tmp*"))  # nothing half-written


def test_skipped_bad_video_is_listed_in_rejected_csv_and_report(workdir):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["datasets"]["tiny"]["preprocess"]["on_bad_video"] = "skip"
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert snakemake(workdir, "data/tiny/splits/classInd.txt").returncode == 0
    victim = workdir / "data/tiny/videos/RedPatch/v_RedPatch_g02_c02.avi"
    victim.write_bytes(b"")
    run = snakemake(workdir, TARGET)
    assert run.returncode == 0, run.stderr[-3000:]
    rejected = (workdir / "results/tiny/rejected.csv").read_text()
    assert "RedPatch/v_RedPatch_g02_c02" in rejected and "empty file" in rejected
    report = (workdir / TARGET).read_text()
    assert 'id="rejected"' in report and "v_RedPatch_g02_c02" in report


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Jobs per rule from the 'Job stats' table of a dry run."""
    counts, in_table = {}, False
    for line in dry_run_output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
        elif in_table and len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
        elif in_table and parts and parts[0] == "total":
            break
    return counts


def test_new_videos_rebuild_only_their_shard_and_new_datasets_touch_nothing_else(workdir):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["datasets"]["tiny"]["preprocess"]["num_shards"] = 4
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert snakemake(workdir, TARGET).returncode == 0

    # Add one video to the training list.
    source = workdir / "data/tiny/videos/DriftLeft/v_DriftLeft_g02_c01.avi"
    added = source.with_name("v_DriftLeft_g03_c09.avi")
    shutil.copy(source, added)
    with open(workdir / "data/tiny/splits/trainlist01.txt", "a") as listing:
        listing.write("DriftLeft/v_DriftLeft_g03_c09.avi 2\n")
    # The dry run plans one shard at once, before the manifest job has run: each shard's input is
    # its own list of videos, rewritten only when the shard's rows change.
    lists = {p.name: p.stat().st_mtime_ns for p in (shards_of(workdir) / "lists").iterdir()}
    dry = snakemake(workdir, "-n", TARGET)
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts["extract_frames"] == counts["flow"] == counts["pack"] == 1, counts
    assert counts["manifest"] == 1 and counts["train_stream"] == 2
    changed = [p.name for p in (shards_of(workdir) / "lists").iterdir() if p.stat().st_mtime_ns != lists[p.name]]
    assert len(changed) == 1 and len(lists) == 4, (changed, lists)

    for log in (workdir / "logs/extract_frames").iterdir():
        log.unlink()
    run = snakemake(workdir, TARGET)
    assert run.returncode == 0, run.stderr[-3000:]
    logs = [p.read_text() for p in (workdir / "logs/extract_frames").iterdir()]
    assert len(logs) == 1 and "1 videos extracted" in logs[0] and "reused" in logs[0], logs

    # A second dataset adds jobs for itself only.
    config["datasets"]["other"] = {**config["datasets"]["tiny"], "root": "data/other/videos", "splits_dir": "data/other/splits"}
    # One over the same videos and settings (training differs) reads the same shards: no extraction or flow.
    config["datasets"]["again"] = {**config["datasets"]["tiny"], "train": {**config["datasets"]["tiny"]["train"], "seed": 1}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, "-n", TARGET, "results/other/report.html")
    output = dry.stdout + dry.stderr
    assert "dataset=other" in output and "dataset=tiny" not in output
    dry = snakemake(workdir, "-n", "results/again/report.html")
    counts = job_counts(dry.stdout + dry.stderr)
    assert dry.returncode == 0 and counts["train_stream"] == 2, dry.stderr[-3000:]
    assert not {"extract_frames", "flow", "pack"} & set(counts), counts


SLURM_SITE = {"TCLSTA_SLURM_PARTITION": "cpu", "TCLSTA_SLURM_GPU_PARTITION": "gpu", "TCLSTA_SLURM_GPU_MODEL": "a100"}


def dry_run_resources(output: str) -> dict[str, set[tuple]]:
    """Per rule of a ``snakemake -n`` run, the distinct (GPU command?, resources) of its jobs; a job runs on
    GPUs when its command starts through ``python -m tclsta.gpus``."""
    rules: dict[str, set[tuple]] = {}
    rule, resources = None, {}
    for line in output.splitlines():
        if match := re.match(r"(?:local)?(?:rule|checkpoint) (\w+):$", line):
            rule, resources = match.group(1), {}
        elif match := re.match(r"\s+resources: (.*)$", line):
            resources = dict(part.split("=", 1) for part in match.group(1).split(", "))
        elif line.startswith("Shell command: ") and rule:
            gpu_command = line.startswith("Shell command: python -m tclsta.gpus")
            rules.setdefault(rule, set()).add((gpu_command, tuple(sorted(resources.items()))))
            rule = None
    return rules


def documented_slurm_table() -> dict[str, dict[str, str]]:
    """docs/clusters.md's table of the SLURM jobs of results/ucf101/report.html: rule -> its row."""
    text = (REPO / "docs/clusters.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", text, flags=re.MULTILINE)
    columns = ("partition", "gpu", "mem_mb", "runtime")
    return {rule: dict(zip(columns, (cell.strip() for cell in cells.split("|")))) for rule, cells in rows}


def test_slurm_profile_resources_of_every_ucf101_job_match_the_documented_table(workdir, monkeypatch):
    """A dry run of results/ucf101/report.html (with its ablation) through workflow/profiles/slurm: every job
    whose command runs on GPUs gets one GPU of the site's model on the GPU partition as one task, every
    other job the CPU partition and no GPU, and docs/clusters.md's table says what each rule gets."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert "groups" not in profile  # no group ties a GPU job to CPU jobs
    videos, splits = workdir / "data/UCF-101/Archery", workdir / "data/ucfTrainTestlist"
    videos.mkdir(parents=True)
    splits.mkdir(parents=True)
    (splits / "classInd.txt").write_text("1 Archery\n")
    for number, listing in ((1, "trainlist01.txt"), (2, "testlist01.txt")):
        (videos / f"v_Archery_g0{number}_c01.avi").touch()
        (splits / listing).write_text(f"Archery/v_Archery_g0{number}_c01.avi{' 1' * (number == 1)}\n")
    config = {"datasets": {"ucf101": {"format": "ucf101", "root": "data/UCF-101", "splits_dir": "data/ucfTrainTestlist",
                                      "ablation": True}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    for name, value in SLURM_SITE.items():
        monkeypatch.setenv(name, value)
    run = snakemake(workdir, "--profile", str(REPO / "workflow/profiles/slurm"), "-n", "results/ucf101/report.html")
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = dry_run_resources(run.stdout + run.stderr)
    assert {"flow", "train_stream", "ablation_train_stream", "ablation_score_stream", "ablation_features", "report"} <= set(jobs)

    wrong, seen = [], {}
    for rule, variants in jobs.items():
        assert len(variants) == 1, f"{rule}: its jobs ask for different resources: {variants}"
        (gpu_command, items), = variants
        resources = dict(items)
        on_gpu = resources["slurm_partition"] == SLURM_SITE["TCLSTA_SLURM_GPU_PARTITION"]
        gpus = resources.get("gpu", "0")
        if gpu_command != on_gpu or gpu_command != (gpus != "0"):
            wrong.append(f"{rule}: {'GPU' if gpu_command else 'CPU'} command on partition {resources['slurm_partition']} with gpu={gpus}")
        if gpu_command and (resources.get("gpu_model") != "a100" or resources.get("tasks_per_gpu") != "0"):
            wrong.append(f"{rule}: GPU job without gpu_model or with tasks per GPU: {resources}")
        seen[rule] = {"partition": "GPU" if on_gpu else "CPU", "gpu": f"{gpus} ({resources.get('gpu_model')})" if gpus != "0" else "none",
                      "mem_mb": resources["mem_mb"], "runtime": resources["runtime"]}
    assert not wrong, "\n".join(wrong)
    assert documented_slurm_table() == seen, "docs/clusters.md's SLURM table differs from the dry run"


def test_video_and_class_names_snakemake_reads_as_patterns_are_data(workdir, tiny_videos):
    """A folder dataset whose class folders and video files hold <, >, {, }, spaces and non-ASCII letters
    builds its DAG and extracts every video (those names are no inputs of the DAG, they stay in the shard list)."""
    names = {"Drift <a>": ["v_<x>_g01_c01.avi", "plain_g02_c01.avi"], "Patch {z}": ["p_{y}_g01_c01.avi", "naïve ü_g02_c01.avi"]}
    sources = sorted(tiny_videos.glob("videos/*/*.avi"))
    for (folder, files), offset in zip(names.items(), (0, len(sources) // 2)):
        (workdir / "data/names" / folder).mkdir(parents=True)
        for index, name in enumerate(files):
            shutil.copy(sources[offset + index], workdir / "data/names" / folder / name)
    entry = {k: v for k, v in TINY_SETTINGS.items() if k not in ("name", "splits_dir")}
    entry.update(format="folder", root="data/names", test_fraction=0.5, preprocess={**entry["preprocess"], "num_shards": 1})
    (workdir / "config.yaml").write_text(yaml.safe_dump({"datasets": {"names": entry}}))
    shards = shards_of(workdir, "names")
    run = snakemake(workdir, "--notemp", str(shards.relative_to(workdir) / "rejected/shard_0.csv"))  # manifest and extraction
    assert run.returncode == 0, run.stderr[-3000:]
    with ShardReader(shards / "frames_0.h5") as reader:
        assert sorted(reader.video_ids) == sorted(f"{folder}/{Path(name).stem}" for folder, files in names.items() for name in files)
