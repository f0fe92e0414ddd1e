"""Modulated convolution with weight demodulation (StyleGAN2, Karras et al. 2020, eqs. 1-3).

Two formulations of the same function:
- the reference (`impl="ref"`, or `FAST_PATH = False`): the per-sample weights
  `w[n, o, i, k] = weight[o, i, k] * styles[n, i]` are materialised to compute the demodulation
  coefficients, as in the paper's eq. 3;
- the fast path (the default): eq. 3's sum factorises,
  `sum_{i,k} (weight[o,i,k] * styles[n,i])^2 = sum_i styles[n,i]^2 * sum_k weight[o,i,k]^2`,
  so the coefficients are one `[N, I] x [I, O]` matmul and the `[N, O, I, kh, kw]` tensor is never
  built for the shared-conv (training) path; the grouped-conv path scales the weight once by
  `styles * dcoefs` and fuses the noise addition with the demodulation.
Both are differentiable to any order; they agree to rounding (bench/ops_gpu.py measures both).
At inference on a GPU the per-sample weights (grouped conv, per-video layout, a separate toRGB) and the shared
conv's coefficients (demodulation, input scales) come from CUDA kernels (core/ops/cuda/modulate_weight.cu):
one launch per layer instead of ~10 small PyTorch ops.
"""

from __future__ import annotations

import numpy as np
import torch

from core.ops import _dispatch
from core.ops.conv2d_resample import conv2d_resample, layout
from core.ops.fused import bias_act_epilogue
from core.ops.weight_cache import derived

# Benchmarks set this to False to time the reference formulation under impl="auto".
FAST_PATH = True
# bench/ops_gpu.py sets this to False to time the modulation at inference (weight folds, demodulation
# coefficients, input scales) in PyTorch ops instead of one kernel launch per layer.
FOLD_KERNEL = True


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise=None, up: int = 1,
                     down: int = 1, padding: int = 0, resample_filter=None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True,
                     impl: str = "auto", bias_act_args: dict | None = None, input_scaled: bool = False):
    """x `[N, I, H, W]`, weight `[O, I, kh, kw]`, styles `[N, I]` -> `[N, O, H', W']` in x's dtype.

    fused_modconv=True folds the per-sample weights into one grouped convolution; False scales the
    activations before and after a shared convolution (cheaper for large batches in training).
    `bias_act_args` (no noise): return `bias_act(y, **bias_act_args)` (with a `torgb` entry
    `bias_act_torgb`'s pair, core/ops/fused.py); for the shared conv the demodulation is bias_act's
    `scale`, so it costs no pass of its own. At inference on a GPU it rides in bias_act's pass, or with
    bias_act in the upsampling filter's pass. `input_scaled` (shared conv): x already carries its
    modulation, `input_styles(...)` (the producer's bias_act `out_scale`).
    """
    n = x.shape[0]
    c_out, c_in, kh, kw = weight.shape
    assert x.ndim == 4 and x.shape[1] == c_in, f"x {tuple(x.shape)} vs weight {tuple(weight.shape)}"
    assert styles.shape == (n, c_in), f"styles {tuple(styles.shape)}, expected {(n, c_in)}"
    assert bias_act_args is None or noise is None, "bias_act_args take no noise"
    if fused_modconv and not input_scaled and _modulation_kernels_apply(weight, styles, impl, x.dtype):
        x = x.reshape(1, -1, *x.shape[2:])
        w = _folded_weight_kernel(weight, styles, demodulate, x.dtype, layout(x))  # [N*O, I, kh, kw]
        args = None if bias_act_args is None else _grouped_args(bias_act_args, n)  # in the filter's pass at up=2
        out = conv2d_resample(x, w, groups=n, f=resample_filter, up=up, down=down, padding=padding,
                              flip_weight=flip_weight, impl=impl, bias_act_args=args)
        if isinstance(out, tuple):  # (y, img) of bias_act_torgb
            return tuple(t.reshape(n, -1, *t.shape[2:]) for t in out)
        x = out.reshape(n, -1, *out.shape[2:])
        return x + noise.to(x.dtype) if noise is not None else x

    assert not (input_scaled and fused_modconv), "input_scaled is for the shared conv"
    kwargs = dict(f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight, impl=impl)
    if bias_act_args is not None and fused_modconv:  # the grouped conv in PyTorch ops: bias_act after it
        y = modulated_conv2d(x, weight, styles, up=up, down=down, padding=padding, resample_filter=resample_filter,
                             demodulate=demodulate, flip_weight=flip_weight, fused_modconv=True, impl=impl)
        return bias_act_epilogue(y, bias_act_args, impl)
    if bias_act_args is not None:
        assert demodulate, "the shared conv's bias_act_args carry its demodulation"
        assert "scale" not in bias_act_args, "the demodulation is bias_act's scale"
        if _modulation_kernels_apply(weight, styles, impl, x.dtype):  # the coefficients in one launch, in x's dtype
            dcoefs, x_styles = _coefs_kernel(weight, styles, x.dtype, want_styles=not input_scaled)
            weight = _prenormalized_weight(weight) if x.dtype == torch.float16 else weight  # cached: no launch
        else:
            weight, styles = _prenormalize(x.dtype, weight, styles, demodulate)
            dcoefs, x_styles = _demod_coefs(weight, styles), None if input_scaled else styles
        x = _scale_input(x, x_styles)
        args = dict(bias_act_args, scale=dcoefs)
        return conv2d_resample(x, _as(weight, x.dtype), bias_act_args=args, **kwargs)
    weight, styles = _prenormalize(x.dtype, weight, styles, demodulate)
    x_styles = None if input_scaled else styles
    if FAST_PATH and impl != "ref":
        return _modconv_fast(x, weight, styles, x_styles, noise, demodulate, fused_modconv, kwargs)
    return _modconv_ref(x, weight, styles, x_styles, noise, demodulate, fused_modconv, kwargs)


