import functools
import os

from snakemake.logging import logger

from tclsta.config import dataset_settings, for_stream, parse_dataset, runs_of
from tclsta.datasets import dag_files, manifest_sources, missing_data
from tclsta.data.manifest import (
    all_ucf_split_files,
    build_manifest,
    MULTILABEL_DEMO_CSV,
    read_manifest,
    write_shard_list,
)
from tclsta.errors import TclstaError
from tclsta.pretrained import imagenet_weights_path
from tclsta.settings import stage_settings_json
from tclsta.shared import shard_groups, shared_manifest, write_key_file

DATASETS = list(config["datasets"])

# Used as a module with `prefix: P` (or replace_prefix), Snakemake moves each relative input, output,
# log and benchmark of these rules under P. What the rules' own code writes, or passes to a job through
# params, is moved the same way here (captured now: while the DAG is built, the host's paths are current).
# The user's files (the config's data paths, resources/ with the ImageNet weights) stay where the host's
# config says, marked local so that Snakemake does not move them either.
_MODULE_PATHS = workflow.modifier.path_modifier


def in_module(path):
    """Where the module's file ``path`` (results/..., logs/...) is: under the module's prefix, if any."""
    return _MODULE_PATHS.replace_prefix(path)


def results_dir(wildcards):
    return in_module(f"results/{wildcards.dataset}")


def previous_shard(wildcards):
    """The shard an earlier run packed (unchanged videos are copied from it)."""
    return in_module(f"work/shards/{wildcards.key}/shard_{wildcards.shard}.h5")


# Each entry's runs (the dataset, or with several splits results/<dataset>/split<N>/) by the key of
# the shards they read, work/shards/<key>/: runs over the same videos and settings share them (tclsta/shared.py).
SHARD_RUNS = shard_groups(config)
RUN_SHARDS = {run: key for key, runs in SHARD_RUNS.items() for run in runs}
# The Apptainer image of the flow step (OpenCV built with CUDA), built from workflow/containers/flow.def
# next to it; `--sdm apptainer` runs the flow rule in it, the other rules as they are.
FLOW_CONTAINER = os.path.normpath(
    os.path.join(
        str(workflow.current_basedir), "..", "workflow", "containers", "flow.sif"
    )
)


def datasets_pattern(keep):
    """A wildcard pattern of the datasets whose format and demo kind ``keep`` accepts (one that matches none if there are none)."""
    return names_pattern(
        [
            d
            for d in DATASETS
            if keep(
                config["datasets"][d]["format"],
                dataset_settings(config, d).get("demo", {}).get("kind"),
            )
        ]
    )


def typed(dataset):
    """The dataset's settings as config dataclasses (defaults filled in)."""
    return parse_dataset(dataset_settings(config, dataset))


def names_pattern(names):
    """A wildcard pattern of exactly these names (one that matches none if there are none)."""
    return "|".join(names or ["__none__"])


def shards_pattern(keep):
    """A wildcard pattern of the shard keys whose runs' format ``keep`` accepts."""
    return names_pattern(
        [k for k, runs in SHARD_RUNS.items() if keep(typed(runs[0]).format)]
    )


# Generated demos: in the UCF101 layout, or (kind multilabel) with a labels CSV.
DEMO_DATASETS = datasets_pattern(lambda f, kind: f == "demo" and kind != "multilabel")
MULTILABEL_DEMO_DATASETS = datasets_pattern(
    lambda f, kind: f == "demo" and kind == "multilabel"
)
# Datasets with several splits: results/<dataset>/report.html sets the splits side by side.
SPLIT_DATASETS = names_pattern([d for d in DATASETS if runs_of(config, d) != [d]])
# Videos go through extraction, flow and packing; existing rawframes are imported into shards.
VIDEO_SHARDS = shards_pattern(lambda f: f != "rawframes")
RAWFRAME_SHARDS = shards_pattern(lambda f: f == "rawframes")


# Any dataset name (or <dataset>/split<N>) matches: one not in the config stops the DAG with a
# message naming those that are. A dataset with several splits matches only as its splits (its own
# report is the split_report rule's).
wildcard_constraints:
    dataset=rf"(?!({SPLIT_DATASETS})(?![\w-])(?!/split\d))[^/]+(/split\d+)?",
    key=r"[0-9a-f]{12}",
    shard=r"\d+",
    stream="rgb|flow",


def settings(dataset, stage):
    """`--settings` for `python -m tclsta <stage>`, the config keys that stage declares
    (tclsta/settings.py): a job re-runs when one of them changes, and only then."""
    return stage_settings_json(config, dataset, stage)


def shards_dir(run):
    """The folder of the shards a run reads, work/shards/<key>/ (tclsta/shared.py)."""
    typed(run)  # a name that is not a run stops here, saying what the runs are
    return f"work/shards/{RUN_SHARDS[run]}"


def shard_settings(key, stage):
    """`--settings` of a job on shared shards: its first run's, named after the shards' folder."""
    return stage_settings_json(config, SHARD_RUNS[key][0], stage, f"work/shards/{key}")


def flow_gpus(wildcards):
    """GPUs the flow job asks the scheduler for: one for an explicit GPU backend.
    ("auto" asks for none and uses a GPU only where the job happens to see one.)"""
    backend = typed(SHARD_RUNS[wildcards.key][0]).flow.backend
    return 1 if backend in ("torch", "opencv-cuda") else 0


