"""Autograd wiring of the CUDA kernels (first- and second-order gradients, as R1 needs).

bias_act (linear and leaky ReLU, the model's two activations): the forward kernel keeps y for the
backward; the gradient is the same kernel in mode 1 (act' read off the sign of y), wrapped in its own
autograd Function so that it is itself differentiable; act'' is zero, so that is the whole story.

upfirdn2d is linear in x, so its gradient is another upfirdn2d (up and down swapped, the filter
flipped, the padding mirrored) and differentiates to any order.
"""

from __future__ import annotations

import torch

from core.ops import _dispatch

# The activations the kernels implement, with their codes in common.h; the others run the reference.
KERNEL_ACTS = {"linear": 1, "lrelu": 3}
_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _ops():
    return _dispatch.extension()


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _reduce_dims(x: torch.Tensor, dim: int) -> list[int]:
    return [i for i in range(x.ndim) if i != dim]


# cfg = (dim, act, alpha, gain, clamp), all plain Python values.
class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, cfg):
        dim, act, alpha, gain, clamp = cfg
        x = x.contiguous(memory_format=_memory_format(x))
        y = _ops().bias_act(x, b, None, 0, dim, KERNEL_ACTS[act], alpha, gain, clamp)
        ctx.save_for_backward(y if act == "lrelu" or clamp >= 0 else None)
        ctx.cfg = cfg
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        dx = _BiasActGrad.apply(dy, y, ctx.cfg)
        db = dx.sum(_reduce_dims(dx, ctx.cfg[0])) if ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActGrad(torch.autograd.Function):
    """dx = dy * gain * act'(x + b) * [not clamped]: linear in dy, constant in x and b almost everywhere."""

    @staticmethod
    def forward(ctx, dy, y, cfg):
        dim, act, alpha, gain, clamp = cfg
        dy = dy.contiguous(memory_format=_memory_format(y)) if y is not None else dy.contiguous()
        ctx.save_for_backward(y)
        ctx.cfg = cfg
        return _ops().bias_act(dy, None, y, 1, dim, KERNEL_ACTS[act], alpha, gain, clamp)

    @staticmethod
    def backward(ctx, d_dx):
        (y,) = ctx.saved_tensors
        d_dy = _BiasActGrad.apply(d_dx, y, ctx.cfg) if ctx.needs_input_grad[0] else None
        return d_dy, None, None


