"""StyleGAN2 "skip" synthesis network whose 4x4 input is the learned constant concatenated with the
tiled motion code v_t (paper section 3.2).

Two layouts of the activations, same function:
- sample-major `[N*T, C, H, W]` (the default): every frame is a sample with its own copy of its
  video's styles;
- frame-major `[T, N*C, H, W]` (`per_video=True`): the T frames of a video share its content code, so
  its modulated weights are built once and applied to all its frames by one grouped convolution; for
  one video that is a plain convolution with no per-frame scaling pass. On the CPU it measured no
  faster than the default; it is there for the GPU, where those passes are memory-bound
  (bench/ops_gpu.py times both).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.config import ModelConfig
from core.layers import FullyConnectedLayer
from core.motion import Motion, MotionMappingNetwork
from core.ops import ACTIVATIONS, bias_act, modulated_conv2d, modulated_conv2d_videos, setup_filter, upsample2d
from core.ops.fused import bias_act_torgb, torgb_epilogue_applies
from core.ops.modconv import input_styles, modulated_conv1x1
from core.ops.weight_cache import derived

# With the shared conv, the demodulation and the next conv's input modulation are applied inside
# bias_act (the CUDA kernel does them in its one pass at inference; bench/roofline.py counts the
# traffic saved). bench/ops_gpu.py turns this off to time the difference.
FUSE_INTO_BIAS_ACT = True


def _bias(bias: torch.Tensor, dtype: torch.dtype, videos: int = 1) -> torch.Tensor:
    """The bias in the activations' dtype, once per video side by side (the frame-major layout): kept
    between inference calls (two small kernels per layer and call otherwise, a CUDA graph's too)."""
    return derived(bias, ("bias", dtype, videos), lambda b: b.repeat(videos).to(dtype))


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + bias + leaky ReLU + clamp. No noise inputs."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 conv_clamp: float | None = None, resample_filter=(1, 3, 3, 1)):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = 1
        self.act_gain = ACTIVATIONS["lrelu"].def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True, gain: float = 1.0,
                styles: torch.Tensor | None = None, input_scaled: bool = False,
                out_scale: torch.Tensor | None = None, torgb: dict | None = None):
        """x `[M, I, r, r]`, w `[M, w_dim]` -> `[M, O, R, R]`. Shared conv only: `styles` given if already
        computed; `input_scaled`: x already carries `input_scale(styles)` (the previous layer's
        `out_scale`); `out_scale` `[M, O]` multiplies the output (the next layer's input modulation).
        `torgb` (`ToRGBLayer.epilogue`): the block's toRGB rides in this layer's bias_act, which returns
        (x, img) instead (core/ops/fused.py bias_act_torgb)."""
        in_res = self.resolution // self.up
        assert x.shape[1:] == (self.weight.shape[1], in_res, in_res), f"bad input {tuple(x.shape)}"
        styles = self.affine(w) if styles is None else styles
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        kw = dict(up=self.up, padding=self.padding, resample_filter=self.resample_filter, flip_weight=(self.up == 1))
        act_args = dict(b=_bias(self.bias, x.dtype), act="lrelu", gain=self.act_gain * gain, clamp=clamp)
        if fused_modconv:  # on a GPU at inference bias_act rides in the upsampling filter's pass, for up=2
            assert not input_scaled and out_scale is None, "the grouped conv modulates its weights"
            args = dict(act_args, **({} if torgb is None else {"torgb": torgb}))
            return modulated_conv2d(x, self.weight, styles, fused_modconv=True, bias_act_args=args, **kw)
        if FUSE_INTO_BIAS_ACT:  # demodulation and bias_act in one pass (the upsampling filter's, for up=2)
            args = dict(act_args, out_scale=out_scale, **({} if torgb is None else {"torgb": torgb}))
            return modulated_conv2d(x, self.weight, styles, fused_modconv=False, input_scaled=input_scaled,
                                    bias_act_args=args, **kw)
        x = modulated_conv2d(x, self.weight, styles, fused_modconv=False, input_scaled=input_scaled, **kw)
        if torgb is not None:
            return bias_act_torgb(x, out_scale=out_scale, **act_args, **torgb)
        return bias_act(x, out_scale=out_scale, **act_args)

    def input_scale(self, styles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """`[M, I]`: what the shared conv multiplies its input by (for `out_scale` of the layer before)."""
        return input_styles(dtype, self.weight, styles)

    def forward_videos(self, x: torch.Tensor, w: torch.Tensor, torgb: dict | None = None):
        """Frame-major: x `[T, N*I, r, r]`, w `[N, w_dim]` (one per video) -> `[T, N*O, R, R]`; with `torgb`
        (x, img), as `forward`."""
        assert x.shape[2:] == (self.resolution // self.up,) * 2, f"bad input {tuple(x.shape)}"
        act_args = dict(b=_bias(self.bias, x.dtype, len(w)), act="lrelu", gain=self.act_gain, clamp=self.conv_clamp)
        if torgb is not None:
            act_args["torgb"] = torgb
        return modulated_conv2d_videos(x, self.weight, self.affine(w), up=self.up, padding=self.padding,
                                       resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                                       bias_act_args=act_args)


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        if not fused_modconv and FUSE_INTO_BIAS_ACT:  # one read of x, no scaling pass (3 outputs only)
            x = modulated_conv1x1(x, self.weight, styles)
        else:
            x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, _bias(self.bias, x.dtype), clamp=self.conv_clamp)

    def forward_videos(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Frame-major: x `[T, N*I, R, R]`, w `[N, w_dim]` -> `[T, N*img_channels, R, R]`."""
        x = modulated_conv2d_videos(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        return bias_act(x, _bias(self.bias, x.dtype, len(w)), clamp=self.conv_clamp)

    def epilogue(self, w: torch.Tensor, skip: torch.Tensor | None, videos: bool = False) -> dict:
        """This layer as the `torgb` argument of the block's last SynthesisLayer (bias_act_torgb): its weight
        (gain included), its styles `[M, 1, C]` (w `[M, w_dim]`, one per sample) or `[1, N, C]` (`videos`:
        w `[N, w_dim]`, one per video of the frame-major layout), bias, clamp and the skip image to add. The
        pass forms the modulated weights itself (no launch of their own)."""
        c_out, c_in = self.weight.shape[:2]
        styles = self.affine(w)  # StyleSpace edits hook this output: the gain comes after, as in forward
        gained = derived(self.weight, ("torgb_gained", self.weight_gain),
                         lambda t: t.reshape(c_out, c_in) * self.weight_gain)
        rgb_styles = styles.unsqueeze(0) if videos else styles.unsqueeze(1)
        return dict(rgb_weight=gained, rgb_styles=rgb_styles, rgb_bias=self.bias, rgb_clamp=self.conv_clamp,
                    skip=skip)


class TemporalInput(nn.Module):
    """The learned constant `[1, C, 4, 4]` with v_t tiled to 4x4 and appended as channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, channels, 4, 4))

    def forward(self, motion_v: torch.Tensor) -> torch.Tensor:
        const = self.const.expand(len(motion_v), -1, -1, -1)
        return torch.cat([const, motion_v[:, :, None, None].expand(-1, -1, 4, 4)], dim=1)


