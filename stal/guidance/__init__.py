"""Provenance-based input-gradient guidance (DESIGN.md section 5), all of it in this folder.

penalty: R(g, m) and its options (GuidanceSpec, the allowed values); gradients: per-clip /
per-source input-gradient rows; exact: the double-backward mode; finite_difference: dR/dtheta
without double backward; batchnorm: BatchNorm in the guided pass (GUIDANCE.INNER_BN); counterfactual: the prediction shift to a re-rendered clip; cap: the
gradient-ratio cap; attribution: the off-target energy fraction (also the held-out metric);
objective: :class:`Objective`, the dispatch over the modes that the trainer calls.
"""

from stal.guidance.penalty import (GuidanceSpec, gradient_penalty, guidance_score, input_gradient_penalty,
                                   per_roi_score)

__all__ = ["GuidanceSpec", "gradient_penalty", "guidance_score", "input_gradient_penalty",
           "per_roi_score"]
