"""Synthesis of training clips with per-voxel provenance."""

from stal.synthesis.compose import PlacedTube, composite, tube_boxes

__all__ = ["PlacedTube", "composite", "tube_boxes"]
