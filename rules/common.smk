import functools
import os

from snakemake.logging import logger

from tclsta.config import dataset_settings, for_stream, parse_dataset
from tclsta.datasets import dag_files, manifest_sources, missing_data
from tclsta.data.manifest import (
    build_manifest,
    MULTILABEL_DEMO_CSV,
    read_manifest,
    ucf_split_files,
    write_shard_list,
)
from tclsta.errors import TclstaError
from tclsta.pretrained import imagenet_weights_path
from tclsta.settings import stage_settings_json

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
    return in_module(f"results/{wildcards.dataset}/shards/shard_{wildcards.shard}.h5")


# The Apptainer image of the flow step (OpenCV built with CUDA), built from workflow/containers/flow.def
# next to it; `--sdm apptainer` runs the flow rule in it, the other rules as they are.
FLOW_CONTAINER = os.path.normpath(
    os.path.join(
        str(workflow.current_basedir), "..", "workflow", "containers", "flow.sif"
    )
)


def datasets_pattern(keep):
    """A wildcard pattern of the datasets whose format and demo kind ``keep`` accepts (one that matches none if there are none)."""
    chosen = [
        d
        for d in DATASETS
        if keep(
            config["datasets"][d]["format"],
            dataset_settings(config, d).get("demo", {}).get("kind"),
        )
    ]
    return "|".join(chosen or ["__none__"])


# Generated demos: in the UCF101 layout, or (kind multilabel) with a labels CSV.
DEMO_DATASETS = datasets_pattern(lambda f, kind: f == "demo" and kind != "multilabel")
MULTILABEL_DEMO_DATASETS = datasets_pattern(
    lambda f, kind: f == "demo" and kind == "multilabel"
)
# Videos go through extraction, flow and packing; existing rawframes are imported into shards.
VIDEO_DATASETS = datasets_pattern(lambda f, kind: f != "rawframes")
RAWFRAME_DATASETS = datasets_pattern(lambda f, kind: f == "rawframes")


# Any dataset name matches: one not in the config stops the DAG with a message naming those that are.
wildcard_constraints:
    dataset=r"[^/]+",
    shard=r"\d+",
    stream="rgb|flow",


def settings(dataset, stage):
    """`--settings` for `python -m tclsta <stage>`, the config keys that stage declares
    (tclsta/settings.py): a job re-runs when one of them changes, and only then."""
    return stage_settings_json(config, dataset, stage)


def typed(dataset):
    """The dataset's settings as config dataclasses (defaults filled in)."""
    return parse_dataset(dataset_settings(config, dataset))


def flow_gpus(wildcards):
    """GPUs the flow job asks the scheduler for: one for an explicit GPU backend.
    ("auto" asks for none and uses a GPU only where the job happens to see one.)"""
    return 1 if typed(wildcards.dataset).flow.backend in ("torch", "opencv-cuda") else 0


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


def shard_list_path(dataset, shard):
    return f"results/{dataset}/shard_lists/shard_{shard}.csv"


_LISTED = set()


def _write_shard_lists(dataset, manifest):
    """Every shard list of the dataset, written before Snakemake first looks for one:
    it caches a folder's listing at its first look, so a list written after that
    would count as missing."""
    if (dataset, id(manifest)) in _LISTED:
        return
    for shard in shard_ids(dataset):
        write_shard_list(manifest, shard, in_module(shard_list_path(dataset, shard)))
    _LISTED.add((dataset, id(manifest)))


def shard_inputs(wildcards):
    """A shard job's inputs: its list of videos and their files (rawframes: folders).

    The list (results/<dataset>/shard_lists/shard_<k>.csv) is made while the DAG is built,
    from the same sources as the manifest, and rewritten only when the shard's own rows
    change: adding a video plans only its shard's jobs, in a dry run too. Until the sources
    exist, the shard waits for the manifest job. Missing video files are left to the
    extraction stage, which names them (or, with on_bad_video: skip, lists them as rejected);
    files whose names Snakemake would read as patterns are extracted but are no inputs (dag_files).
    Rules name the list through params (shard_list_path): while the shard waits for the
    manifest job, Snakemake replaces these inputs by that job's output, which has no names.
    """
    manifest = _manifest_now(wildcards.dataset)
    if manifest is None:
        path = checkpoints.manifest.get(dataset=wildcards.dataset).output[0]
        manifest = _manifest_table(path, os.path.getmtime(path))
    _write_shard_lists(wildcards.dataset, manifest)
    rows = manifest[manifest["shard"] == int(wildcards.shard)]
    return {
        "shard_list": shard_list_path(wildcards.dataset, wildcards.shard),
        "videos": [local(p) for p in dag_files(p for p in rows["path"] if os.path.exists(p))],
    }


def shard_ids(dataset):
    return range(typed(dataset).preprocess.num_shards)


def packed_shards(wildcards):
    return expand(
        "results/{dataset}/shards/shard_{shard}.h5",
        dataset=wildcards.dataset,
        shard=shard_ids(wildcards.dataset),
    )


def rejected_lists(wildcards):
    return expand(
        "results/{dataset}/rejected/shard_{shard}.csv",
        dataset=wildcards.dataset,
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
