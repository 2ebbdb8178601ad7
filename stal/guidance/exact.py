"""Exact guidance: R built on g = ds/dx with ``create_graph=True``, so the trainer's backward is a
double backward. Every model op needs a double-backward kernel; a missing one is reported once,
as a one-line ConfigError, instead of deep inside ``backward()``.
"""

from __future__ import annotations

from torch.nn.attention import SDPBackend, sdpa_kernel

from stal.errors import ConfigError


def exact_context():
    """The math attention backend: the fused SDPA kernels have no double backward (harmless for CNNs)."""
    return sdpa_kernel(SDPBackend.MATH)


def reraise_autograd(exc: RuntimeError):
    """Re-raise an autograd failure, as a one-line ConfigError when an op lacks double backward."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not any(k in msg.lower() for k in ("double backward", "not implemented", "not supported")):
        raise exc
    raise ConfigError(f"GUIDANCE.MODE exact needs double backward through every model op, but autograd "
                      f"failed: {msg!r}; build the model with double_backward=True (differentiable "
                      f"RoIAlign) or set GUIDANCE.MODE fd") from None
