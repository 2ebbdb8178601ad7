"""The training objective: a dict of named scalar losses, guidance being one entry.

The trainer sums the entries and calls ``backward`` once, so every guidance variant must
come as a scalar whose parameter gradient is lambda * dR/dtheta:
- exact: lambda * R with R built on g = ds/dx (create_graph=True: a double backward);
- fd: lambda * R.detach() + (S - S.detach()), S = lambda * (s(x + h v) - s(x)) / h (see
  :mod:`stal.guidance.finite_difference`): the logged value is lambda * R, the gradient
  the finite-difference estimate. With REGION union and SCORE task_loss, s = R * L_task:
  the backward that gives g also gives grad_theta s, so L_task's gradient (grad s / R) and
  the base term (-lambda grad s / h) come as linear surrogates (below) and the trainer's
  backward runs only through the extra forward's graph (one backward fewer per step);
- with ``max_ratio`` > 0, the entry's parameter gradient G is computed here and the entry
  becomes the linear surrogate c * (value + sum_p <p - p.detach(), G_p>), c <= 1 scaling
  ||c G|| down to max_ratio * ||grad L_task||: one extra first-order backward of the task
  loss; the penalty's backward is still done only once.
- counterfactual: lambda * R with R the prediction shift between ``clip`` and ``clip_cf``
  (:mod:`stal.guidance.counterfactual`), both rendered in one forward; no input gradient.
The first exact step also computes G once (and discards it), so that a model op without a
double-backward kernel is reported as a ConfigError here rather than deep in backward().
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from stal.errors import ConfigError
from stal.guidance.counterfactual import paired_rois, prediction_shift
from stal.guidance.finite_difference import KinkPattern, capture_rng, fd_surrogate
from stal.guidance.gradients import gradient_rows, roi_slots
from stal.guidance.penalty import GuidanceSpec, gradient_penalty, per_roi_score
from stal.losses import per_roi_task_loss


class Objective:
    """Computes ``{"task": L_task, "guidance": lambda * R}`` for a batch.

    loss_func: "softmax" | "bce" (see :func:`stal.losses.per_roi_task_loss`).
    guidance: the penalty's options, or None for plain training.
    """

    def __init__(self, *, loss_func: str, guidance: GuidanceSpec | None):
        self.loss_func, self.guidance = loss_func, guidance
        self._checked_double_backward = False

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
        the raw-mask energy fraction, see :mod:`stal.evaluation.attribution`) and, with the
        cap, ``guidance_scale``.
        """
        spec = self.guidance
        if spec is None:
            logits = model(batch["clip"], batch["rois"])
            return {"task": per_roi_task_loss(logits, batch["labels"], loss_func=self.loss_func).mean()}, {}
        if spec.mode == "counterfactual":
            return self._counterfactual(model, batch, guidance_weight=guidance_weight)
        clip = batch["clip"].detach().requires_grad_(True)
        masks = self._row_masks(batch, clip)
        rng_state = capture_rng(clip.device)
        exact = spec.mode == "exact" and guidance_weight > 0
        fd = spec.mode == "fd" and guidance_weight > 0
        pattern = KinkPattern() if fd and spec.fd_freeze_kinks else None
        logits = self._forward(model, clip, batch["rois"], exact=exact, pattern=pattern)
        losses = {"task": per_roi_task_loss(logits, batch["labels"], loss_func=self.loss_func).mean()}
        scores = per_roi_score(logits, batch["labels"], score=spec.score, loss_func=self.loss_func)
        batch_index = self._batch_index(model, batch, len(scores), clip.device)
        # FD, union, task-loss score: s = R * L_task, so one backward of s gives g and both
        # losses' gradients on the first graph, which can then be freed (see _fd_fast).
        fast = fd and spec.region == "union" and spec.score == "task_loss" and spec.max_ratio == 0 and len(scores)
        if fast:
            params = [p for p in model.parameters() if p.requires_grad]
            k = input_grad_scale
            grads, *g_params = torch.autograd.grad(scores.sum() * k, [clip] + params, allow_unused=True)
            grads, g_params = grads / k, [torch.zeros_like(p) if g is None else g / k for p, g in zip(params, g_params)]
        else:
            grads = self._gradients(scores * input_grad_scale, clip, batch_index, create_graph=exact) / input_grad_scale
        penalty, fraction = gradient_penalty(grads, masks, spec=spec)
        stats = {"penalty": float(penalty.detach()), "off_target_energy": float(fraction.mean())}
        if guidance_weight <= 0:
            losses["guidance"] = guidance_weight * penalty.detach()
            return losses, stats
        if fast:
            losses["task"], entry = self._fd_fast(model, batch, clip, scores, grads, masks, params, g_params,
                                                  penalty=penalty, weight=guidance_weight, task=losses["task"],
                                                  rng_state=rng_state, pattern=pattern)
        elif exact:
            entry = guidance_weight * penalty
        else:
            entry = guidance_weight * self._fd_entry(model, batch, clip, scores, grads, masks, batch_index,
                                                     penalty=penalty, rng_state=rng_state, pattern=pattern)
        if spec.max_ratio > 0:
            entry, scale = self._capped(model, entry, losses["task"])
            stats["guidance_scale"] = scale
        elif exact and not self._checked_double_backward:
            self._penalty_param_grads(model, entry)  # once: a clear error instead of one from backward()
        losses["guidance"] = entry
        return losses, stats

    def _counterfactual(self, model: nn.Module, batch: dict, *, guidance_weight: float) -> tuple[dict, dict]:
        """Task loss on ``clip``; guidance = lambda * mean prediction shift to ``clip_cf``.

        Both renderings go through one forward (batch 2B): the same weights and dropout
        stream for both, and one backward. The penalty is computed (and logged) even while
        the weight is 0 so that warm-up runs show what they will be penalized for.
        """
        if batch.get("clip_cf") is None:
            raise ConfigError("GUIDANCE.MODE counterfactual needs batch['clip_cf'] (B, 3, T, H, W), the same "
                              "actors over another background; this training set does not render it")
        clip, rois, num = batch["clip"], batch["rois"], len(batch["labels"])
        logits = model(torch.cat([clip, batch["clip_cf"]]), paired_rois(rois, clip.shape[0]))
        logits, logits_cf = logits[:num], logits[num:]
        shift = prediction_shift(logits, logits_cf, loss_func=self.loss_func)
        penalty = shift.mean() if num else logits.sum() * 0.0
        task = per_roi_task_loss(logits, batch["labels"], loss_func=self.loss_func).mean()
        entry = guidance_weight * penalty if guidance_weight > 0 else guidance_weight * penalty.detach()
        return {"task": task, "guidance": entry}, {"penalty": float(penalty.detach())}

    @staticmethod
    def _forward(model: nn.Module, clip: torch.Tensor, rois, *, exact: bool, pattern: KinkPattern | None):
        """Logits (R, classes). Exact: under the math attention backend (the fused SDPA kernels
        have no double backward; harmless for CNNs). FD: recording the ReLU/amax pattern."""
        if exact:
            context = sdpa_kernel(SDPBackend.MATH)
        else:
            context = pattern.recording() if pattern is not None else nullcontext()
        with context:
            return model(clip, rois)

    def _row_masks(self, batch: dict, clip: torch.Tensor) -> torch.Tensor:
        """Target weight per row: (B, T, H, W) union or (R, T, H, W) per source, shape-checked."""
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
            _reraise(exc)

    def _fd_entry(self, model, batch, clip, scores, grads, masks, batch_index, *, penalty, rng_state, pattern):
        """penalty.detach() + (S - S.detach()) with S the finite-difference surrogate."""
        slots = roi_slots(batch_index) if self.guidance.region == "per_source" else None
        s, _ = fd_surrogate(forward_scores=self._score_fn(model, batch), model=model, clip=clip, scores=scores,
                            v_rows=self._penalty_direction(grads, masks), batch_index=batch_index, slots=slots,
                            fd_step=self.guidance.fd_step, rng_state=rng_state, pattern=pattern)
        return penalty.detach() + (s - s.detach())

    def _fd_fast(self, model, batch, clip, scores, grads, masks, params, g_params, *, penalty, weight, task,
                 rng_state, pattern) -> tuple[torch.Tensor, torch.Tensor]:
        """(task, guidance) entries when g_params = grad_theta s(x) is known and s = R * L_task:
        L_task's gradient is g_params / R and the FD base term -g_params / h, both as linear
        surrogates, so the trainer's backward only runs through the extra forward's graph."""
        batch_index = self._batch_index(model, batch, len(scores), clip.device)
        s, coeff = fd_surrogate(forward_scores=self._score_fn(model, batch), model=model, clip=clip,
                                scores=scores.detach(), v_rows=self._penalty_direction(grads, masks),
                                batch_index=batch_index, slots=None, fd_step=self.guidance.fd_step,
                                rng_state=rng_state, pattern=pattern)
        inv_h = float(coeff[0])  # union: one step for the whole batch
        entry = weight * (penalty.detach() + (s - s.detach()) - inv_h * _linear(params, g_params))
        return task.detach() + _linear(params, g_params) / len(scores), entry

    def _score_fn(self, model: nn.Module, batch: dict):
        def forward_scores(x: torch.Tensor) -> torch.Tensor:
            return per_roi_score(model(x, batch["rois"]), batch["labels"], score=self.guidance.score,
                                 loss_func=self.loss_func)
        return forward_scores

    def _penalty_direction(self, grads: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """v = dR/dg at the current g (N, C, T, H, W), detached."""
        g = grads.detach().requires_grad_(True)
        (v,) = torch.autograd.grad(gradient_penalty(g, masks, spec=self.guidance)[0], g)
        return v.detach()

    def _penalty_param_grads(self, model: nn.Module, entry: torch.Tensor) -> tuple[list, list]:
        """(parameters, d entry / d parameter) with zeros for unused parameters; graph retained."""
        params = [p for p in model.parameters() if p.requires_grad]
        try:
            grads = torch.autograd.grad(entry, params, retain_graph=True, allow_unused=True)
        except RuntimeError as exc:
            _reraise(exc)
        self._checked_double_backward = True
        return params, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    def _capped(self, model: nn.Module, entry: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The entry as a linear surrogate whose parameter gradient is capped (see module doc)."""
        params, g_pen = self._penalty_param_grads(model, entry)
        g_task = torch.autograd.grad(task, params, retain_graph=True, allow_unused=True)
        n_task, n_pen = _global_norm([g for g in g_task if g is not None]), _global_norm(g_pen)
        scale = 1.0
        if n_pen > self.guidance.max_ratio * n_task:
            scale = float(self.guidance.max_ratio * n_task / n_pen)
        return scale * (entry.detach() + _linear(params, g_pen)), scale


def _linear(params: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """sum_p <p - p.detach(), G_p>: value 0, parameter gradient G (detached)."""
    return sum(((p - p.detach()) * g.detach()).sum() for p, g in zip(params, grads))


def _global_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm over a list of tensors, accumulated in float32 (float64 stays float64)."""
    return torch.sqrt(sum(g.to(torch.float64 if g.dtype == torch.float64 else torch.float32).pow(2).sum()
                          for g in grads))


def _reraise(exc: RuntimeError):
    """Re-raise an autograd failure, as a one-line ConfigError when an op lacks double backward."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not any(k in msg.lower() for k in ("double backward", "not implemented", "not supported")):
        raise exc
    raise ConfigError(f"GUIDANCE.MODE exact needs double backward through every model op, but autograd "
                      f"failed: {msg!r}; build the model with double_backward=True (differentiable "
                      f"RoIAlign) or set GUIDANCE.MODE fd") from None