def _grouped_args(bias_act_args: dict, n: int) -> dict:
    """bias_act_args of N samples `[N, O, H, W]` for their grouped conv's output `[1, N*O, H, W]`."""
    args = dict(bias_act_args)
    assert "scale" not in args, "the grouped conv's weights are demodulated already"
    if n > 1:
        if args.get("b") is not None:
            args["b"] = args["b"].repeat(n)
        if args.get("out_scale") is not None:
            args["out_scale"] = args["out_scale"].reshape(1, -1)
        if args.get("torgb") is not None:
            torgb = dict(args["torgb"])
            torgb["rgb_styles"] = torgb["rgb_styles"].reshape(1, n, -1)  # [1, N, C]
            if torgb.get("skip") is not None:
                torgb["skip"] = torgb["skip"].reshape(1, -1, *torgb["skip"].shape[2:])
            args["torgb"] = torgb
    return args


def modulated_conv1x1(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """A 1x1 modulated conv without demodulation (toRGB) as one batched matmul with per-sample weights.

    x `[N, I, H, W]` (NCHW or channels-last), weight `[O, I, 1, 1]`, styles `[N, I]` -> `[N, O, H, W]`.
    Equal to `modulated_conv2d(x, weight, styles, demodulate=False)`; x is read once (O is small:
    the per-sample weights cost nothing), where the shared conv scales x in a pass of its own first.
    """
    n, c_in = x.shape[:2]
    c_out = weight.shape[0]
    assert weight.shape == (c_out, c_in, 1, 1) and styles.shape == (n, c_in), (weight.shape, styles.shape)
    if _modulation_kernels_apply(weight, styles, "auto", x.dtype):  # one launch: multiply and cast
        w = _folded_weight_kernel(weight, styles, False, x.dtype, torch.contiguous_format).reshape(n, c_out, c_in)
    else:
        w = (weight.reshape(1, c_out, c_in) * styles.reshape(n, 1, c_in)).to(x.dtype)  # [N, O, I]
    h, wd = x.shape[2:]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * wd, c_in), w.transpose(1, 2))  # [N, HW, O]
        return y.reshape(n, h, wd, c_out).permute(0, 3, 1, 2)
    return torch.bmm(w, x.reshape(n, c_in, h * wd)).reshape(n, c_out, h, wd)


