"""Modulated convolution with weight demodulation (StyleGAN2, Karras et al. 2020, eqs. 1-3).

Two formulations of the same function:
- the reference (`impl="ref"`, or `OpsOptions.fast_modconv=False`): the per-sample weights
  `w[n, o, i, k] = weight[o, i, k] * styles[n, i]` are materialised to compute the demodulation
  coefficients, as in the paper's eq. 3;
- the fast path (the default): eq. 3's sum factorises,
  `sum_{i,k} (weight[o,i,k] * styles[n,i])^2 = sum_i styles[n,i]^2 * sum_k weight[o,i,k]^2`,
  so the coefficients are one `[N, I] x [I, O]` matmul and the `[N, O, I, kh, kw]` tensor is never
  built for the shared-conv (training) path; the grouped-conv path scales the weight once by
  `styles * dcoefs` and fuses the noise addition with the demodulation.
Both are differentiable to any order; they agree to rounding (bench/ops_gpu.py measures both).
"""

from __future__ import annotations

import numpy as np
import torch

from core.ops.bias_act import bias_act
from core.ops.conv2d_resample import conv2d_resample
from core.ops.options import current, resolve_impl
from core.weight_cache import derived


def _fast(impl: str | None) -> bool:
    return current().fast_modconv and resolve_impl(impl) != "ref"


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise=None, up: int = 1,
                     down: int = 1, padding: int = 0, resample_filter=None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True,
                     impl: str | None = None, bias_act_args: dict | None = None, input_scaled: bool = False):
    """x `[N, I, H, W]`, weight `[O, I, kh, kw]`, styles `[N, I]` -> `[N, O, H', W']` in x's dtype.

    fused_modconv=True folds the per-sample weights into one grouped convolution; False scales the
    activations before and after a shared convolution (cheaper for large batches in training).
    `bias_act_args` (shared conv, no noise): return `bias_act(y, **bias_act_args)` with the
    demodulation as bias_act's `scale`, so it costs no pass of its own: it rides in bias_act's pass,
    or with bias_act in the upsampling filter's pass (core/ops/fused.py). `input_scaled` (shared
    conv): x already carries its modulation, `input_styles(...)` (the producer's bias_act `out_scale`).
    """
    n = x.shape[0]
    c_out, c_in, kh, kw = weight.shape
    assert x.ndim == 4 and x.shape[1] == c_in, f"x {tuple(x.shape)} vs weight {tuple(weight.shape)}"
    assert styles.shape == (n, c_in), f"styles {tuple(styles.shape)}, expected {(n, c_in)}"

    weight, styles = _prenormalize(x.dtype, weight, styles, demodulate)
    assert not (input_scaled and fused_modconv), "input_scaled is for the shared conv"
    x_styles = None if input_scaled else styles
    kwargs = dict(f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight, impl=impl)
    if bias_act_args is not None:
        assert demodulate and not fused_modconv and noise is None, "bias_act_args is for the shared conv"
        assert "scale" not in bias_act_args, "the demodulation is bias_act's scale"
        x = _scale_input(x, x_styles)
        args = dict(bias_act_args, scale=_demod_coefs(weight, styles))
        return conv2d_resample(x, _as(weight, x.dtype), bias_act_args=args, **kwargs)
    if _fast(impl):
        return _modconv_fast(x, weight, styles, x_styles, noise, demodulate, fused_modconv, kwargs)
    return _modconv_ref(x, weight, styles, x_styles, noise, demodulate, fused_modconv, kwargs)


