"""ImageNet weights of the ResNet backbones: fetched once, checked, loaded without unpickling code.

``model.pretrained: imagenet`` means torchvision's ImageNet file for the backbone,
kept under ``resources/`` with torchvision's own file name
(``resources/resnet50-0676ba61.pth``). The workflow's ``pretrained_weights``
rule fetches it once, on the host that runs Snakemake (:func:`fetch_weights`);
training jobs only read it (:func:`load_weights`) and never download.
``model.pretrained: /path/to/file.pth`` is read as given, for offline sites.

Every weights file is read with ``torch.load(weights_only=True)``, and a file
whose name carries torchvision's hash prefix (``<name>-<sha256 prefix>.pth``)
must match that hash before it is read at all: a file planted under the expected
name is refused without being unpickled.

torch is imported where a file is read or fetched, so that the workflow can
name the files (:func:`imagenet_weights_path`) without importing it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from typing import TYPE_CHECKING

from tclsta.atomic import atomic_path
from tclsta.errors import FileError

if TYPE_CHECKING:
    from torch import Tensor

RESOURCES_DIR = Path("resources")

# torchvision's IMAGENET1K_V1 files (the original ImageNet recipe, closest to the Caffe ResNet-50 of
# the release); the hex part of each name is the prefix of the file's SHA-256 (a test checks these
# against torchvision's own table).
IMAGENET_URLS: dict[str, str] = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.pth$")


class WeightsError(FileError):
    """Pretrained weights that are missing, fail their hash or are not a plain state dict."""

    what = "bad weights file"


def imagenet_weights_path(backbone: str, resources: Path = RESOURCES_DIR) -> Path:
    """Where ``model.pretrained: imagenet`` is read from: ``resources/<torchvision file name>``."""
    if backbone not in IMAGENET_URLS:
        raise WeightsError(Path(resources), f"backbone '{backbone}' has no ImageNet weights; set model.pretrained: null or a local .pth file")
    return Path(resources) / IMAGENET_URLS[backbone].rsplit("/", 1)[1]


def check_hash(path: Path) -> None:
    """Refuse a file whose name carries a hash prefix (torchvision's convention) that its bytes do not match."""
    match = _HASH_IN_NAME.search(Path(path).name)
    if match is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        raise WeightsError(path, f"its SHA-256 does not start with {match.group(1)}, the hash in its name; the file is "
                                 f"corrupt or not torchvision's: delete the file (the pretrained_weights rule fetches it again)")


def load_weights(path: Path) -> dict[str, Tensor]:
    """A backbone state dict from ``path``: hash checked, then read with ``weights_only=True``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "does not exist")
    check_hash(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler's refusals come as several exception types
        raise WeightsError(path, f"not a plain state dict (torch.load with weights_only=True refused it: {exc})") from exc
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise WeightsError(path, "not a backbone state dict (expected a 'conv1.weight' entry)")
    return state


def resolve_pretrained(backbone: str, pretrained: str, resources: Path = RESOURCES_DIR) -> Path:
    """The file ``model.pretrained`` names: ``imagenet`` -> ``resources/<file>``, else the path as given.

    Neither there: one error naming both ways to provide the weights.
    """
    if pretrained != "imagenet":
        path = Path(pretrained)
        if not path.is_file():
            raise WeightsError(path, f"model.pretrained names this file, which does not exist; give an existing .pth "
                                     f"state dict, 'imagenet' (fetched into {resources}/) or null")
        return path
    path = imagenet_weights_path(backbone, resources)
    if not path.is_file():
        url = IMAGENET_URLS[backbone]
        raise WeightsError(
            path,
            f"ImageNet weights for {backbone} not found here. Either run the workflow once on a host with "
            f"internet access (its pretrained_weights rule fetches {url} into {resources}/, e.g. "
            f"`snakemake {path}`), or download that file elsewhere and set model.pretrained: /path/to/{path.name}"
        )
    return path


def fetch_weights(out_path: Path) -> None:
    """Download torchvision's ImageNet weights named like ``out_path`` (``resnet50-0676ba61.pth``) to it,
    checking the hash prefix torchvision publishes in that name."""
    import torch

    out_path = Path(out_path)
    known = {imagenet_weights_path(name).name: url for name, url in IMAGENET_URLS.items()}
    url = known.get(out_path.name)
    if url is None:
        raise WeightsError(out_path, f"not the name of torchvision ImageNet weights (known: {', '.join(sorted(known))})")
    expected = _HASH_IN_NAME.search(out_path.name).group(1)
    with atomic_path(out_path) as tmp:
        try:
            torch.hub.download_url_to_file(url, str(tmp), hash_prefix=expected, progress=False)
        except (OSError, RuntimeError) as exc:
            raise WeightsError(
                out_path,
                f"could not download {url} ({exc}). Either run this on a host with internet access, or "
                f"download that file elsewhere and set model.pretrained: /path/to/{Path(url).name} "
                f"(or put it at {out_path})"
            ) from exc
        torch.load(tmp, map_location="cpu", weights_only=True)  # a plain state dict, or refuse it now
