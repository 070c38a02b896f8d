rule features:
    """Per-frame features of a trained stream for the videos the collaborative model reads (test protocol), cached for it."""
    input:
        manifest="results/{dataset}/manifest.csv",
        shards=packed_shards,
        checkpoint="results/{dataset}/models/{stream}.pt",
    output:
        "results/{dataset}/features/{stream}.h5",
    log:
        "logs/features/{dataset}_{stream}.log",
    benchmark:
        "results/{dataset}/benchmarks/features/{dataset}_{stream}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=240,
        gpu=1,
    params:
        settings=lambda w: settings(w.dataset, "features"),
    shell:
        "python -m tclsta.gpus {resources.gpu} -- python -m tclsta features --settings {params.settings:q} --threads {threads}"
        " --manifest {input.manifest} --shards {input.shards}"
        " --checkpoint {input.checkpoint} --output {output} 2> {log}"


rule collaborative:
    """Train the static-motion collaborative model on the validation videos' features (fit_on), epoch chosen by
    k-fold cross-validation; score val and test."""
    input:
        manifest="results/{dataset}/manifest.csv",
        rgb="results/{dataset}/features/rgb.h5",
        flow="results/{dataset}/features/flow.h5",
    output:
        checkpoint="results/{dataset}/models/collaborative.pt",
        history="results/{dataset}/models/collaborative_history.csv",
        scores="results/{dataset}/scores/collaborative.csv",
    log:
        "logs/collaborative/{dataset}.log",
    benchmark:
        "results/{dataset}/benchmarks/collaborative/{dataset}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=120,
    params:
        settings=lambda w: settings(w.dataset, "collaborative"),
    shell:
        "python -m tclsta collaborative --settings {params.settings:q} --threads {threads}"
        " --rgb {input.rgb} --flow {input.flow} --manifest {input.manifest} --model {output.checkpoint}"
        " --history {output.history} --output {output.scores} 2> {log}"


rule model_choice:
    """Fusion weights or collaborative model: the one with the better cross-validated top-1 on the validation videos."""
    input:
        rgb="results/{dataset}/scores/rgb.csv",
        flow="results/{dataset}/scores/flow.csv",
        collaborative="results/{dataset}/models/collaborative.pt",
    output:
        "results/{dataset}/model_choice.json",
    log:
        "logs/model_choice/{dataset}.log",
    benchmark:
        "results/{dataset}/benchmarks/model_choice/{dataset}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: settings(w.dataset, "model-choice"),
    shell:
        "python -m tclsta model-choice --settings {params.settings:q} --rgb {input.rgb} --flow {input.flow}"
        " --collaborative {input.collaborative} --output {output} 2> {log}"
