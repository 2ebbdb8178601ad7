"""Finite-difference guidance: dR/dtheta from one extra forward instead of a double backward.

With g = ds/dx and v = dR/dg evaluated at the current g and held fixed (detached),

    dR/dtheta = sum_voxels v * dg/dtheta = d/dtheta (v . grad_x s) = d/dtheta d/de s(x + e v)|_0
              ~= (grad_theta s(x + h v) - grad_theta s(x)) / h,

a Hessian-vector product by a forward difference. :func:`fd_surrogate` returns the scalar
(s(x + h v) - s(x)) / h built on both forward graphs; backpropagating it (together with the
task loss, in the trainer's single ``backward``) adds exactly that estimate to each .grad.
Per source, slot j's ROIs are evaluated on x + h_j v_j, where v_j puts each clip's j-th
ROI's v in that clip (one extra forward per slot, see :mod:`stal.guidance.gradients`).

Step: h = fd_step * ||x|| / ||v|| (norms over the batch), i.e. a perturbation whose size
is fd_step relative to the input. One h for the whole batch, not one per clip: train-mode
BatchNorm couples the clips, and only a common step keeps the cross-clip terms consistent
(a per-clip step gave cosine 0.91 instead of 1.0 on a BatchNorm X3D). So the estimate's
truncation error, O(h), depends on the batch composition: DDP ranks agree with one process
only up to it. 1e-3 (the default) .. 1e-4 gave cosine >= 0.9999
with the exact gradient for SiLU nets in float32. Without freezing the kink pattern it is
only approximate through ReLU and max (DESIGN.md section 5); with it, the remaining error
is the truncation error of the smooth parts (small for moderate curvature; very curved
models, e.g. a random tiny X3D with batch statistics over 2 clips, want a smaller step).

Both evaluations see the same ReLU / amax pattern (:class:`KinkPattern`, which makes FD
match exact through those kinks too) and the same random state (dropout masks): the caller captures the RNG
state before the first forward and each extra forward replays it. BatchNorm keeps training
mode (batch statistics, as the exact gradient differentiates through them) but updates
throw-away copies of its running statistics in the extra forward, so they move once per
step, as in plain training.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from stal.guidance.cap import linear_surrogate
from stal.guidance.gradients import roi_slots
from stal.guidance.penalty import GuidanceSpec, gradient_penalty


def capture_rng(device: torch.device) -> dict:
    """The CPU (and, on CUDA, that device's) RNG state, to replay before an extra forward."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


@contextmanager
def replayed_rng(state: dict, device: torch.device) -> Iterator[None]:
    """Run the body from RNG ``state``; afterwards the RNG continues as if it had not run."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
        yield


@contextmanager
def frozen_norm_stats(model: nn.Module) -> Iterator[None]:
    """Let every BatchNorm update throw-away copies of its running statistics in the body.

    The buffers are swapped for clones and the originals put back, never written in place:
    the first forward's graph may hold them, and autograd rejects a saved tensor modified
    in place.
    """
    names = ("running_mean", "running_var", "num_batches_tracked")
    saved = [(mod, {n: getattr(mod, n) for n in names if getattr(mod, n, None) is not None})
             for mod in model.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    for mod, buffers in saved:
        for name, buf in buffers.items():
            setattr(mod, name, buf.clone())
    try:
        yield
    finally:
        for mod, buffers in saved:
            for name, buf in buffers.items():
                setattr(mod, name, buf)


_RELUS = (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_)
_AMAXES = (torch.amax, torch.Tensor.amax)
_MAXPOOLS = (F.max_pool1d, F.max_pool2d, F.max_pool3d)


class KinkPattern(TorchFunctionMode):
    """Freeze the kinks of ReLU, amax and max pooling at the first forward's pattern for the
    extra forward.

    Why: through a kink, x and x + h v can fall on different sides, and the forward difference
    of the parameter gradient then jumps by O(1)/h; the bias does not shrink with h (the
    spatial ``amax`` of the RoI head alone gave cosine 0.16 with the exact gradient on the
    SiLU small3d). The exact double backward treats these patterns as fixed (their second
    derivative is zero), so replaying the first forward's pattern -- relu(y) -> y * [y1 > 0],
    amax(y) -> sum(y * onehot(argmax y1)) (ties shared evenly, as amax's backward does),
    max_pool(y) -> y gathered at the first forward's argmax indices (as max pooling's backward
    routes the gradient) -- makes FD estimate the same quantity. Without the max-pool case FD
    was useless on torchvision's VGG16 and ResNet-50 (cosine 0.04 and -0.26 with the exact
    gradient at the default step). Both forwards must make the same sequence of these calls
    (same model, same input shapes); other kinks (hardtanh, adaptive max pooling, ...) are not
    frozen.

    Use ``with pattern.recording():`` around the first forward and ``with pattern.replaying():``
    around each extra forward.
    """

    def __init__(self):
        super().__init__()
        self.records: list[torch.Tensor] = []
        self._replay: int | None = None

    @contextmanager
    def recording(self) -> Iterator[None]:
        self.records, self._replay = [], None
        with self:
            yield

    @contextmanager
    def replaying(self) -> Iterator[None]:
        self._replay = 0
        try:
            with self:
                yield
            if self._replay != len(self.records):
                raise RuntimeError(f"FD extra forward made {self._replay} relu/amax calls, the first "
                                   f"{len(self.records)}: the model's forward is not repeatable")
        finally:
            self._replay = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS:
            return self._relu(func, args, kwargs)
        if func in _AMAXES:
            return self._amax(func, args, kwargs)
        if func in _MAXPOOLS and not kwargs.get("return_indices", False) and len(args) < 7:
            return self._max_pool(func, args, kwargs)
        return func(*args, **kwargs)

    def _next_record(self, x: torch.Tensor) -> torch.Tensor:
        rec = self.records[self._replay] if self._replay < len(self.records) else None
        if rec is None or rec.shape != x.shape:
            raise RuntimeError("FD extra forward does not repeat the first forward's relu/amax calls")
        self._replay += 1
        return rec.to(x.dtype)

    def _relu(self, func, args, kwargs):
        x = args[0]
        inplace = func in (torch.relu_, torch.Tensor.relu_) or kwargs.get("inplace", False) \
            or (func is F.relu and len(args) > 1 and bool(args[1]))
        if self._replay is None:
            self.records.append((x.detach() > 0))
            return func(*args, **kwargs)
        mask = self._next_record(x)
        return x.mul_(mask) if inplace else x * mask

    def _amax(self, func, args, kwargs):
        x = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim", ())
        keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        dims = (dim,) if isinstance(dim, int) else tuple(dim) or tuple(range(x.ndim))
        if self._replay is None:
            ties = x.detach() == x.detach().amax(dims, keepdim=True)
            self.records.append(ties / ties.sum(dims, keepdim=True))
            return func(*args, **kwargs)
        return (x * self._next_record(x)).sum(dims, keepdim=keepdim)


    def _max_pool(self, func, args, kwargs):
        """Record the argmax indices (flat over each plane's d spatial dims); replay by gather."""
        x, d = args[0], _MAXPOOLS.index(func) + 1
        if self._replay is None:
            out, indices = func(*args, **{**kwargs, "return_indices": True})
            self.records.append(indices)
            return out
        indices = self.records[self._replay] if self._replay < len(self.records) else None
        if indices is None or indices.dtype != torch.int64 or indices.shape[:-d] != x.shape[:-d]:
            raise RuntimeError("FD extra forward does not repeat the first forward's max-pool calls")
        self._replay += 1
        return x.flatten(-d).gather(-1, indices.flatten(-d)).view(indices.shape)


def fd_surrogate(*, forward_scores: Callable[[torch.Tensor], torch.Tensor], model: nn.Module,
                 clip: torch.Tensor, scores: torch.Tensor, v_rows: torch.Tensor,
                 batch_index: torch.Tensor, slots: torch.Tensor | None, fd_step: float,
                 rng_state: dict, pattern: KinkPattern | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scalar whose parameter gradient is the finite-difference estimate of dR/dtheta, and the
    weights c (R,) = 1 / h of each ROI's base score in it.

    The scalar is sum_j (s_j(x + h_j v_j) - s_j(x)) / h_j. When ``scores`` come detached (the
    caller already has grad_theta s(x)), it lacks the base term: subtract sum_r c_r grad s_r.

    forward_scores: clip (B, C, T, H, W) -> per-ROI scores (R,) (the model's forward + score).
    clip: (B, C, T, H, W) the unperturbed input; scores: (R,) its scores, with graph.
    v_rows: (N, C, T, H, W) dR/dg per row, detached; union: N = B (slots None), per_source:
    N = R with ``slots`` (R,) from :func:`stal.guidance.gradients.roi_slots`.
    pattern: the first forward's recorded :class:`KinkPattern`, replayed in each extra forward.
    """
    x = clip.detach()
    x_norm = x.float().norm()
    num_slots = 1 if slots is None else int(slots.max()) + 1 if len(slots) else 0
    total, coeff = scores.new_zeros(()), torch.zeros_like(scores.detach())
    for j in range(num_slots):
        if slots is None:
            v, chosen = v_rows.to(x.dtype), torch.ones_like(scores, dtype=torch.bool)
        else:
            chosen = slots == j
            v = torch.zeros_like(x)
            v[batch_index[chosen]] = v_rows[chosen].to(x.dtype)
        v_norm = v.float().norm()
        if not torch.isfinite(v_norm) or v_norm == 0:
            continue  # R does not depend on g here: nothing to add
        h = float(fd_step * x_norm / v_norm)
        with replayed_rng(rng_state, x.device), frozen_norm_stats(model), \
                (pattern.replaying() if pattern is not None else nullcontext()):
            plus = forward_scores(x + h * v)
        total = total + (plus[chosen].sum() - scores[chosen].sum()) / h
        coeff[chosen] = 1.0 / h
    return total, coeff


def penalty_direction(grads: torch.Tensor, masks: torch.Tensor, *, spec: GuidanceSpec) -> torch.Tensor:
    """v = dR/dg at the current g (N, C, T, H, W), detached: the direction of the HVP."""
    g = grads.detach().requires_grad_(True)
    (v,) = torch.autograd.grad(gradient_penalty(g, masks, spec=spec)[0], g)
    return v.detach()


def fd_entry(*, forward_scores: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, clip: torch.Tensor,
             scores: torch.Tensor, grads: torch.Tensor, masks: torch.Tensor, batch_index: torch.Tensor,
             penalty: torch.Tensor, spec: GuidanceSpec, rng_state: dict,
             pattern: KinkPattern | None) -> torch.Tensor:
    """penalty.detach() + (S - S.detach()), S the finite-difference surrogate: value R, gradient dR/dtheta."""
    slots = roi_slots(batch_index) if spec.region == "per_source" else None
    s, _ = fd_surrogate(forward_scores=forward_scores, model=model, clip=clip, scores=scores,
                        v_rows=penalty_direction(grads, masks, spec=spec), batch_index=batch_index, slots=slots,
                        fd_step=spec.fd_step, rng_state=rng_state, pattern=pattern)
    return penalty.detach() + (s - s.detach())


def fd_fast_entries(*, forward_scores: Callable[[torch.Tensor], torch.Tensor], model: nn.Module,
                    clip: torch.Tensor, scores: torch.Tensor, grads: torch.Tensor, masks: torch.Tensor,
                    batch_index: torch.Tensor, params: list, g_params: list, penalty: torch.Tensor,
                    weight: float, task: torch.Tensor, spec: GuidanceSpec, rng_state: dict,
                    pattern: KinkPattern | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(task, guidance) entries when g_params = grad_theta s(x) is known and s = R * L_task
    (REGION union, SCORE task_loss): L_task's gradient is g_params / R and the FD base term
    -g_params / h, both as linear surrogates, so the trainer's backward only runs through the
    extra forward's graph."""
    s, coeff = fd_surrogate(forward_scores=forward_scores, model=model, clip=clip, scores=scores.detach(),
                            v_rows=penalty_direction(grads, masks, spec=spec), batch_index=batch_index,
                            slots=None, fd_step=spec.fd_step, rng_state=rng_state, pattern=pattern)
    inv_h = float(coeff[0])  # union: one step for the whole batch
    entry = weight * (penalty.detach() + (s - s.detach()) - inv_h * linear_surrogate(params, g_params))
    return task.detach() + linear_surrogate(params, g_params) / len(scores), entry