def ablation_for_report(wildcards):
    """The ablation table, for datasets whose entry sets `ablation: true`."""
    wanted = typed(wildcards.dataset).ablation
    return [f"results/{wildcards.dataset}/ablation.csv"] if wanted else []


def manifest_inputs(wildcards):
    """What a manifest is built from; a dataset whose data is not there stops the DAG
    here with one message saying where to get it (tclsta.datasets)."""
    return [
        local(p) for p in manifest_sources(dataset_settings(config, wildcards.dataset))
    ]


def split_results(wildcards):
    """The files the report of a dataset with several splits reads: each split's metrics, and its
    ablation table when the entry asks for one, and each split's own report (it links them).
    """
    runs = runs_of(config, wildcards.dataset)
    names = ["metrics.json", "report.html"]
    if typed(runs[0]).ablation:
        names.append("ablation.csv")
    return [f"results/{run}/{name}" for run in runs for name in names]


def reports_of_present_datasets(wildcards):
    """The default target: the report of every configured dataset whose data is there.
    The others are named, with the target that says how to get their data."""
    present = []
    for name in config["datasets"]:
        missing = missing_data(dataset_settings(config, name))
        if missing:
            logger.warning(
                f"Skipping dataset '{name}', its data is not there: {missing[0]}. "
                f"`snakemake results/{name}/report.html` says how to get it."
            )
        else:
            present.append(name)
    return expand("results/{dataset}/report.html", dataset=present)


@functools.lru_cache(maxsize=64)
def _manifest_table(path, mtime):
    return read_manifest(path)


@functools.lru_cache(maxsize=64)
def _manifest_now(dataset):
    """The dataset's manifest as its sources say now; None while they are missing (demo
    videos not generated yet) or faulty (the manifest job then names the fault)."""
    try:
        return build_manifest(parse_dataset(dataset_settings(config, dataset)))
    except (TclstaError, OSError):
        return None


def shard_list_path(key, shard):
    return f"work/shards/{key}/lists/shard_{shard}.csv"


_LISTED = {}


def _listed_videos(key, manifests):
    """The videos of the shards ``key`` (every video of their runs' manifests), with every shard
    list written before Snakemake first looks for one: it caches a folder's listing at its first
    look, so a list written after that would count as missing. key.json says what the key stands for.
    """
    listed = (key, tuple(map(id, manifests)))
    if listed not in _LISTED:
        videos = shared_manifest(manifests)
        for shard in shard_ids(SHARD_RUNS[key][0]):
            write_shard_list(videos, shard, in_module(shard_list_path(key, shard)))
        first = dataset_settings(config, SHARD_RUNS[key][0])
        write_key_file(in_module(f"work/shards/{key}"), first, SHARD_RUNS[key])
        _LISTED[listed] = videos
    return _LISTED[listed]


def shard_inputs(wildcards):
    """A shard job's inputs: its list of videos and their files (rawframes: folders).

    The list (work/shards/<key>/lists/shard_<k>.csv) is made while the DAG is built, from the
    same sources as the manifests of the runs that share the shards, and rewritten only when the
    shard's own rows change: adding a video plans only its shard's jobs, in a dry run too, and a
    run whose videos the shards hold already plans none. Until the sources exist, the shard waits
    for the manifest jobs. Missing video files are left to the extraction stage, which names them
    (or, with on_bad_video: skip, lists them as rejected). Rules name the list through params
    (shard_list_path): while the shard waits for a manifest job, Snakemake replaces these inputs
    by that job's output, which has no names.
    """
    manifests = []
    for run in SHARD_RUNS[wildcards.key]:
        manifest = _manifest_now(run)
        if manifest is None:
            path = checkpoints.manifest.get(dataset=run).output[0]
            manifest = _manifest_table(path, os.path.getmtime(path))
        manifests.append(manifest)
    videos = _listed_videos(wildcards.key, manifests)
    rows = videos[videos["shard"] == int(wildcards.shard)]
    return {
        "shard_list": shard_list_path(wildcards.key, wildcards.shard),
        "videos": [
            local(p) for p in dag_files(p for p in rows["path"] if os.path.exists(p))
        ],
    }


def shard_ids(dataset):
    return range(typed(dataset).preprocess.num_shards)


def packed_shards(wildcards):
    return expand(
        "{shards}/shard_{shard}.h5",
        shards=shards_dir(wildcards.dataset),
        shard=shard_ids(wildcards.dataset),
    )


def rejected_lists(wildcards):
    return expand(
        "{shards}/rejected/shard_{shard}.csv",
        shards=shards_dir(wildcards.dataset),
        shard=shard_ids(wildcards.dataset),
    )


def pretrained_weights(wildcards):
    """The weights file a stream starts from: resources/<torchvision file> for
    model.pretrained: imagenet (fetched by the pretrained_weights rule), a local path as given, or nothing.
    """
    model = for_stream(
        parse_dataset(dataset_settings(config, wildcards.dataset)).model,
        wildcards.stream,
    )
    if model.pretrained is None:
        return []
    if model.pretrained == "imagenet":
        return [local(str(imagenet_weights_path(model.backbone)))]
    return [local(model.pretrained)]
