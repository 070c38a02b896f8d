rule pretrained_weights:
    """torchvision's ImageNet weights, fetched once on the host that runs Snakemake (compute nodes
    often have no internet) and checked against the hash prefix in their file name."""
    output:
        local("resources/{backbone}-{sha}.pth"),
    log:
        "logs/pretrained_weights/{backbone}-{sha}.log",
    wildcard_constraints:
        backbone="resnet18|resnet50",
        sha="[0-9a-f]+",
    localrule: True
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m tclsta fetch-weights --output {output} 2> {log}"
