"""Provenance-based input-gradient guidance (DESIGN.md section 5).

penalty: R(g, m) and its options; gradients: per-clip / per-source input-gradient rows;
finite_difference: dR/dtheta without double backward. :class:`stal.objective.Objective`
puts them together; the held-out metric lives in :mod:`stal.evaluation.attribution`.
"""

from stal.guidance.penalty import (GuidanceSpec, gradient_penalty, guidance_score, input_gradient_penalty,
                                   per_roi_score)

__all__ = ["GuidanceSpec", "gradient_penalty", "guidance_score", "input_gradient_penalty",
           "per_roi_score"]
