rule demo_dataset:
    """Generate a synthetic demo dataset (format: demo) in the UCF101 layout under data/<dataset>/."""
    output:
        [f"data/{{dataset}}/splits/{name}" for name in all_ucf_split_files()],
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
