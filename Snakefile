"""TCLSTA: labelled videos -> two-stream attention classifier -> results/<dataset>/report.html."""

import importlib.util
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# Many jobs read the same shards, often on a shared filesystem (NFS, Lustre) where HDF5's file
# locks fail or serialise readers; a shard is written once under a temporary name and renamed,
# so no reader needs a lock. Passed on to every job, local or remote.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


envvars:
    "HDF5_USE_FILE_LOCKING",


report: "workflow/report/workflow.rst"


# The rules plan the DAG with tclsta's own code (manifest, shard lists, each stage's settings).
if importlib.util.find_spec("tclsta") is None:
    raise WorkflowError(
        "TCLSTA's workflow needs the tclsta package in the Python that runs Snakemake: "
        "pip install tclsta, or pip install -e <the TCLSTA repository>"
    )

from tclsta.config import check_workflow_config

# workflow/schemas/config.schema.yaml with the project's checks: finite numbers, integers not
# floats, and no key given twice in a config file (Snakemake's own loader keeps the last).
check_workflow_config(config, workflow.configfiles)


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
