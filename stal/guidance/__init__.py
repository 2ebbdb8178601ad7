"""Provenance-based input-gradient guidance (DESIGN.md section 5)."""

from stal.guidance.penalty import GuidanceSpec, guidance_score, input_gradient_penalty, off_target_fraction

__all__ = ["GuidanceSpec", "guidance_score", "input_gradient_penalty", "off_target_fraction"]
