"""The FIR filter pass and bias_act fused: one read and one write of the largest tensors of G.

After every upsampling transposed conv of the synthesis network comes a 4x4 FIR pass, and after it
bias_act (with the demodulation and the next conv's input modulation riding in bias_act's pass, see
core/synthesis.py). At inference on the GPU the filter kernel applies bias_act to its registers, so
the filtered tensor is never written and read back (bench/roofline.py counts the traffic it saves).
Everywhere else (CPU, a gradient wanted, other shapes) it is the two ops one after the other.
"""

from __future__ import annotations

import torch

from core.ops import _dispatch
from core.ops.activations import ACTIVATIONS
from core.ops.bias_act import bias_act
from core.ops.cuda.functions import KERNEL_ACTS, upfirdn2d_bias_act_cuda
from core.ops.options import current
from core.ops.upfirdn2d import filter_size, parse_padding, upfirdn2d


def upfirdn2d_bias_act(x: torch.Tensor, f: torch.Tensor, padding=0, flip_filter: bool = False, gain: float = 1.0,
                       b: torch.Tensor | None = None, act: str = "linear", alpha: float | None = None,
                       act_gain: float | None = None, clamp: float | None = None,
                       scale: torch.Tensor | None = None, out_scale: torch.Tensor | None = None,
                       impl: str | None = None) -> torch.Tensor:
    """`bias_act(upfirdn2d(x, f, padding=padding, flip_filter=..., gain=gain), b, act=act, alpha=alpha,
    gain=act_gain, clamp=clamp, scale=scale, out_scale=out_scale)` (x `[N, C, H, W]`, no resampling)."""
    if _fusable(x, f, act, impl, (x, b, scale, out_scale)):
        spec = ACTIVATIONS[act]
        assert b is None or b.shape == (x.shape[1],), f"bias {tuple(b.shape)} vs x {tuple(x.shape)}"
        for t in (scale, out_scale):
            assert t is None or t.shape == x.shape[:2], f"scale {tuple(t.shape)} vs x {tuple(x.shape)}"
        return upfirdn2d_bias_act_cuda(
            x, f, parse_padding(padding), flip_filter, gain, b, act,
            spec.def_alpha if alpha is None else float(alpha), spec.def_gain if act_gain is None else float(act_gain),
            -1.0 if clamp is None else float(clamp), scale, out_scale)
    y = upfirdn2d(x, f, padding=padding, flip_filter=flip_filter, gain=gain, impl=impl)
    return bias_act(y, b, act=act, alpha=alpha, gain=act_gain, clamp=clamp, scale=scale, out_scale=out_scale,
                    impl=impl)


def _fusable(x: torch.Tensor, f: torch.Tensor, act: str, impl: str | None, tensors) -> bool:
    # the kernel's epilogue is in its 4x4 path
    if not current().fuse_bias_act or act not in KERNEL_ACTS or x.ndim != 4 or filter_size(f) != (4, 4):
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False  # forward-only kernel: training composes the two differentiable ops
    return _dispatch.resolve("upfirdn2d", impl, x) == "cuda" and _dispatch.resolve("bias_act", impl, x) == "cuda"
