rule train_stream:
    """Train the static (rgb) or motion (flow) stream with spatial and temporal attention."""
    input:
        manifest="results/{dataset}/manifest.csv",
        shards=packed_shards,
    output:
        checkpoint="results/{dataset}/models/{stream}.pt",
        history="results/{dataset}/models/{stream}_history.csv",
    log:
        "logs/train_stream/{dataset}_{stream}.log",
    benchmark:
        "results/{dataset}/benchmarks/train_stream/{dataset}_{stream}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        mem_mb=16000,
        runtime=1440,
        gpu=1,
    params:
        settings=lambda w: settings(
            w.dataset, preprocess=None, flow=None, model=None, train=None
        ),
    shell:
        "python -m tclsta train --settings {params.settings:q} --threads {threads} --stream {wildcards.stream}"
        " --manifest {input.manifest} --shards {input.shards}"
        " --checkpoint {output.checkpoint} --history {output.history} 2> {log}"


rule score_stream:
    """Video-level scores of a trained stream on the validation and test videos."""
    input:
        manifest="results/{dataset}/manifest.csv",
        shards=packed_shards,
        checkpoint="results/{dataset}/models/{stream}.pt",
    output:
        "results/{dataset}/scores/{stream}.csv",
    log:
        "logs/score_stream/{dataset}_{stream}.log",
    benchmark:
        "results/{dataset}/benchmarks/score_stream/{dataset}_{stream}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        settings=lambda w: settings(
            w.dataset,
            train=["test_frames", "crop_size", "batch_size", "num_workers", "device"],
        ),
    shell:
        "python -m tclsta score --settings {params.settings:q} --threads {threads}"
        " --manifest {input.manifest} --shards {input.shards}"
        " --checkpoint {input.checkpoint} --output {output} 2> {log}"
