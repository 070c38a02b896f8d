rule split_report:
    """Each split's test results side by side, with their mean and standard deviation across
    splits (a dataset entry with split: all or a list; tclsta/split_report.py)."""
    input:
        split_results,
    output:
        html="results/{dataset}/report.html",
        table="results/{dataset}/splits.csv",
    log:
        "logs/split_report/{dataset}.log",
    wildcard_constraints:
        dataset=SPLIT_DATASETS,
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        splits=lambda w: [
            in_module(f"results/{run}") for run in runs_of(config, w.dataset)
        ],
        ablation=lambda w: (
            "--ablation" if typed(runs_of(config, w.dataset)[0]).ablation else ""
        ),
    shell:
        "python -m tclsta split-report --dataset {wildcards.dataset} --splits {params.splits}"
        " {params.ablation} --table {output.table} --output {output.html} 2> {log}"
