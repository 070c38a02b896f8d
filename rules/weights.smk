from tclsta.config import for_stream, parse_dataset
from tclsta.models.pretrained import imagenet_weights_path


def pretrained_weights(wildcards):
    """The weights file a stream starts from: resources/<torchvision file> for
    model.pretrained: imagenet (fetched by the rule below), a local path as given, or nothing."""
    model = for_stream(
        parse_dataset(dataset_settings(config, wildcards.dataset)).model,
        wildcards.stream,
    )
    if model.pretrained is None:
        return []
    if model.pretrained == "imagenet":
        return [str(imagenet_weights_path(model.backbone))]
    return [model.pretrained]


rule pretrained_weights:
    """torchvision's ImageNet weights, fetched once on the host that runs Snakemake (compute nodes
    often have no internet) and checked against the hash prefix in their file name."""
    output:
        "resources/{backbone}-{sha}.pth",
    log:
        "logs/pretrained_weights/{backbone}-{sha}.log",
    localrule: True
    wildcard_constraints:
        backbone="resnet18|resnet50",
        sha="[0-9a-f]+",
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m tclsta fetch-weights {output} 2> {log}"
