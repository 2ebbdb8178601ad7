"""The training objective: a dict of named scalar losses, guidance being one entry.

The trainer sums the entries and calls ``backward`` once, so every guidance variant must
come as a scalar whose parameter gradient is lambda * dR/dtheta. :class:`Objective` only
dispatches over the modes, each in its own module of this package:
- exact (:mod:`stal.guidance.exact`): lambda * R with R built on g = ds/dx (create_graph=True:
  a double backward);
- fd (:mod:`stal.guidance.finite_difference`): lambda * R.detach() + (S - S.detach()),
  S = lambda * (s(x + h v) - s(x)) / h: the logged value is lambda * R, the gradient the
  finite-difference estimate. With REGION union and SCORE task_loss, s = R * L_task: the
  backward that gives g also gives grad_theta s, so L_task's gradient and the base term come
  as linear surrogates and the trainer's backward runs only through the extra forward's graph;
- with ``max_ratio`` > 0 (:mod:`stal.guidance.cap`) the entry becomes a linear surrogate whose
  parameter gradient is at most max_ratio * ||grad L_task||;
- counterfactual (:mod:`stal.guidance.counterfactual`): lambda * R with R the prediction shift
  between ``clip`` and ``clip_cf``, both rendered in one forward; no input gradient.
The first exact step also computes the parameter gradient once (and discards it), so that a
model op without a double-backward kernel is reported as a ConfigError here rather than deep
in backward().

Options applied here: ``merge_same_class`` (per_source rows' masks merged by label, see
:func:`stal.guidance.penalty.merge_same_class`), ``inner_bn`` (the guided pass's BatchNorm, see
:mod:`stal.guidance.batchnorm`) and ``lambda_rule`` "balance_init": on the first batch,
lambda_0 = ||grad_theta L_task|| / ||grad_theta R|| (averaged over DDP ranks), then fixed; the
trainer's weight is then the warm-up ramp alone and the entry is ramp * lambda_0 * R.
lambda_0 is logged (``guidance_lambda``) and kept in the checkpoint (:meth:`state_dict`).
"""

from __future__ import annotations

import logging
import math
from contextlib import ExitStack, nullcontext

import torch
import torch.distributed as dist
from torch import nn

from stal.errors import ConfigError, StalError
from stal.guidance.batchnorm import InnerBatchNorm
from stal.guidance.cap import capped_entry, global_norm, param_grads
from stal.guidance.counterfactual import counterfactual_losses
from stal.guidance.exact import exact_context, reraise_autograd
from stal.guidance.finite_difference import KinkPattern, capture_rng, fd_entry, fd_fast_entries, replayed_rng
from stal.guidance.gradients import gradient_rows
from stal.guidance.penalty import GuidanceSpec, gradient_penalty, merge_same_class, per_roi_score
from stal.losses import per_roi_task_loss

logger = logging.getLogger("stal")


