"""Upsample, FIR-filter and downsample a batch of 2D images (StyleGAN2's resampling primitive)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from core.ops import _dispatch
from core.ops.cuda.functions import upfirdn2d_cuda


def setup_filter(f=(1, 3, 3, 1), normalize: bool = True, flip_filter: bool = False, gain: float = 1.0,
                 separable: bool | None = None) -> torch.Tensor:
    """A float32 FIR filter: `[fh, fw]` (non-separable) or `[taps]` (separable).

    A 1-D list of fewer than 8 taps becomes its 2-D outer product, so `[1, 3, 3, 1]` gives the
    `[4, 4]` `resample_filter` buffers of StyleGAN2 checkpoints. Normalized to sum 1 (DC gain 1).
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    assert f.ndim in (1, 2) and f.numel() > 0
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f * (gain ** (f.ndim / 2))


def parse_scaling(s) -> tuple[int, int]:
    sx, sy = (s, s) if isinstance(s, int) else tuple(s)
    assert sx >= 1 and sy >= 1
    return int(sx), int(sy)


def parse_padding(p) -> tuple[int, int, int, int]:
    """`p`, `[px, py]` or `[x0, x1, y0, y1]` -> (x0, x1, y0, y1)."""
    if isinstance(p, int):
        return p, p, p, p
    p = list(p)
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    assert len(p) == 4
    return tuple(int(v) for v in p)


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    if f is None:
        return 1, 1
    return (int(f.shape[-1]), int(f.shape[0]))


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up=1, down=1, padding: int | Sequence[int] = 0,
              flip_filter: bool = False, gain: float = 1.0, impl: str | None = None) -> torch.Tensor:
    """Pad, upsample by zero insertion, convolve with `f`, and keep every `down`-th pixel.

    x: `[N, C, H, W]`; f: `[fh, fw]` or `[taps]` float32 (None = identity); `padding` is applied
    to the upsampled image (negative values crop). Returns `[N, C, H', W']` in `x`'s dtype.
    """
    assert isinstance(x, torch.Tensor) and x.ndim == 4, f"x must be [N, C, H, W], got {tuple(x.shape)}"
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    assert f.dtype == torch.float32 and f.ndim in (1, 2) and not f.requires_grad
    if _dispatch.resolve("upfirdn2d", impl, x) == "cuda":
        return upfirdn2d_cuda(x, f, up=parse_scaling(up), down=parse_scaling(down),
                              padding=parse_padding(padding), flip_filter=flip_filter, gain=gain)
    return upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1.0):
    """Reference: zero insertion, F.pad / crop, depthwise conv2d, strided slice."""
    n, c, h, w = x.shape
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:  # conv2d computes a correlation; a convolution flips the taps
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    return x[:, :, ::downy, ::downx]


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1.0, impl=None):
    """Upsample by `up` with filter `f`, keeping the signal magnitude (gain up^2)."""
    upx, upy = parse_scaling(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1.0, impl=None):
    """Low-pass with `f` and keep every `down`-th pixel."""
    dx, dy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw - dx + 1) // 2, px1 + (fw - dx) // 2, py0 + (fh - dy + 1) // 2, py1 + (fh - dy) // 2]
    return upfirdn2d(x, f, down=(dx, dy), padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
