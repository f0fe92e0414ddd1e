"""StyleGAN2 "skip" synthesis network whose 4x4 input is the learned constant concatenated with the
tiled motion code v_t (paper section 3.1, Fig. 5: the only change to StyleGAN2's synthesis network S).

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
from core.ops import ACTIVATIONS, bias_act, modulated_conv2d_videos, setup_filter, upsample2d
from core.ops.modconv import chains_input_modulation, input_styles, modulated_conv_act, modulated_torgb


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
                out_scale: torch.Tensor | None = None):
        """x `[M, I, r, r]`, w `[M, w_dim]` -> `[M, O, R, R]`. Shared conv only: `styles` given if already
        computed; `input_scaled`: x already carries `input_scale(styles)` (the previous layer's
        `out_scale`); `out_scale` `[M, O]` multiplies the output (the next layer's input modulation)."""
        in_res = self.resolution // self.up
        assert x.shape[1:] == (self.weight.shape[1], in_res, in_res), f"bad input {tuple(x.shape)}"
        styles = self.affine(w) if styles is None else styles
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return modulated_conv_act(x, self.weight, styles, self.bias, self.act_gain * gain, clamp, up=self.up,
                                  padding=self.padding, resample_filter=self.resample_filter,
                                  flip_weight=(self.up == 1), fused_modconv=fused_modconv,
                                  input_scaled=input_scaled, out_scale=out_scale)

    def input_scale(self, styles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """`[M, I]`: what the shared conv multiplies its input by (for `out_scale` of the layer before)."""
        return input_styles(dtype, self.weight, styles)

    def forward_videos(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Frame-major: x `[T, N*I, r, r]`, w `[N, w_dim]` (one per video) -> `[T, N*O, R, R]`."""
        assert x.shape[2:] == (self.resolution // self.up,) * 2, f"bad input {tuple(x.shape)}"
        act_args = dict(b=self.bias.repeat(len(w)).to(x.dtype), act="lrelu", gain=self.act_gain, clamp=self.conv_clamp)
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
        return modulated_torgb(x, self.weight, styles, self.bias, self.conv_clamp, fused_modconv=fused_modconv)

    def forward_videos(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Frame-major: x `[T, N*I, R, R]`, w `[N, w_dim]` -> `[T, N*img_channels, R, R]`."""
        x = modulated_conv2d_videos(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        return bias_act(x, self.bias.repeat(len(w)).to(x.dtype), clamp=self.conv_clamp)


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
                fused_modconv: bool | None = None, videos: int | None = None, channels_last: bool = False):
        """ws `[M, num_conv + 1, w_dim]`; x `[M, C, R/2, R/2]` (None for 4x4); img `[M, 3, R/2, R/2]`.

        With `videos=N` the layout is frame-major: ws `[N, num_conv + 1, w_dim]` (one row per video),
        x `[T, N*C, R/2, R/2]`, img `[T, N*3, R/2, R/2]`; motion_v stays `[N*T, v_dim]`.
        """
        fp16 = self.use_fp16 and ws.is_cuda and not force_fp32
        dtype = torch.float16 if fp16 else torch.float32
        # NHWC: for the fp16 blocks on CUDA (tensor-core convolutions read it natively), every block on the CPU
        fmt = torch.channels_last if channels_last and (fp16 or not ws.is_cuda) else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=fmt)
        if videos is not None:
            return self._forward_videos(x, img, ws, motion_v, dtype, fmt, videos)
        if fused_modconv is None:  # the shared conv, except a single sample on CUDA (grouped conv)
            # Measured: on the H200 (`256`, batch 32) the shared conv gives 1715 frames/s vs 1329 grouped;
            # on the CPU (small preset) it is 1.0-1.3x faster at every batch, batch 1 included
            # (bench/RESULTS.md). The reference's rule (grouped for fp32 inference) was slower on both.
            fused_modconv = (not self.training) and ws.shape[0] == 1 and ws.is_cuda
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.input(motion_v).to(dtype=dtype, memory_format=fmt)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv)
        elif chains_input_modulation(fused_modconv):  # conv1's input modulation rides in conv0's pass
            w0, w1 = next(w_iter), next(w_iter)
            styles1 = self.conv1.affine(w1)
            x = self.conv0(x, w0, fused_modconv=False, out_scale=self.conv1.input_scale(styles1, dtype))
            x = self.conv1(x, w1, fused_modconv=False, styles=styles1, input_scaled=True)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
        img = img + y if img is not None else y
        return x, img

    def _forward_videos(self, x, img, ws, motion_v, dtype, fmt, videos: int):
        w_iter = iter(ws.unbind(dim=1))  # each [N, w_dim]
        if self.in_channels == 0:
            x = self.input(motion_v)  # [N*T, C, 4, 4], video-major
            x = x.reshape(videos, -1, *x.shape[1:]).transpose(0, 1).reshape(-1, videos * x.shape[1], 4, 4)
            x = x.to(dtype=dtype, memory_format=fmt)
        else:
            x = self.conv0.forward_videos(x, next(w_iter))
        x = self.conv1.forward_videos(x, next(w_iter))
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb.forward_videos(x, next(w_iter)).to(torch.float32)
        img = img + y if img is not None else y
        return x, img


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
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + 1),
                           motion_v=motion_v if res == 4 else None, videos=n if per_video else None,
                           channels_last=channels_last, **block_kwargs)
            w_idx += block.num_conv
        img = img.contiguous()
        if per_video:  # [T, N*C, H, W] -> [N, T, C, H, W]
            return img.reshape(num_t, n, -1, *img.shape[2:]).transpose(0, 1)
        return img.reshape(n, num_t, *img.shape[1:])


def _as_times(t, n: int, device) -> torch.Tensor:
    """Times as a float `[N, T]` tensor: accepts a number, a list / 1-D tensor shared by all videos, or [N, T].

    Python numbers become float64 so that far times keep their fractions.
    """
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
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
