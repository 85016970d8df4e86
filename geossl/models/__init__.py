"""Encoders: timm backbones for any band count, 1x1 band adapters, per-sensor stems, heads."""

from geossl.models.adapters import ADAPTER_KINDS, BandAdapter, fold_adapter
from geossl.models.backbones import create_backbone, load_pretrained, resolve_name
from geossl.models.encoder import Encoder, build_encoder
from geossl.models.heads import ClusterHead, DINOHead, PredictionHead, ProjectionHead
from geossl.models.norm import SplitBatchNorm2d, convert_split_bn

__all__ = [
    "ADAPTER_KINDS",
    "BandAdapter",
    "ClusterHead",
    "DINOHead",
    "Encoder",
    "PredictionHead",
    "ProjectionHead",
    "SplitBatchNorm2d",
    "build_encoder",
    "convert_split_bn",
    "create_backbone",
    "fold_adapter",
    "load_pretrained",
    "resolve_name",
]
