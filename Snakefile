"""TCLSTA: labelled videos -> two-stream attention classifier -> results/<dataset>/report.html."""

import os

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")

# Many jobs read the same shards, often on a shared filesystem (NFS, Lustre) where HDF5's file
# locks fail or serialise readers; a shard is written once under a temporary name and renamed,
# so no reader needs a lock. Passed on to every job, local or remote.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


envvars:
    "HDF5_USE_FILE_LOCKING",


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/preprocess.smk"
include: "rules/weights.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/collaborative.smk"
include: "rules/ablation.smk"
include: "rules/splits.smk"


rule all:
    default_target: True
    input:
        reports_of_present_datasets,