class GenInput(nn.Module):
    """Holds TemporalInput as `input`, so parameter names read `b4.input.input.const` as in released models."""

    def __init__(self, channels: int):
        super().__init__()
        self.input = TemporalInput(channels)

    def forward(self, motion_v: torch.Tensor) -> torch.Tensor:
        return self.input(motion_v)


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, motion_v_dim: int, resolution: int,
                 img_channels: int, use_fp16: bool, conv_clamp: float | None):
        super().__init__()
        self.in_channels, self.resolution, self.use_fp16 = in_channels, resolution, use_fp16
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        if in_channels == 0:
            self.input = GenInput(out_channels)
            conv1_in = out_channels + motion_v_dim
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
            conv1_in = out_channels
        self.conv1 = SynthesisLayer(conv1_in, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(self, x, img, ws: torch.Tensor, motion_v=None, force_fp32: bool = False,
                fused_modconv: bool | None = None, videos: int | None = None, channels_last: bool = False,
                conv0_styles: torch.Tensor | None = None, out_scale: torch.Tensor | None = None):
        """ws `[M, num_conv + 1, w_dim]`; x `[M, C, R/2, R/2]` (None for 4x4); img `[M, 3, R/2, R/2]`.

        With `videos=N` the layout is frame-major: ws `[N, num_conv + 1, w_dim]` (one row per video),
        x `[T, N*C, R/2, R/2]`, img `[T, N*3, R/2, R/2]`; motion_v stays `[N*T, v_dim]`.
        Shared conv with toRGB in the last pass only (`scales_next_input`): `out_scale` `[M, C]`, the next
        block's conv0 input modulation, is applied to the returned x (not to what toRGB reads), and
        `conv0_styles` says the previous block did that for this block's conv0 (with these styles).
        """
        dtype = self.dtype(ws, force_fp32)
        fp16 = dtype == torch.float16
        # NHWC: for the fp16 blocks on CUDA (tensor-core convolutions read it natively), every block on the CPU
        fmt = torch.channels_last if channels_last and (fp16 or not ws.is_cuda) else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=fmt)
        if videos is not None:
            return self._forward_videos(x, img, ws, motion_v, dtype, fmt, videos)
        fused_modconv = self._fused_modconv(ws, fused_modconv)
        w_iter = iter(ws.unbind(dim=1))
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        torgb = self.torgb.epilogue(ws[:, -1], img) if self._torgb_fusable(ws, dtype) else None
        chained = conv0_styles is not None or out_scale is not None
        assert not chained or (torgb is not None and not fused_modconv and FUSE_INTO_BIAS_ACT), \
            "input modulation across blocks needs the shared conv with toRGB in the last pass"
        if self.in_channels == 0:
            x = self.input(motion_v).to(dtype=dtype, memory_format=fmt)
            out = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, torgb=torgb, out_scale=out_scale)
        elif not fused_modconv and FUSE_INTO_BIAS_ACT:  # conv1's input modulation rides in conv0's bias_act
            w0, w1 = next(w_iter), next(w_iter)
            styles1 = self.conv1.affine(w1)
            x = self.conv0(x, w0, fused_modconv=False, out_scale=self.conv1.input_scale(styles1, dtype),
                           styles=conv0_styles, input_scaled=conv0_styles is not None)
            out = self.conv1(x, w1, fused_modconv=False, styles=styles1, input_scaled=True, torgb=torgb,
                             out_scale=out_scale)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv)
            out = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, torgb=torgb)
        return out if torgb is not None else self._torgb(out, img, next(w_iter), fused_modconv=fused_modconv)

    def dtype(self, ws: torch.Tensor, force_fp32: bool = False) -> torch.dtype:
        """The activations' dtype: float16 for the top blocks on CUDA (mixed precision), else float32."""
        return torch.float16 if self.use_fp16 and ws.is_cuda and not force_fp32 else torch.float32

    def _fused_modconv(self, ws: torch.Tensor, fused_modconv: bool | None) -> bool:
        if fused_modconv is not None:
            return fused_modconv
        # The shared conv, except a single sample on CUDA (grouped conv). Measured: on the H200 (`256`, batch
        # 32) the shared conv gives 1715 frames/s vs 1329 grouped; on the CPU (small preset) it is 1.0-1.3x
        # faster at every batch, batch 1 included (bench/RESULTS.md). The reference's rule (grouped for fp32
        # inference) was slower on both.
        return (not self.training) and ws.shape[0] == 1 and ws.is_cuda

    def scales_next_input(self, ws: torch.Tensor, force_fp32: bool = False, fused_modconv: bool | None = None,
                          **_) -> bool:
        """Whether this block's last pass can also apply the next block's conv0 input modulation (sample-
        major shared conv with toRGB in that pass, which reads the values before it): the next block then
        skips its own scaling pass over its input."""
        return FUSE_INTO_BIAS_ACT and not self._fused_modconv(ws, fused_modconv) and \
            self._torgb_fusable(ws, self.dtype(ws, force_fp32))

    def _torgb(self, x, img, w, **kwargs):
        """(x, img + toRGB(x)): toRGB as a layer of its own."""
        y = self.torgb(x, w, **kwargs).to(torch.float32)
        return x, (img + y if img is not None else y)

    def _torgb_fusable(self, ws: torch.Tensor, dtype: torch.dtype) -> bool:
        """Whether toRGB rides in conv1's bias_act (one kernel pass, core/ops/fused.py): at inference on a GPU."""
        rgb_channels, channels = self.torgb.weight.shape[:2]
        weights = (ws, self.conv1.weight, self.torgb.weight, self.torgb.affine.weight)
        return torgb_epilogue_applies(ws, weights, channels, rgb_channels, dtype=dtype)

    def _forward_videos(self, x, img, ws, motion_v, dtype, fmt, videos: int):
        w_iter = iter(ws.unbind(dim=1))  # each [N, w_dim]
        if self.in_channels == 0:
            x = self.input(motion_v)  # [N*T, C, 4, 4], video-major
            x = x.reshape(videos, -1, *x.shape[1:]).transpose(0, 1).reshape(-1, videos * x.shape[1], 4, 4)
            x = x.to(dtype=dtype, memory_format=fmt)
        else:
            x = self.conv0.forward_videos(x, next(w_iter))
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self._torgb_fusable(ws, dtype):  # toRGB inside conv1's bias_act pass
            return self.conv1.forward_videos(x, next(w_iter), torgb=self.torgb.epilogue(ws[:, -1], img, videos=True))
        x = self.conv1.forward_videos(x, next(w_iter))
        y = self.torgb.forward_videos(x, next(w_iter)).to(torch.float32)
        return x, (img + y if img is not None else y)


