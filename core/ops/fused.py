"""Passes fused at inference: the FIR filter with bias_act, and bias_act with toRGB.

After every upsampling transposed conv of the synthesis network comes a 4x4 FIR pass, and after it
bias_act (with the demodulation and the next conv's input modulation riding in bias_act's pass, see
core/synthesis.py). At inference on the GPU the filter kernel applies bias_act to its registers, so
the filtered tensor is never written and read back. Every block ends in a conv whose output goes
through bias_act and is then read again by toRGB: `bias_act_torgb` does both in one pass, so toRGB
never reads it back (bench/roofline.py counts the traffic each saves). Everywhere else (CPU, a gradient
wanted, other shapes) these are the ops one after the other.
"""

from __future__ import annotations

import torch

from core.ops import _dispatch
from core.ops.bias_act import ACTIVATIONS, bias_act
from core.ops.upfirdn2d import filter_size, parse_padding, upfirdn2d

# bench/ops_gpu.py turns these off to time the ops one after the other.
EPILOGUE = True
TORGB_EPILOGUE = True
_MAX_RGB, _MAX_TORGB_CHANNELS = 4, 1536  # the kernel's limits (shared memory: (R + 3) * C floats)


def upfirdn2d_bias_act(x: torch.Tensor, f: torch.Tensor, padding=0, flip_filter: bool = False, gain: float = 1.0,
                       b: torch.Tensor | None = None, act: str = "linear", alpha: float | None = None,
                       act_gain: float | None = None, clamp: float | None = None,
                       scale: torch.Tensor | None = None, out_scale: torch.Tensor | None = None,
                       impl: str = "auto") -> torch.Tensor:
    """`bias_act(upfirdn2d(x, f, padding=padding, flip_filter=..., gain=gain), b, act=act, alpha=alpha,
    gain=act_gain, clamp=clamp, scale=scale, out_scale=out_scale)` (x `[N, C, H, W]`, no resampling)."""
    if _fusable(x, f, impl, (x, b, scale, out_scale)):
        from core.ops.cuda import upfirdn2d_bias_act_cuda  # lazily, as bias_act and upfirdn2d do

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


def _fusable(x: torch.Tensor, f: torch.Tensor, impl: str, tensors) -> bool:
    if not EPILOGUE or x.ndim != 4 or filter_size(f) != (4, 4):  # the kernel's epilogue is in its 4x4 path
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False  # forward-only kernel: training composes the two differentiable ops
    return _dispatch.resolve("upfirdn2d", impl, x) == "cuda" and _dispatch.resolve("bias_act", impl, x) == "cuda"


def bias_act_torgb(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "lrelu", alpha: float | None = None,
                   gain: float | None = None, clamp: float | None = None, scale: torch.Tensor | None = None,
                   out_scale: torch.Tensor | None = None, *, rgb_weight: torch.Tensor, rgb_styles: torch.Tensor,
                   rgb_bias: torch.Tensor | None = None, rgb_clamp: float | None = None,
                   skip: torch.Tensor | None = None, impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """A synthesis block's last bias_act and its toRGB layer: (y, img).

    x `[B, G*C, H, W]` (G groups of C channels: the frame-major layout's videos, else G = 1), rgb_weight
    `[R, C]` (toRGB's 1x1 weight, its weight gain included), rgb_styles `[B or 1, G, C]` (toRGB's styles:
    its modulated weights are rgb_weight * rgb_styles, eq. 1 without demodulation), rgb_bias `[R]`, skip
    `[B, G*R, H, W]` (the upsampled image of the block before) or None.
    u = bias_act(x, b, act, alpha, gain, clamp, scale=scale); y = u * out_scale (if given);
    img = skip + bias_act(toRGB(u), rgb_bias, clamp=rgb_clamp) in float32. At inference on the GPU one
    kernel pass (core/ops/cuda/torgb.cu), which never reads u back; elsewhere the ops one after the other.
    """
    assert x.ndim == 4 and rgb_weight.ndim == 2 and rgb_styles.ndim == 3, \
        f"x {tuple(x.shape)}, rgb_weight {tuple(rgb_weight.shape)}, rgb_styles {tuple(rgb_styles.shape)}"
    (rgb_c, c), (sb, groups, _) = rgb_weight.shape, rgb_styles.shape
    batch, _, h, w = x.shape
    assert x.shape[1] == groups * c and rgb_styles.shape[2] == c and sb in (1, batch), \
        f"x {tuple(x.shape)} vs rgb_weight {tuple(rgb_weight.shape)}, rgb_styles {tuple(rgb_styles.shape)}"
    assert skip is None or skip.shape == (batch, groups * rgb_c, h, w), f"skip {tuple(skip.shape)}"
    tensors = (x, b, scale, out_scale, rgb_weight, rgb_styles, rgb_bias, skip)
    if torgb_epilogue_applies(x, tensors, c, rgb_c, impl):
        from core.ops.cuda import bias_act_torgb_cuda  # lazily, as bias_act does

        spec = ACTIVATIONS[act]
        alpha = spec.def_alpha if alpha is None else float(alpha)
        gain = spec.def_gain if gain is None else float(gain)
        return bias_act_torgb_cuda(x, b, act, alpha, gain, -1.0 if clamp is None else float(clamp), scale, out_scale,
                                   rgb_weight, rgb_styles, rgb_bias, -1.0 if rgb_clamp is None else float(rgb_clamp),
                                   skip)
    u = bias_act(x, b, act=act, alpha=alpha, gain=gain, clamp=clamp, scale=scale, impl=impl)
    modulated = (rgb_weight.unsqueeze(0).unsqueeze(0) * rgb_styles.unsqueeze(2)).to(u.dtype)  # [B or 1, G, R, C]
    rgb = torch.matmul(modulated, u.reshape(batch, groups, c, h * w))  # [B, G, R, HW]
    rgb_b = None if rgb_bias is None else rgb_bias.to(u.dtype).repeat(groups)
    img = bias_act(rgb.reshape(batch, groups * rgb_c, h, w), rgb_b, clamp=rgb_clamp, impl=impl).to(torch.float32)
    img = img if skip is None else skip + img
    y = u if out_scale is None else u * out_scale.to(u.dtype).reshape(batch, -1, 1, 1)
    return y, img


def bias_act_epilogue(y: torch.Tensor, bias_act_args: dict, impl: str = "auto"):
    """`bias_act(y, **bias_act_args)`, or with a `torgb` entry `bias_act_torgb(y, **bias_act_args, **torgb)` (its
    pair (y, img)): what a conv's `bias_act_args` ask for after a pass of its own."""
    args = dict(bias_act_args)
    torgb = args.pop("torgb", None)
    if torgb is not None:
        return bias_act_torgb(y, impl=impl, **args, **torgb)
    return bias_act(y, impl=impl, **args)


def torgb_epilogue_applies(x: torch.Tensor, tensors, channels: int, rgb_channels: int, impl: str = "auto",
                           dtype: torch.dtype | None = None) -> bool:
    """Whether bias_act_torgb runs as one kernel on activations of `dtype` (default x's) on x's device: at
    inference (no gradient wanted) on a GPU, for the kernel's dtypes and sizes."""
    if not TORGB_EPILOGUE or (dtype or x.dtype) not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    if rgb_channels > _MAX_RGB or channels > _MAX_TORGB_CHANNELS:
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False
    return _dispatch.resolve("bias_act", impl, x) == "cuda"
