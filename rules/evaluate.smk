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
        settings=lambda w: settings(w.dataset, "fuse"),
    shell:
        "python -m tclsta fuse --settings {params.settings:q} --manifest {input.manifest}"
        " --rgb {input.rgb} --flow {input.flow} --output {output} 2> {log}"


rule collect_rejected:
    """All videos left out by preprocessing (on_bad_video: skip), with the reason."""
    input:
        lists=rejected_lists,
        manifest="results/{dataset}/manifest.csv",
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
        "python -m tclsta rejected --manifest {input.manifest} --output {output} {input.lists} 2> {log}"


rule evaluate:
    """Top-1, top-5, mean class accuracy and confusion matrices on the test split."""
    input:
        manifest="results/{dataset}/manifest.csv",
        rgb="results/{dataset}/scores/rgb.csv",
        flow="results/{dataset}/scores/flow.csv",
        fusion="results/{dataset}/fusion.json",
        rejected="results/{dataset}/rejected.csv",
        collaborative="results/{dataset}/scores/collaborative.csv",
        model_choice="results/{dataset}/model_choice.json",
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
        settings=lambda w: settings(w.dataset, "evaluate"),
    shell:
        "python -m tclsta evaluate --settings {params.settings:q} --manifest {input.manifest}"
        " --rgb {input.rgb} --flow {input.flow} --fusion {input.fusion} --rejected {input.rejected}"
        " --collaborative {input.collaborative} --model-choice {input.model_choice} --output {output} 2> {log}"


rule attention:
    """Spatial and temporal attention of both streams on a few test videos, with the fused top-5."""
    input:
        manifest="results/{dataset}/manifest.csv",
        shards=packed_shards,
        rgb="results/{dataset}/models/rgb.pt",
        flow="results/{dataset}/models/flow.pt",
        fusion="results/{dataset}/fusion.json",
    output:
        json="results/{dataset}/attention.json",
        png=report(
            "results/{dataset}/plots/attention.png",
            caption="../workflow/report/attention.rst",
            category="Attention",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "attention"},
        ),
    log:
        "logs/attention/{dataset}.log",
    benchmark:
        "results/{dataset}/benchmarks/attention/{dataset}.tsv"
    conda:
        "../envs/report.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=lambda w: settings(w.dataset, "attention"),
        results=results_dir,
    shell:
        # a few videos: the CPU is enough, and needs no GPU from the scheduler
        "python -m tclsta attention --settings {params.settings:q} --results {params.results}"
        " --manifest {input.manifest} --shards {input.shards}"
        " --device cpu --threads {threads} --output {output.json} --png {output.png} 2> {log}"


rule report:
    """The self-contained HTML report, and its key figures as PNG files for `snakemake --report`."""
    input:
        metrics="results/{dataset}/metrics.json",
        manifest="results/{dataset}/manifest.csv",
        rgb_history="results/{dataset}/models/rgb_history.csv",
        flow_history="results/{dataset}/models/flow_history.csv",
        attention_json="results/{dataset}/attention.json",
        attention_png="results/{dataset}/plots/attention.png",
        ablation=ablation_for_report,
    output:
        html="results/{dataset}/report.html",
        confusion=report(
            "results/{dataset}/plots/confusion.png",
            caption="../workflow/report/confusion.rst",
            category="Evaluation",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "confusion matrix"},
        ),
        fusion_weights=report(
            "results/{dataset}/plots/fusion_weights.png",
            caption="../workflow/report/fusion_weights.rst",
            category="Evaluation",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "fusion weights"},
        ),
        training=report(
            "results/{dataset}/plots/training.png",
            caption="../workflow/report/training.rst",
            category="Training",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "training curves"},
        ),
    log:
        "logs/report/{dataset}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: settings(w.dataset, "report"),
        results=results_dir,
        shards=lambda w: in_module(shards_dir(w.dataset)),
    shell:
        "python -m tclsta report --settings {params.settings:q} --metrics {input.metrics} --manifest {input.manifest}"
        " --rgb-history {input.rgb_history} --flow-history {input.flow_history}"
        " --benchmarks-dir {params.results}/benchmarks {params.shards}/benchmarks"
        " --attention-json {input.attention_json} --attention-png {input.attention_png}"
        " --ablation {input.ablation}"
        " --plot confusion {output.confusion} --plot fusion_weights {output.fusion_weights}"
        " --plot training {output.training} --output {output.html} 2> {log}"
