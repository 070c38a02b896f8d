import json

from tclsta.config import dataset_settings

IDENTITY_KEYS = ("name", "format", "root", "splits_dir", "split")
DATASETS = list(config["datasets"])
DEMO_DATASETS = [d for d in DATASETS if config["datasets"][d]["format"] == "demo"] or [
    "__none__"
]


wildcard_constraints:
    dataset="|".join(DATASETS),
    shard=r"\d+",
    stream="rgb|flow",


def settings(dataset, **sections):
    """The dataset's settings as JSON for `--settings`: identity keys plus the named sections.

    A section maps to None (all its keys) or a list of keys, so that a rule is
    re-run (Snakemake's params trigger) only when a setting it uses changes.
    """
    resolved = dataset_settings(config, dataset)
    chosen = {key: resolved[key] for key in IDENTITY_KEYS if key in resolved}
    for section, keys in sections.items():
        values = resolved.get(section, {})
        chosen[section] = (
            values if keys is None else {k: values[k] for k in keys if k in values}
        )
    return json.dumps(chosen, sort_keys=True)


def split_files(wildcards):
    """The split files a manifest is built from (made by the demo rule for demo datasets)."""
    resolved = dataset_settings(config, wildcards.dataset)
    split = resolved.get("split", 1)
    names = ["classInd.txt", f"trainlist{split:02d}.txt", f"testlist{split:02d}.txt"]
    return [f"{resolved['splits_dir']}/{name}" for name in names]


def shard_ids(dataset):
    return range(dataset_settings(config, dataset)["preprocess"].get("num_shards", 16))


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