def bias_act_cuda(x: torch.Tensor, b: torch.Tensor | None, dim: int = 1, act: str = "linear",
                  alpha: float = 0.0, gain: float = 1.0, clamp: float = -1.0,
                  scale: torch.Tensor | None = None, out_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Kernel version of `bias_act_ref` (same arguments, already resolved; clamp < 0 = none).

    `scale` / `out_scale` `[N, C]` multiply the input / the output; the kernel fuses them when no
    gradient is needed (inference), else they are PyTorch multiplies around the differentiable kernel.
    """
    if act not in KERNEL_ACTS:
        raise ValueError(f"the bias_act kernel implements {sorted(KERNEL_ACTS)}, not {act!r}")
    if b is not None and b.dtype != x.dtype:  # the reference's x + b promotes; do the same
        dtype = torch.promote_types(x.dtype, b.dtype)
        x, b = x.to(dtype), b.to(dtype)
    if x.dtype not in _DTYPES:
        raise TypeError(f"bias_act_cuda supports {_DTYPES}, got {x.dtype}")
    dim = dim % x.ndim if x.ndim else 0
    if b is not None:
        b = b.contiguous()
    scale, out_scale = (None if t is None else t.to(x.dtype).contiguous() for t in (scale, out_scale))
    cfg = (dim, act, float(alpha), float(gain), float(clamp))
    if scale is None and out_scale is None:
        return _BiasAct.apply(x, b, cfg)
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, b, scale, out_scale))):
        x = x.contiguous(memory_format=_memory_format(x))  # inference: both scales inside the kernel's pass
        return _ops().bias_act(x, b, None, 0, dim, KERNEL_ACTS[act], *cfg[2:], scale, out_scale)
    shape = [x.shape[i] if i in (0, dim) else 1 for i in range(x.ndim)]
    y = _BiasAct.apply(x * scale.reshape(shape) if scale is not None else x, b, cfg)
    return y * out_scale.reshape(shape) if out_scale is not None else y


def _upfirdn2d_out_size(size: int, up: int, down: int, pad0: int, pad1: int, taps: int) -> int:
    return (size * up + pad0 + pad1 - taps + down) // down


# cfg = (upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain)
class _Upfirdn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, cfg):
        upx, upy, downx, downy, px0, px1, py0, py1, flip, gain = cfg
        y = _ops().upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain)
        ctx.save_for_backward(f)
        ctx.cfg = cfg
        ctx.in_hw = (x.shape[2], x.shape[3])
        return y

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        upx, upy, downx, downy, px0, px1, py0, py1, flip, gain = ctx.cfg
        in_h, in_w = ctx.in_hw
        out_h, out_w = dy.shape[2], dy.shape[3]
        fh, fw = int(f.shape[0]), int(f.shape[-1])
        # The adjoint: correlate the zero-inserted dy with the flipped filter; the padding puts tap k
        # of output o back on input o*down + k - pad0 (divided by up), and the end padding makes the
        # result exactly [in_h, in_w].
        adj = (downx, downy, upx, upy,
               fw - px0 - 1, in_w * upx - out_w * downx + px0 - upx + 1,
               fh - py0 - 1, in_h * upy - out_h * downy + py0 - upy + 1,
               not flip, gain)
        dx = _Upfirdn2d.apply(dy, f, adj)
        assert dx.shape[2:] == (in_h, in_w), f"adjoint shape {tuple(dx.shape)} vs input {(in_h, in_w)}"
        return dx, None, None


def upfirdn2d_cuda(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int] = (1, 1),
                   down: tuple[int, int] = (1, 1), padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                   flip_filter: bool = False, gain: float = 1.0) -> torch.Tensor:
    """Kernel version of `upfirdn2d_ref`: x `[N, C, H, W]`, f float32 `[fh, fw]` or `[taps]` (separable)."""
    assert x.ndim == 4, f"x must be [N, C, H, W], got {tuple(x.shape)}"
    if x.dtype not in _DTYPES:
        raise TypeError(f"upfirdn2d_cuda supports {_DTYPES}, got {x.dtype}")
    f = f.to(device=x.device, dtype=torch.float32).contiguous()
    assert f.ndim in (1, 2), f"filter must be [taps] or [fh, fw], got {tuple(f.shape)}"
    (upx, upy), (downx, downy) = up, down
    px0, px1, py0, py1 = padding
    fh, fw = int(f.shape[0]), int(f.shape[-1])
    axes = ((x.shape[2], upy, downy, py0, py1, fh), (x.shape[3], upx, downx, px0, px1, fw))
    for size, u, d, p0, p1, taps in axes:
        if _upfirdn2d_out_size(size, u, d, p0, p1, taps) < 1:
            raise ValueError(f"upfirdn2d: padding {padding} and a {fh}x{fw} filter leave an empty output for "
                             f"input {tuple(x.shape)}")
    cfg = (int(upx), int(upy), int(downx), int(downy), int(px0), int(px1), int(py0), int(py1),
           bool(flip_filter), float(gain))
    return _Upfirdn2d.apply(x, f, cfg)


def upfirdn2d_bias_act_cuda(x: torch.Tensor, f: torch.Tensor, padding: tuple[int, int, int, int], flip_filter: bool,
                            gain: float, b: torch.Tensor | None, act: str, alpha: float, act_gain: float,
                            clamp: float, scale: torch.Tensor | None = None,
                            out_scale: torch.Tensor | None = None) -> torch.Tensor:
    """`bias_act_cuda(upfirdn2d_cuda(x, f, padding=...), b, ...)` at up = down = 1 in one pass, forward only.

    For inference: the filter kernel applies bias_act's forward to its registers, so the filtered
    tensor is never written and read back. Arguments resolved as by bias_act (clamp < 0 = none).
    """
    assert not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, b, scale, out_scale))), \
        "upfirdn2d_bias_act_cuda is forward-only; compose upfirdn2d and bias_act when a gradient is needed"
    if x.dtype not in _DTYPES or act not in KERNEL_ACTS:
        raise TypeError(f"upfirdn2d_bias_act_cuda supports {_DTYPES} and {sorted(KERNEL_ACTS)}, got {x.dtype}, {act}")
    f = f.to(device=x.device, dtype=torch.float32).contiguous()
    px0, px1, py0, py1 = (int(v) for v in padding)
    b, scale, out_scale = (None if t is None else t.to(x.dtype).contiguous() for t in (b, scale, out_scale))
    return _ops().upfirdn2d(x, f, 1, 1, 1, 1, px0, px1, py0, py1, bool(flip_filter), float(gain), b, scale,
                            out_scale, KERNEL_ACTS[act], float(alpha), float(act_gain), float(clamp))