class Objective:
    """Computes ``{"task": L_task, "guidance": lambda * R}`` for a batch.

    loss_func: "softmax" | "bce" (see :func:`stal.losses.per_roi_task_loss`).
    guidance: the penalty's options, or None for plain training.
    """

    def __init__(self, *, loss_func: str, guidance: GuidanceSpec | None):
        self.loss_func, self.guidance = loss_func, guidance
        self._checked_double_backward = False
        self.balanced_lambda: float | None = None  # lambda_rule balance_init, set on the first batch

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the objective (the balanced lambda, once set)."""
        return {"balanced_lambda": self.balanced_lambda}

    def load_state_dict(self, state: dict) -> None:
        self.balanced_lambda = state.get("balanced_lambda")

    def __call__(self, model: nn.Module, batch: dict, *, guidance_weight: float,
                 input_grad_scale: float = 1.0) -> tuple[dict, dict]:
        """Losses (scalars with graph) and stats (floats) for one batch.

        input_grad_scale: the input gradient ds/dx (and, on the FD fast path, its parameter
        gradient) is taken of ``input_grad_scale * s`` and divided back in float32: fp16
        autocast passes the GradScaler's scale, so small gradients do not underflow.

        batch: ``clip`` (B, 3, T, H, W), ``rois`` (R, 5) input pixels (or None: one ROI per
        clip, in clip order), ``labels``, ``mask`` (B, T, H, W) and, for per_source,
        ``source_masks`` (R, T, H, W) in ROI order. Stats: ``penalty`` (R, unweighted),
        ``off_target_energy`` (mean over rows -- clips for union, ROIs for per_source -- of
        the raw-mask energy fraction, see :mod:`stal.guidance.attribution`) and, with the
        cap, ``guidance_scale``.
        """
        if self.guidance is None:
            logits = model(batch["clip"], batch["rois"])
            return {"task": per_roi_task_loss(logits, batch["labels"], loss_func=self.loss_func).mean()}, {}
        if self.guidance.mode == "counterfactual":
            return counterfactual_losses(model, batch, loss_func=self.loss_func, guidance_weight=guidance_weight,
                                         task_on_both=self.guidance.cf_task_loss)
        return self._input_gradient(model, batch, weight=guidance_weight, grad_scale=input_grad_scale)

    def _input_gradient(self, model: nn.Module, batch: dict, *, weight: float, grad_scale: float):
        """The exact and FD modes: g = ds/dx per row, R(g, m), then the mode's entry."""
        spec = self.guidance
        clip = batch["clip"].detach().requires_grad_(True)
        rng_state = capture_rng(clip.device)
        exact, fd = spec.mode == "exact" and weight > 0, spec.mode == "fd" and weight > 0
        pattern = KinkPattern() if fd and spec.fd_freeze_kinks else None
        bn = InnerBatchNorm(model, mode=spec.inner_bn)
        logits, guided = self._forwards(model, batch, clip, exact=exact, pattern=pattern, bn=bn, rng_state=rng_state)
        losses = {"task": per_roi_task_loss(logits, batch["labels"], loss_func=self.loss_func).mean()}
        scores = per_roi_score(guided, batch["labels"], score=spec.score, loss_func=self.loss_func)
        batch_index = self._batch_index(model, batch, len(scores), clip.device)
        masks = self._row_masks(batch, clip, batch_index)
        fast = fd and spec.region == "union" and spec.score == "task_loss" and spec.max_ratio == 0 \
            and len(scores) and not bn.active
        if fast:  # s = R * L_task: one backward of s gives g and grad_theta s (see the module doc)
            params = [p for p in model.parameters() if p.requires_grad]
            grads, *g_params = torch.autograd.grad(scores.sum() * grad_scale, [clip] + params, allow_unused=True)
            grads = grads / grad_scale
            g_params = [torch.zeros_like(p) if g is None else g / grad_scale for p, g in zip(params, g_params)]
        else:
            grads = self._gradients(scores * grad_scale, clip, batch_index, create_graph=exact) / grad_scale
        penalty, fraction = gradient_penalty(grads, masks, spec=spec)
        stats = {"penalty": float(penalty.detach()), "off_target_energy": float(fraction.mean())}
        if weight <= 0:
            losses["guidance"] = weight * penalty.detach()
            return losses, stats
        common = dict(forward_scores=self._score_fn(model, batch, bn), model=model, clip=clip, scores=scores,
                      grads=grads, masks=masks, batch_index=batch_index, penalty=penalty, spec=spec,
                      rng_state=rng_state, pattern=pattern)
        if fast:  # both entries are linear in the weight: built for weight 1, scaled below
            losses["task"], unit = fd_fast_entries(params=params, g_params=g_params, weight=1.0,
                                                   task=losses["task"], **common)
        else:
            unit = penalty if exact else fd_entry(**common)
        if spec.lambda_rule == "balance_init":
            weight = weight * self._balanced(model, unit, losses["task"])
            stats["guidance_lambda"] = self.balanced_lambda
        entry = weight * unit
        if spec.max_ratio > 0:
            entry, stats["guidance_scale"] = capped_entry(model, entry, losses["task"], max_ratio=spec.max_ratio)
        elif exact and not self._checked_double_backward:
            param_grads(model, entry)  # once: a clear error instead of one from backward()
            self._checked_double_backward = True
        losses["guidance"] = entry
        return losses, stats

    @staticmethod
    def _forwards(model: nn.Module, batch: dict, clip: torch.Tensor, *, exact: bool, pattern: KinkPattern | None,
                  bn: InnerBatchNorm, rng_state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits of the task loss, logits whose scores are guided): one forward, or with an
        active ``bn`` a second one with the guided BatchNorm and the same RNG state."""
        with ExitStack() as stack:
            if exact:
                stack.enter_context(exact_context())
            if pattern is not None and not bn.active:
                stack.enter_context(pattern.recording())
            logits = model(clip, batch["rois"])
        if not bn.active:
            return logits, logits
        with ExitStack() as stack:
            if exact:
                stack.enter_context(exact_context())
            stack.enter_context(replayed_rng(rng_state, clip.device))
            stack.enter_context(bn.recording())
            if pattern is not None:
                stack.enter_context(pattern.recording())
            guided = model(clip, batch["rois"])
        return logits, guided

    def _balanced(self, model: nn.Module, unit: torch.Tensor, task: torch.Tensor) -> float:
        """lambda_0 = ||grad L_task|| / ||grad R|| from this (the first) batch, then fixed."""
        if self.balanced_lambda is not None:
            return self.balanced_lambda
        params, g_pen = param_grads(model, unit)
        g_task = torch.autograd.grad(task, params, retain_graph=True, allow_unused=True)
        norms = torch.stack([global_norm([g for g in g_task if g is not None]).double(),
                             global_norm(g_pen).double()])
        if dist.is_available() and dist.is_initialized():  # every rank gets the same lambda
            dist.all_reduce(norms)
            norms /= dist.get_world_size()
        n_task, n_pen = float(norms[0]), float(norms[1])
        if not (math.isfinite(n_task) and math.isfinite(n_pen)) or n_pen == 0 or n_task == 0:
            raise StalError(f"GUIDANCE.LAMBDA_RULE balance_init: on the first batch ||grad L_task|| = {n_task:.3g} "
                            f"and ||grad R|| = {n_pen:.3g}; lambda = their ratio needs both finite and > 0")
        self.balanced_lambda = n_task / n_pen
        logger.info("GUIDANCE.LAMBDA_RULE balance_init: lambda = %.6g (||grad L_task|| = %.4g, ||grad R|| = %.4g "
                    "on the first batch), fixed from now on", self.balanced_lambda, n_task, n_pen)
        return self.balanced_lambda

    def _row_masks(self, batch: dict, clip: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """Target weight per row: (B, T, H, W) union or (R, T, H, W) per source (merged by label
        with ``merge_same_class``), shape-checked."""
        thw = tuple(clip.shape[2:])
        if self.guidance.region == "per_source":
            if batch.get("source_masks") is None:
                raise ConfigError("GUIDANCE.REGION per_source needs batch['source_masks'] (R, T, H, W), "
                                  "one target mask per ROI; this dataset gives only the union 'mask'")
            masks, want = batch["source_masks"], (len(batch["labels"]),) + thw
        else:
            masks, want = batch["mask"], (clip.shape[0],) + thw
        if tuple(masks.shape) != want:
            raise ValueError(f"guidance mask shape {tuple(masks.shape)} does not match the input: "
                             f"expected {want} for clip {tuple(clip.shape)}")
        if self.guidance.region == "per_source" and self.guidance.merge_same_class:
            masks = merge_same_class(masks, batch["labels"], batch_index)
        return masks

    @staticmethod
    def _batch_index(model: nn.Module, batch: dict, num_rois: int, device: torch.device) -> torch.Tensor:
        """The clip of each score row: row i is clip i when there are no boxes or the model
        pools its boxes to one row per clip (``clip_level``, weak supervision)."""
        # DDP wraps the model and hides its attributes: read the flag on the wrapped module.
        if batch["rois"] is None or getattr(getattr(model, "module", model), "clip_level", False):
            return torch.arange(num_rois, device=device)
        return batch["rois"][:, 0].long()

    def _gradients(self, scores, clip, batch_index, *, create_graph: bool) -> torch.Tensor:
        try:
            return gradient_rows(scores, clip, batch_index=batch_index, region=self.guidance.region,
                                 create_graph=create_graph)
        except RuntimeError as exc:
            reraise_autograd(exc)

    def _score_fn(self, model: nn.Module, batch: dict, bn: InnerBatchNorm):
        """x -> guided scores (R,) for the FD extra forwards (the guided pass's BatchNorm replayed)."""
        def forward_scores(x: torch.Tensor) -> torch.Tensor:
            with bn.replaying() if bn.active else nullcontext():
                logits = model(x, batch["rois"])
            return per_roi_score(logits, batch["labels"], score=self.guidance.score, loss_func=self.loss_func)
        return forward_scores
