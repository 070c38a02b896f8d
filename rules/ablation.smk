from pathlib import Path

from tclsta.ablation import (
    VARIANTS,
    VARIANTS_BY_NAME,
    ablation_inputs,
    variant_settings,
)

ABLATION = "results/{dataset}/ablation/{variant}"


wildcard_constraints:
    variant="|".join(v.name for v in VARIANTS if v.overrides),


use rule train_stream as ablation_train_stream with:
    output:
        checkpoint=f"{ABLATION}/models/{{stream}}.pt",
        history=f"{ABLATION}/models/{{stream}}_history.csv",
    log:
        "logs/ablation_train_stream/{dataset}_{variant}_{stream}.log",
    benchmark:
        "results/{dataset}/benchmarks/ablation_train_stream/{dataset}_{variant}_{stream}.tsv"
    params:
        settings=lambda w: variant_settings(
            settings(w.dataset, "train"),
            w.variant,
        ),


use rule score_stream as ablation_score_stream with:
    input:
        manifest="results/{dataset}/manifest.csv",
        shards=packed_shards,
        checkpoint=f"{ABLATION}/models/{{stream}}.pt",
    output:
        f"{ABLATION}/scores/{{stream}}.csv",
    log:
        "logs/ablation_score_stream/{dataset}_{variant}_{stream}.log",
    benchmark:
        "results/{dataset}/benchmarks/ablation_score_stream/{dataset}_{variant}_{stream}.tsv"


use rule features as ablation_features with:
    input:
        manifest="results/{dataset}/manifest.csv",
        shards=packed_shards,
        checkpoint=f"{ABLATION}/models/{{stream}}.pt",
    output:
        f"{ABLATION}/features/{{stream}}.h5",
    log:
        "logs/ablation_features/{dataset}_{variant}_{stream}.log",
    benchmark:
        "results/{dataset}/benchmarks/ablation_features/{dataset}_{variant}_{stream}.tsv"


use rule collaborative as ablation_collaborative with:
    input:
        unpack(
            lambda w: {
                "manifest": f"results/{w.dataset}/manifest.csv",
                **VARIANTS_BY_NAME[w.variant].features(Path(f"results/{w.dataset}")),
            }
        ),
    output:
        checkpoint=f"{ABLATION}/models/collaborative.pt",
        history=f"{ABLATION}/models/collaborative_history.csv",
        scores=f"{ABLATION}/scores/collaborative.csv",
    log:
        "logs/ablation_collaborative/{dataset}_{variant}.log",
    benchmark:
        "results/{dataset}/benchmarks/ablation_collaborative/{dataset}_{variant}.tsv"
    params:
        settings=lambda w: variant_settings(
            settings(w.dataset, "collaborative"), w.variant
        ),


rule ablation:
    """Test-split accuracy of every ablation variant (tclsta/ablation.py), one row each."""
    input:
        lambda w: ablation_inputs(Path(f"results/{w.dataset}")),
    output:
        "results/{dataset}/ablation.csv",
    log:
        "logs/ablation/{dataset}.log",
    benchmark:
        "results/{dataset}/benchmarks/ablation/{dataset}.tsv"
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: settings(w.dataset, "ablation"),
        results=results_dir,
    shell:
        "python -m tclsta ablation --settings {params.settings:q} --results {params.results} --output {output} 2> {log}"
