"""BatchNorm in the guided pass: the forward whose scores' input gradient g = ds/dx is penalized.

In train mode a BatchNorm layer normalizes with the batch's mean and variance, which depend on
every clip of the batch: d s_b / d x_{b'} != 0 for b' != b, so clip b's input-gradient row
also carries the batch-statistics terms of the other clips' scores (union rows, and per-source
slot rows, see :mod:`stal.guidance.gradients`), and the penalty counts that coupling as
off-target evidence. GUIDANCE.INNER_BN chooses the guided pass's BatchNorm:

- "train": as the task loss's forward (today's behaviour; one forward serves both);
- "batch_constant": the batch's statistics, computed from the same activations as in train
  mode but used as constants (no gradient through the batch mean / variance): the guided
  function is the one the task loss trains at this step, only without the cross-clip terms,
  so row b's gradient is d s_b / d x_b alone. The recommended choice: it needs no warmed-up
  running statistics (eval-mode BatchNorm from scratch normalizes with the initial 0 / 1
  statistics, a different function from the one trained);
- "eval": the running statistics (the function that is deployed and tested). A row's
  gradient then does not depend on the other clips at all; good with pretrained backbones.

With "batch_constant" / "eval" the guided scores come from a second forward (same RNG state,
so the same dropout masks; running statistics are not updated by it), whose graph also
serves the double backward; the FD extra forwards replay the recorded batch statistics, so
they differentiate the same function. Models without BatchNorm (GroupNorm: small3d) are
unaffected and keep one forward. SyncBatchNorm is normalized with the local batch here.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Iterator

import torch
from torch import nn


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm module of ``model`` (through a DDP wrapper)."""
    return [m for m in getattr(model, "module", model).modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class InnerBatchNorm:
    """Patches the BatchNorm layers of ``model`` for the guided pass (``mode`` as in the module doc).

    ``with bn.recording():`` around the guided forward (batch_constant: records each layer's
    statistics in call order), ``with bn.replaying():`` around each FD extra forward.
    ``active`` is False for mode "train" or a model without BatchNorm: then nothing changes.
    """

    def __init__(self, model: nn.Module, *, mode: str):
        self.mode = mode
        self.layers = [] if mode == "train" else batchnorm_layers(model)
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._replay: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.layers)

    @contextmanager
    def recording(self) -> Iterator[None]:
        self.stats, self._replay = [], None
        with self._patched():
            yield

    @contextmanager
    def replaying(self) -> Iterator[None]:
        self._replay = 0
        try:
            with self._patched():
                yield
        finally:
            self._replay = None

    @contextmanager
    def _patched(self) -> Iterator[None]:
        for layer in self.layers:  # an instance attribute shadows the class's forward
            layer.forward = partial(self._forward, layer)
        try:
            yield
        finally:
            for layer in self.layers:
                del layer.forward

    def _statistics(self, layer: nn.modules.batchnorm._BatchNorm, x: torch.Tensor):
        """(mean, var) float32 (C,), detached: running ones, or the batch's (recorded / replayed)."""
        batch = self.mode == "batch_constant" and (layer.training or layer.running_mean is None)
        if not batch:
            if layer.running_mean is None:
                raise ValueError("GUIDANCE.INNER_BN eval needs BatchNorm running statistics "
                                 "(track_running_stats=True)")
            return layer.running_mean.float(), layer.running_var.float()
        if self._replay is not None:
            if self._replay >= len(self.stats):
                raise RuntimeError("FD extra forward makes more BatchNorm calls than the guided forward")
            self._replay += 1
            return self.stats[self._replay - 1]
        dims = [0] + list(range(2, x.dim()))
        var, mean = torch.var_mean(x.detach().float(), dim=dims, correction=0)  # biased, as train-mode BN
        self.stats.append((mean, var))
        return mean, var

    def _forward(self, layer: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
        """Elementwise normalization with constant statistics (double-backward capable)."""
        mean, var = self._statistics(layer, x)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var + layer.eps).to(x.dtype).view(shape)
        if layer.affine:
            y = y * layer.weight.to(x.dtype).view(shape) + layer.bias.to(x.dtype).view(shape)
        return y
