"""Models: backbones, double-backward-capable RoIAlign, RoI heads, detector, registry."""

from stal.models.backbones import SmallCNN3D, X3DBackbone, x3d_xs
from stal.models.build import MODEL_REGISTRY, UnknownModelError, build_detector
from stal.models.detector import ActionDetector
from stal.models.heads import RoIActionHead
from stal.models.roi_align import RoIAlign, roi_align

__all__ = [
    "MODEL_REGISTRY",
    "ActionDetector",
    "RoIActionHead",
    "RoIAlign",
    "SmallCNN3D",
    "UnknownModelError",
    "X3DBackbone",
    "build_detector",
    "roi_align",
    "x3d_xs",
]