def modulated_conv1x1(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """A 1x1 modulated conv without demodulation (toRGB) as one batched matmul with per-sample weights.

    x `[N, I, H, W]` (NCHW or channels-last), weight `[O, I, 1, 1]`, styles `[N, I]` -> `[N, O, H, W]`.
    Equal to `modulated_conv2d(x, weight, styles, demodulate=False)`; x is read once (O is small:
    the per-sample weights cost nothing), where the shared conv scales x in a pass of its own first.
    """
    n, c_in = x.shape[:2]
    c_out = weight.shape[0]
    assert weight.shape == (c_out, c_in, 1, 1) and styles.shape == (n, c_in), (weight.shape, styles.shape)
    w = (weight.reshape(1, c_out, c_in) * styles.reshape(n, 1, c_in)).to(x.dtype)  # [N, O, I]
    h, wd = x.shape[2:]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * wd, c_in), w.transpose(1, 2))  # [N, HW, O]
        return y.reshape(n, h, wd, c_out).permute(0, 3, 1, 2)
    return torch.bmm(w, x.reshape(n, c_in, h * wd)).reshape(n, c_out, h, wd)


def input_styles(dtype: torch.dtype, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """What the shared conv multiplies its input by (`[N, I]`, after the fp16 pre-normalization), for a
    producer that applies it in its own pass (`input_scaled=True` then skips it here)."""
    return _prenormalize(dtype, weight, styles, demodulate=True)[1]


def _as(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return derived(weight, ("as", dtype), lambda w: w.to(dtype))


def _scale_input(x: torch.Tensor, x_styles: torch.Tensor | None) -> torch.Tensor:
    return x if x_styles is None else x * x_styles.to(x.dtype).reshape(x.shape[0], -1, 1, 1)


def modulated_conv2d_videos(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: int = 1,
                            padding: int = 0, resample_filter=None, demodulate: bool = True,
                            flip_weight: bool = True, impl: str | None = None,
                            bias_act_args: dict | None = None) -> torch.Tensor:
    """Modulated conv of T frames of N videos that share their styles, in the frame-major layout.

    x `[T, N*I, H, W]` (the N videos' channels side by side), styles `[N, I]` -> `[T, N*O, H', W']`.
    Each video's modulated, demodulated weight is built once (not once per frame) and applied to its
    T frames by one grouped convolution (groups = N): for one video it is a plain convolution with no
    per-sample scaling pass at all. Equal to `modulated_conv2d(..., fused_modconv=True)` applied to
    the N*T frames one by one (tests/test_core_model.py). `bias_act_args`: as conv2d_resample's.
    """
    n = styles.shape[0]
    c_out, c_in, kh, kw = weight.shape
    assert x.ndim == 4 and x.shape[1] == n * c_in, f"x {tuple(x.shape)}: expected [T, {n}*{c_in}, H, W]"
    assert styles.shape == (n, c_in), f"styles {tuple(styles.shape)}, expected [N, {c_in}]"
    weight, styles = _prenormalize(x.dtype, weight, styles, demodulate)
    w = _folded_weight(weight, styles, demodulate, fast=_fast(impl))  # [N, O, I, kh, kw]
    return conv2d_resample(x, w.reshape(-1, c_in, kh, kw).to(x.dtype), f=resample_filter, up=up,
                           padding=padding, groups=n, flip_weight=flip_weight, impl=impl,
                           bias_act_args=bias_act_args)


def _prenormalize(dtype: torch.dtype, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool):
    """Scale weight and styles so that fp16 products cannot overflow (demodulation undoes the scale)."""
    if dtype != torch.float16 or not demodulate:
        return weight, styles
    c_in, kh, kw = weight.shape[1:]

    def prenormalized(w):
        return w * (1 / np.sqrt(c_in * kh * kw) / w.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
    weight = derived(weight, "prenormalized", prenormalized)
    styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    return weight, styles


def _folded_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, fast: bool) -> torch.Tensor:
    """Per-sample weights `[N, O, I, kh, kw]` = weight * styles (eq. 1), demodulated (eq. 3)."""
    n, c_in = styles.shape
    if not fast:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
        if demodulate:
            w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, -1, 1, 1, 1)
        return w
    scale = styles.reshape(n, 1, c_in)  # [N, 1, I]: one multiply of the big weight tensor, not two
    if demodulate:
        scale = scale * _demod_coefs(weight, styles).reshape(n, -1, 1)  # [N, O, I]
    return weight.unsqueeze(0) * scale.unsqueeze(-1).unsqueeze(-1)


def _modconv_ref(x, weight, styles, x_styles, noise, demodulate, fused_modconv, kwargs):
    n = x.shape[0]
    c_out, c_in, kh, kw = weight.shape
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)

    if not fused_modconv:
        x = _scale_input(x, x_styles)
        x = conv2d_resample(x, _as(weight, x.dtype), **kwargs)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, c_in, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), groups=n, **kwargs)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def _demod_coefs(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Eq. 3 as a matmul: `[N, O]` = rsqrt(styles^2 @ (sum_k weight^2)^T + eps)."""
    wsq = derived(weight, "sum_k_squares", lambda w: w.square().sum(dim=[2, 3]))  # [O, I]
    return (styles.square() @ wsq.t() + 1e-8).rsqrt()


def _modconv_fast(x, weight, styles, x_styles, noise, demodulate, fused_modconv, kwargs):
    n = x.shape[0]
    c_out, c_in, kh, kw = weight.shape
    if not fused_modconv:
        dcoefs = _demod_coefs(weight, styles) if demodulate else None  # [N, O]
        x = _scale_input(x, x_styles)
        x = conv2d_resample(x, _as(weight, x.dtype), **kwargs)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x

    w = _folded_weight(weight, styles, demodulate, fast=True)  # [N, O, I, kh, kw]
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(-1, c_in, kh, kw).to(x.dtype), groups=n, **kwargs)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def modulated_conv_act(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, bias: torch.Tensor,
                       act_gain: float, clamp: float | None, up: int = 1, padding: int = 1, resample_filter=None,
                       flip_weight: bool = True, fused_modconv: bool = True, input_scaled: bool = False,
                       out_scale: torch.Tensor | None = None) -> torch.Tensor:
    """A synthesis layer: `clamp(lrelu(modconv(x) + bias) * act_gain) * out_scale`, x `[M, I, r, r]`.

    How it runs is the ops' business (`OpsOptions.fuse_bias_act`): with the shared conv the
    demodulation, bias, activation and `out_scale` (the next layer's input modulation) take one pass,
    inside the upsampling filter's on a GPU; otherwise conv, then bias_act. `input_scaled`: x already
    carries its modulation (see `chains_input_modulation`).
    """
    act_args = dict(b=bias.to(x.dtype), act="lrelu", gain=act_gain, clamp=clamp)
    kw = dict(up=up, padding=padding, resample_filter=resample_filter, flip_weight=flip_weight)
    if fused_modconv:
        assert not input_scaled and out_scale is None, "the grouped conv modulates its weights"
        x = modulated_conv2d(x, weight, styles, fused_modconv=True, **kw)
    elif current().fuse_bias_act:
        return modulated_conv2d(x, weight, styles, fused_modconv=False, input_scaled=input_scaled,
                                bias_act_args=dict(act_args, out_scale=out_scale), **kw)
    else:
        x = modulated_conv2d(x, weight, styles, fused_modconv=False, input_scaled=input_scaled, **kw)
    return bias_act(x, out_scale=out_scale, **act_args)


def chains_input_modulation(fused_modconv: bool) -> bool:
    """Whether a layer's input modulation should ride in the previous layer's pass (`out_scale`)."""
    return not fused_modconv and current().fuse_bias_act


def modulated_torgb(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, bias: torch.Tensor,
                    clamp: float | None, fused_modconv: bool = True) -> torch.Tensor:
    """toRGB: a 1x1 modulated conv without demodulation, + bias, clamped; x `[M, I, R, R]` -> `[M, 3, R, R]`."""
    if chains_input_modulation(fused_modconv):  # one read of x, no scaling pass (3 outputs only)
        x = modulated_conv1x1(x, weight, styles)
    else:
        x = modulated_conv2d(x, weight, styles, demodulate=False, fused_modconv=fused_modconv)
    return bias_act(x, bias.to(x.dtype), clamp=clamp)
