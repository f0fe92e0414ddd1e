"""Fused bias + activation + gain + clamp: y = clamp(act(x + b) * gain, -clamp, clamp)."""

from __future__ import annotations

import torch

from core.ops import _dispatch
from core.ops.activations import ACTIVATIONS
from core.ops.cuda.functions import KERNEL_ACTS, bias_act_cuda


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
    scale: torch.Tensor | None = None,
    out_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Add `b` along `dim` of `x`, apply `act`, scale by `gain`, clamp to [-clamp, clamp].

    `gain=None` uses the activation's default gain (sqrt(2) for relu-like); `clamp=None` disables
    clamping. Any shape and float dtype; returns a tensor of `x`'s shape and dtype. `scale`
    `[x.shape[0], x.shape[dim]]` multiplies x before the bias (a modulated conv's demodulation) and
    `out_scale` (same shape) the result (the next modulated conv's input modulation): at inference
    the kernel does both in its one pass.
    """
    spec = ACTIVATIONS[act]
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    clamp = -1.0 if clamp is None else float(clamp)
    if b is not None:
        assert b.ndim == 1 and b.shape[0] == x.shape[dim], f"bias {tuple(b.shape)} vs x {tuple(x.shape)}"
    for t in (scale, out_scale):
        if t is not None:
            assert x.ndim >= 2 and dim % x.ndim != 0, "scales need a sample dimension 0 and a channel dimension"
            assert t.shape == (x.shape[0], x.shape[dim]), f"scale {tuple(t.shape)} vs x {tuple(x.shape)}"
    kw = dict(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, scale=scale, out_scale=out_scale)
    if act in KERNEL_ACTS and _dispatch.resolve("bias_act", impl, x) == "cuda":
        return bias_act_cuda(x, b, **kw)
    return bias_act_ref(x, b, **kw)


def bias_act_ref(x, b=None, dim=1, act="linear", alpha=0.0, gain=1.0, clamp=-1.0, scale=None, out_scale=None):
    """Reference: plain PyTorch ops, differentiable to any order."""
    spec = ACTIVATIONS[act]
    dim = dim % x.ndim if x.ndim else 0
    shape = [x.shape[i] if i in (0, dim) else 1 for i in range(x.ndim)]
    if scale is not None:
        x = x * scale.to(x.dtype).reshape(shape)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    if out_scale is not None:
        x = x * out_scale.to(x.dtype).reshape(shape)
    return x
