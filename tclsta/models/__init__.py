"""Models of TCLSTA (Peng, Zhao, Zhang, arXiv 1711.03273).

``backbones`` builds the frame networks, ``attention`` the spatial-level and
temporal-level attention, ``stream`` one stream of the spatial-temporal
attention model with its losses, ``collaborative`` the static-motion
collaborative model on top of the two streams.
"""

from tclsta.models.attention import CLASS_SOURCES, SpatialAttention, TemporalAttention
from tclsta.models.backbones import ResNetTrunk, SmallCNN, build_backbone, cross_modality_weight
from tclsta.models.collaborative import CollaborativeModel, CollaborativeOutput, GuidedAttention
from tclsta.models.stream import AttentionStream, StreamOutput, stream_loss

__all__ = [
    "CLASS_SOURCES",
    "AttentionStream",
    "CollaborativeModel",
    "CollaborativeOutput",
    "GuidedAttention",
    "ResNetTrunk",
    "SmallCNN",
    "SpatialAttention",
    "StreamOutput",
    "TemporalAttention",
    "build_backbone",
    "cross_modality_weight",
    "stream_loss",
]
