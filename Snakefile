"""TCLSTA: labelled videos -> two-stream attention classifier -> results/<dataset>/report.html."""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/preprocess.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/collaborative.smk"
include: "rules/ablation.smk"


rule all:
    default_target: True
    input:
        expand("results/{dataset}/report.html", dataset=list(config["datasets"])),
