rule fuse:
    """Learn the fusion weights of the two streams on the validation videos (never the test split)."""
    input:
        manifest="results/{dataset}/manifest.csv",
        rgb="results/{dataset}/scores/rgb.csv",
        flow="results/{dataset}/scores/flow.csv",
    output:
        "results/{dataset}/fusion.json",
    log:
        "logs/fuse/{dataset}.log",
    benchmark:
        "results/{dataset}/benchmarks/fuse/{dataset}.tsv"
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: settings(w.dataset, fusion=None),
    shell:
        "python -m tclsta fuse --settings {params.settings:q} --manifest {input.manifest}"
        " --rgb {input.rgb} --flow {input.flow} {output} 2> {log}"


rule collect_rejected:
    """All videos left out by preprocessing (on_bad_video: skip), with the reason."""
    input:
        rejected_lists,
    output:
        "results/{dataset}/rejected.csv",
    log:
        "logs/collect_rejected/{dataset}.log",
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m tclsta rejected {output} {input} 2> {log}"


rule evaluate:
    """Top-1, top-5, mean class accuracy and confusion matrices on the test split."""
    input:
        manifest="results/{dataset}/manifest.csv",
        rgb="results/{dataset}/scores/rgb.csv",
        flow="results/{dataset}/scores/flow.csv",
        fusion="results/{dataset}/fusion.json",
        rejected="results/{dataset}/rejected.csv",
        collaborative="results/{dataset}/scores/collaborative.csv",
    output:
        "results/{dataset}/metrics.json",
    log:
        "logs/evaluate/{dataset}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate/{dataset}.tsv"
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: settings(w.dataset, demo=None, fusion=None),
    shell:
        "python -m tclsta evaluate --settings {params.settings:q} --manifest {input.manifest}"
        " --rgb {input.rgb} --flow {input.flow} --fusion {input.fusion} --rejected {input.rejected}"
        " --collaborative {input.collaborative} {output} 2> {log}"


rule report:
    """The self-contained HTML report."""
    input:
        metrics="results/{dataset}/metrics.json",
        manifest="results/{dataset}/manifest.csv",
        rgb_history="results/{dataset}/models/rgb_history.csv",
        flow_history="results/{dataset}/models/flow_history.csv",
    output:
        "results/{dataset}/report.html",
    log:
        "logs/report/{dataset}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: settings(
            w.dataset,
            demo=None,
            preprocess=None,
            flow=None,
            model=None,
            train=None,
            fusion=None,
        ),
    shell:
        "python -m tclsta report --settings {params.settings:q} --metrics {input.metrics} --manifest {input.manifest}"
        " --rgb-history {input.rgb_history} --flow-history {input.flow_history}"
        " --benchmarks-dir results/{wildcards.dataset}/benchmarks {output} 2> {log}"
