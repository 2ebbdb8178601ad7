"""Models: backbones, double-backward-capable RoIAlign, heads, detector, MIL, registry."""

from stal.models.backbones import SmallCNN3D, X3DBackbone, x3d_xs
from stal.models.build import DEFAULT_INPUTS, MODEL_REGISTRY, UnknownModelError, build_detector
from stal.models.detector import ActionDetector
from stal.models.heads import CAMHead, RoIActionHead
from stal.models.mil import MILDetector, mil_pool
from stal.models.pretrained import LoadReport, load_pretrained
from stal.models.roi_align import RoIAlign, roi_align

__all__ = [
    "DEFAULT_INPUTS",
    "MODEL_REGISTRY",
    "ActionDetector",
    "CAMHead",
    "LoadReport",
    "MILDetector",
    "RoIActionHead",
    "RoIAlign",
    "SmallCNN3D",
    "UnknownModelError",
    "X3DBackbone",
    "build_detector",
    "load_pretrained",
    "mil_pool",
    "roi_align",
    "x3d_xs",
]
