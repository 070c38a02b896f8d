rule train_stream:
    """Train the static (rgb) or motion (flow) stream with spatial and temporal attention.
    Resumes after an interruption; with resources gpu > 1, one process per GPU."""
    input:
        manifest="results/{dataset}/manifest.csv",
        shards=packed_shards,
        weights=pretrained_weights,
    output:
        checkpoint="results/{dataset}/models/{stream}.pt",
        history="results/{dataset}/models/{stream}_history.csv",
        history_json="results/{dataset}/models/{stream}_history.json",
    log:
        "logs/train_stream/{dataset}_{stream}.log",
    benchmark:
        "results/{dataset}/benchmarks/train_stream/{dataset}_{stream}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=1440,
        gpu=1,
    params:
        settings=lambda w: settings(w.dataset, "train"),
    shell:
        # more than one GPU: one process per GPU, started by torchrun (DistributedDataParallel)
        # its own GPUs on a workstation (tclsta.gpus; unchanged under SLURM and without GPUs)
        "python -m tclsta.gpus {resources.gpu} --"
        " $([ {resources.gpu} -gt 1 ] && echo 'torchrun --standalone --nproc_per_node {resources.gpu}' || echo python)"
        " -m tclsta train --settings {params.settings:q} --threads {threads} --stream {wildcards.stream}"
        " --manifest {input.manifest} --shards {input.shards}"
        " --output {output.checkpoint} --history {output.history} 2> {log}"


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
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=240,
        gpu=1,
    params:
        settings=lambda w: settings(w.dataset, "score"),
    shell:
        "python -m tclsta.gpus {resources.gpu} -- python -m tclsta score --settings {params.settings:q} --threads {threads}"
        " --manifest {input.manifest} --shards {input.shards}"
        " --checkpoint {input.checkpoint} --output {output} 2> {log}"
