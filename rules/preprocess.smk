checkpoint manifest:
    """One row per video: id, path, class, label, split (train/val/test), shard."""
    input:
        manifest_inputs,
    output:
        "results/{dataset}/manifest.csv",
    log:
        "logs/manifest/{dataset}.log",
    benchmark:
        "results/{dataset}/benchmarks/manifest/{dataset}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: settings(w.dataset, "manifest"),
    shell:
        "python -m tclsta manifest --settings {params.settings:q} --output {output} 2> {log}"


rule extract_frames:
    """Decode and resize the videos of one shard with ffmpeg; frames kept as JPEG.

    Its inputs are the shard's list of videos and their files, so adding videos re-runs
    only their shards, and videos the previous packed shard holds unchanged are copied.
    Shards are shared by every run over the same videos and settings (work/shards/<key>/).
    """
    input:
        unpack(shard_inputs),
    output:
        frames=temp("work/shards/{key}/frames_{shard}.h5"),
        rejected="work/shards/{key}/rejected/shard_{shard}.csv",
    log:
        "logs/extract_frames/{key}_{shard}.log",
    benchmark:
        "work/shards/{key}/benchmarks/extract_frames/{shard}.tsv"
    wildcard_constraints:
        key=VIDEO_SHARDS,
    conda:
        "../envs/preprocess.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=120,
    params:
        settings=lambda w: shard_settings(w.key, "extract"),
        previous=previous_shard,
        shard_list=lambda w: in_module(shard_list_path(w.key, w.shard)),
    shell:
        "python -m tclsta extract --settings {params.settings:q} --manifest {params.shard_list} --shard {wildcards.shard}"
        " --workers {threads} --previous {params.previous} --output {output.frames} --rejected {output.rejected} 2> {log}"


rule flow:
    """TV-L1 optical flow of one shard: OpenCV (CPU processes or CUDA) or batched torch."""
    input:
        "work/shards/{key}/frames_{shard}.h5",
    output:
        temp("work/shards/{key}/flow_{shard}.h5"),
    log:
        "logs/flow/{key}_{shard}.log",
    benchmark:
        "work/shards/{key}/benchmarks/flow/{shard}.tsv"
    conda:
        "../envs/preprocess.yaml"
    container:
        FLOW_CONTAINER
    threads: 8
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=720,
        gpu=flow_gpus,
    params:
        settings=lambda w: shard_settings(w.key, "flow"),
        previous=previous_shard,
        shard_list=lambda w: in_module(shard_list_path(w.key, w.shard)),
    shell:
        "python -m tclsta.gpus {resources.gpu} -- python -m tclsta flow --settings {params.settings:q} --workers {threads}"
        " --frames {input} --previous {params.previous} --output {output} 2> {log}"


rule pack:
    """Merge frames and flow of one shard into the final HDF5 shard."""
    input:
        frames="work/shards/{key}/frames_{shard}.h5",
        flow="work/shards/{key}/flow_{shard}.h5",
    output:
        "work/shards/{key}/shard_{shard}.h5",
    log:
        "logs/pack/{key}_{shard}.log",
    benchmark:
        "work/shards/{key}/benchmarks/pack/{shard}.tsv"
    wildcard_constraints:
        key=VIDEO_SHARDS,
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=60,
    params:
        settings=lambda w: shard_settings(w.key, "pack"),
    shell:
        "python -m tclsta pack --settings {params.settings:q} --frames {input.frames} --flow {input.flow} --output {output} 2> {log}"


rule import_rawframes:
    """Existing frames and flow (mmaction2 or denseflow rawframes) of one shard into its shard:
    frame JPEGs copied, flow JPEGs mapped to the shard's encoding; nothing decoded or recomputed.
    """
    input:
        unpack(shard_inputs),
    output:
        shard="work/shards/{key}/shard_{shard}.h5",
        rejected="work/shards/{key}/rejected/shard_{shard}.csv",
    log:
        "logs/import_rawframes/{key}_{shard}.log",
    benchmark:
        "work/shards/{key}/benchmarks/import_rawframes/{shard}.tsv"
    wildcard_constraints:
        key=RAWFRAME_SHARDS,
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=120,
    params:
        settings=lambda w: shard_settings(w.key, "rawframes"),
        shard_list=lambda w: in_module(shard_list_path(w.key, w.shard)),
    shell:
        "python -m tclsta rawframes --settings {params.settings:q} --manifest {params.shard_list} --shard {wildcards.shard}"
        " --output {output.shard} --rejected {output.rejected} 2> {log}"
