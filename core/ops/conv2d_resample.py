"""2-D convolution fused with FIR up/down-sampling, padding applied once at the start."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.ops.bias_act import bias_act
from core.ops.fused import upfirdn2d_bias_act
from core.ops.upfirdn2d import filter_size, parse_padding, upfirdn2d
from core.weight_cache import derived


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    if not flip_weight:  # F.conv2d is a correlation; flip_weight=False asks for a true convolution
        w = derived(w, "flipped", lambda t: t.flip([2, 3]))
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding=0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False, impl: str | None = None,
                    bias_act_args: dict | None = None) -> torch.Tensor:
    """Conv of x `[N, C_in, H, W]` with w `[C_out, C_in/groups, kh, kw]`, up/down-sampling by `f`.

    `padding` refers to the upsampled image. The paths are chosen as StyleGAN2 does (transposed
    conv for up=2, strided conv for down=2), so outputs match its checkpoints' behaviour exactly.
    `bias_act_args`: the result goes through `bias_act(y, **bias_act_args)`, inside the upsampling
    filter's pass where the kernel can (core/ops/fused.py).
    """
    if bias_act_args is not None and not (up > 1 and down == 1):
        y = conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter, impl)
        return bias_act(y, impl=impl, **bias_act_args)
    assert x.ndim == 4 and w.ndim == 4 and w.dtype == x.dtype, f"x {x.shape} {x.dtype}, w {w.shape} {w.dtype}"
    c_out, c_in_g, kh, kw = (int(s) for s in w.shape)
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    pad = [px0, px1, py0, py1]
    ops = dict(flip_filter=flip_filter, impl=impl)

    if kw == 1 and kh == 1 and down > 1 and up == 1:  # 1x1: downsample first, then convolve
        x = upfirdn2d(x, f, down=down, padding=pad, **ops)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:  # 1x1: convolve first, then upsample
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up**2, **ops)
    if down > 1 and up == 1:  # filter, then strided conv
        x = upfirdn2d(x, f, padding=pad, **ops)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:  # transposed strided conv, then filter
        if groups == 1:  # contiguous, so the transposed conv does not copy it at every call
            w = derived(w, "transposed", lambda t: t.transpose(0, 1).contiguous())
        else:
            w = w.reshape(groups, c_out // groups, c_in_g, kh, kw).transpose(1, 2)
            w = w.reshape(groups * c_in_g, c_out // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        pad = [px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt]
        if bias_act_args is not None:  # down == 1
            args = dict(bias_act_args)
            return upfirdn2d_bias_act(x, f, padding=pad, gain=up**2, act_gain=args.pop("gain", None), **args, **ops)
        x = upfirdn2d(x, f, padding=pad, gain=up**2, **ops)
        if down > 1:
            x = upfirdn2d(x, f, down=down, **ops)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:  # plain conv
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=pad, **ops)  # general case: explicit padding/cropping
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, **ops)
    return x