def input_styles(dtype: torch.dtype, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """What the shared conv multiplies its input by (`[N, I]`, after the fp16 pre-normalization), for a
    producer that applies it in its own pass (`input_scaled=True` then skips it here)."""
    if _modulation_kernels_apply(weight, styles, "auto", dtype):
        return _coefs_kernel(weight, styles, dtype, want_styles=True, demod=False)[1]
    return _prenormalize(dtype, weight, styles, demodulate=True)[1]


def _as(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return derived(weight, ("as", dtype), lambda w: w.to(dtype))


def _scale_input(x: torch.Tensor, x_styles: torch.Tensor | None) -> torch.Tensor:
    return x if x_styles is None else x * x_styles.to(x.dtype).reshape(x.shape[0], -1, 1, 1)


def modulated_conv2d_videos(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: int = 1,
                            padding: int = 0, resample_filter=None, demodulate: bool = True,
                            flip_weight: bool = True, impl: str = "auto",
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
    if _modulation_kernels_apply(weight, styles, impl, x.dtype):
        w = _folded_weight_kernel(weight, styles, demodulate, x.dtype, layout(x))  # [N*O, I, kh, kw]
    else:
        w = _folded_weight_ops(weight, styles, demodulate, x.dtype, layout(x), fast=FAST_PATH and impl != "ref")
    return conv2d_resample(x, w, f=resample_filter, up=up,
                           padding=padding, groups=n, flip_weight=flip_weight, impl=impl,
                           bias_act_args=bias_act_args)


def _prenormalize(dtype: torch.dtype, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool):
    """Scale weight and styles so that fp16 products cannot overflow (demodulation undoes the scale)."""
    if dtype != torch.float16 or not demodulate:
        return weight, styles
    return _prenormalized_weight(weight), styles / styles.norm(float("inf"), dim=1, keepdim=True)


def _prenormalized_weight(weight: torch.Tensor) -> torch.Tensor:
    c_in, kh, kw = weight.shape[1:]

    def prenormalized(w):
        return w * (1 / np.sqrt(c_in * kh * kw) / w.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
    return derived(weight, "prenormalized", prenormalized)


def _folded_weight_ops(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, dtype: torch.dtype,
                       memory_format: torch.memory_format, fast: bool = True) -> torch.Tensor:
    """The per-sample weights `[N*O, I, kh, kw]` in the conv's dtype and layout from PyTorch ops: what
    `_folded_weight_kernel` computes in one launch."""
    w, s = _prenormalize(dtype, weight, styles, demodulate)
    w = _folded_weight(w, s, demodulate, fast=fast)  # [N, O, I, kh, kw]
    return w.reshape(-1, *weight.shape[1:]).to(dtype, memory_format=memory_format)  # one pass: cast and layout


def _modulation_kernels_apply(weight: torch.Tensor, styles: torch.Tensor, impl: str, dtype: torch.dtype) -> bool:
    """Whether the modulation's per-sample tensors (folded weights, demodulation coefficients, input
    scales) come from the CUDA kernels: at inference (no gradient to keep) on a GPU."""
    if not (FOLD_KERNEL and FAST_PATH) or impl == "ref":
        return False
    if weight.dtype != torch.float32 or dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False  # float64 runs (parity checks) and non-float32 parameters keep the PyTorch ops
    if torch.is_grad_enabled() and (weight.requires_grad or styles.requires_grad):
        return False
    return _dispatch.resolve("modulate_weight", impl, weight) == "cuda"


def _folded_weight_kernel(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, dtype: torch.dtype,
                          memory_format: torch.memory_format) -> torch.Tensor:
    """`_folded_weight` (after `_prenormalize`) as one kernel launch, written as `[N*O, I, kh, kw]` in the
    conv's dtype and memory format; the weight-only tensors it reads are cached (`derived`)."""
    from core.ops.cuda import modulate_weight_cuda  # lazily: the build is only wanted on a GPU

    norm = dtype == torch.float16 and demodulate  # the styles' share of _prenormalize, done in the kernel
    w = _prenormalized_weight(weight) if norm else weight
    wsq = derived(w, "sum_k_squares", lambda t: t.square().sum(dim=[2, 3])) if demodulate else None
    w = derived(w, ("memory_format", memory_format), lambda t: t.contiguous(memory_format=memory_format))
    return modulate_weight_cuda(w, wsq, styles, norm, dtype)


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


def _coefs_kernel(weight: torch.Tensor, styles: torch.Tensor, dtype: torch.dtype, want_styles: bool,
                  demod: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The shared conv's demodulation coefficients `[N, O]` (eq. 3, `_demod_coefs` after `_prenormalize`)
    and, if wanted, its input modulation (the pre-normalized styles `[N, I]`), in `dtype`, one launch."""
    from core.ops.cuda import modulation_coefs_cuda  # lazily: the build is only wanted on a GPU

    norm = dtype == torch.float16  # _prenormalize's styles scaling (the shared conv always demodulates)
    wsq_t = None
    if demod:
        w = _prenormalized_weight(weight) if norm else weight
        wsq_t = derived(w, "sum_k_squares_t", lambda t: t.square().sum(dim=[2, 3]).t().contiguous())  # [I, O]
    return modulation_coefs_cuda(styles, wsq_t, norm, dtype, want_styles)


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
    wsq = derived(weight, "sum_k_squares", lambda w: w.square().sum(dim=[2, 3]))  # [O, I] (as the kernel's)
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
