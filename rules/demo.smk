rule demo_dataset:
    """Generate a synthetic demo dataset (format: demo) in the UCF101 layout under data/<dataset>/."""
    output:
        [local(f"data/{{dataset}}/splits/{name}") for name in all_ucf_split_files()],
    log:
        "logs/demo_dataset/{dataset}.log",
    benchmark:
        "results/{dataset}/benchmarks/demo_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=DEMO_DATASETS,
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        settings=lambda w: settings(w.dataset, "demo"),
    shell:
        "python -m tclsta demo --settings {params.settings:q} 2> {log}"


use rule demo_dataset as multilabel_demo_dataset with:
    output:
        f"data/{{dataset}}/splits/{MULTILABEL_DEMO_CSV}",
    log:
        "logs/multilabel_demo_dataset/{dataset}.log",
    benchmark:
        "results/{dataset}/benchmarks/multilabel_demo_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=MULTILABEL_DEMO_DATASETS,