class SynthesisNetwork(nn.Module):
    """ws `[N, num_ws, w_dim]` + times `[N, T]` + motion -> frames `[N, T, C, H, W]`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        s = cfg.synthesis
        self.cfg = cfg
        self.w_dim = cfg.mapping.w_dim
        self.img_resolution, self.img_channels = s.img_resolution, s.img_channels
        self.block_resolutions = s.block_resolutions
        log2 = int(np.log2(s.img_resolution))
        fp16_resolution = max(2 ** (log2 + 1 - s.num_fp16_res), 8)
        self.motion_encoder = MotionMappingNetwork(cfg.motion, c_dim=cfg.mapping.c_dim)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(s.channels(res // 2) if res > 4 else 0, s.channels(res), self.w_dim,
                                   cfg.motion.v_dim, res, s.img_channels, use_fp16=res >= fp16_resolution,
                                   conv_clamp=s.conv_clamp)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last block's toRGB

    def forward(self, ws: torch.Tensor, t: torch.Tensor, motion, c: torch.Tensor | None = None,
                exact_time: bool = True, per_video: bool = False, **block_kwargs) -> torch.Tensor:
        """Frames `[N, T, C, H, W]`; `per_video=True` picks the frame-major layout (module docstring)."""
        n = ws.shape[0]
        assert ws.shape[1:] == (self.num_ws, self.w_dim), f"ws must be [N, {self.num_ws}, {self.w_dim}]"
        t = _as_times(t, n, ws.device)
        motion = Motion.coerce(motion, n)
        motion_v = self.motion_encoder(t, motion, c=c, exact_time=exact_time)  # [N*T, v_dim]
        return self.frames(ws, motion_v, per_video=per_video, **block_kwargs)

    def frames(self, ws: torch.Tensor, motion_v: torch.Tensor, per_video: bool = False,
               channels_last: bool | None = None, **block_kwargs) -> torch.Tensor:
        """ws `[N, num_ws, w_dim]` + motion codes `[N*T, v_dim]` (video-major) -> frames `[N, T, C, H, W]`.

        The part of the forward pass with fixed shapes and no host work (core/cuda_graph.py captures it).
        `channels_last` runs the fp16 blocks (CUDA) or all blocks (CPU) in NHWC; None: at inference for
        4 frames or more (CPU 1.04-1.14x, slower for one frame; H200 at 32 frames 1.08-1.14x, no
        slower anywhere measured: bench/RESULTS.md).
        """
        n = ws.shape[0]
        assert motion_v.ndim == 2 and motion_v.shape[0] % n == 0, f"motion_v {tuple(motion_v.shape)} for {n} videos"
        num_t = motion_v.shape[0] // n
        if channels_last is None:
            channels_last = not self.training and n * num_t >= 4
        ws = ws.to(torch.float32)
        if not per_video:
            ws = ws.repeat_interleave(num_t, dim=0)  # [N*T, num_ws, w_dim]: one style copy per frame
        x = img = styles_next = None
        w_idx = 0
        blocks = [getattr(self, f"b{res}") for res in self.block_resolutions]
        for block, nxt in zip(blocks, blocks[1:] + [None]):
            block_ws = ws.narrow(1, w_idx, block.num_conv + 1)
            chain = {}
            if not per_video:  # the next conv0's input modulation in this block's last pass, where it can ride
                chain["conv0_styles"], styles_next = styles_next, None
                if nxt is not None and block.scales_next_input(block_ws, **block_kwargs):
                    styles_next = nxt.conv0.affine(ws[:, w_idx + block.num_conv])  # toRGB's w is conv0's next
                    dtype_next = nxt.dtype(ws, block_kwargs.get("force_fp32", False))
                    chain["out_scale"] = nxt.conv0.input_scale(styles_next, dtype_next)
            x, img = block(x, img, block_ws, motion_v=motion_v if block.in_channels == 0 else None,
                           videos=n if per_video else None, channels_last=channels_last, **block_kwargs, **chain)
            w_idx += block.num_conv
        img = img.contiguous()
        if per_video:  # [T, N*C, H, W] -> [N, T, C, H, W]
            return img.reshape(num_t, n, -1, *img.shape[2:]).transpose(0, 1)
        return img.reshape(n, num_t, *img.shape[1:])


def _as_times(t, n: int, device) -> torch.Tensor:
    """Times as a float `[N, T]` tensor: accepts a number, a list / 1-D tensor shared by all videos, or [N, T].

    Python numbers become float64 so that far times keep their fractions. Times given on the host stay
    there (the motion encoder does its index arithmetic on them without waiting for the GPU); times on
    another device than `device` move to it.
    """
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
    if t.device.type != "cpu":
        t = t.to(device)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if t.ndim == 0:
        t = t.reshape(1, 1)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.shape[0] == 1 and n > 1:
        t = t.expand(n, -1)
    assert t.ndim == 2 and t.shape[0] == n, f"t must be [N={n}, T], got {tuple(t.shape)}"
    return t
