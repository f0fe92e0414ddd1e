"""StyleGAN2 "skip" synthesis network whose 4x4 input is the learned constant concatenated with the
tiled motion code v_t (paper section 3.2)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.config import ModelConfig
from core.layers import FullyConnectedLayer
from core.motion import Motion, MotionMappingNetwork
from core.ops import ACTIVATIONS, bias_act, modulated_conv2d, setup_filter, upsample2d


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

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True, gain: float = 1.0):
        in_res = self.resolution // self.up
        assert x.shape[1:] == (self.weight.shape[1], in_res, in_res), f"bad input {tuple(x.shape)}"
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", gain=self.act_gain * gain, clamp=clamp)


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
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


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
                fused_modconv: bool | None = None):
        """ws `[M, num_conv + 1, w_dim]`; x `[M, C, R/2, R/2]` (None for 4x4); img `[M, 3, R/2, R/2]`."""
        fp16 = self.use_fp16 and ws.is_cuda and not force_fp32
        dtype = torch.float16 if fp16 else torch.float32
        if fused_modconv is None:  # per-sample grouped conv at inference; shared conv in training
            # On CUDA the shared conv is faster for batches too (H200, `256`, batch 32: 1715 vs 1329
            # frames/s, bench/RESULTS.md); the reference's rule (grouped for fp32) stays on the CPU.
            grouped_fp32 = dtype == torch.float32 and not ws.is_cuda
            fused_modconv = (not self.training) and (grouped_fp32 or ws.shape[0] == 1)
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.input(motion_v).to(dtype)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv)
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
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
                exact_time: bool = True, **block_kwargs) -> torch.Tensor:
        n = ws.shape[0]
        assert ws.shape[1:] == (self.num_ws, self.w_dim), f"ws must be [N, {self.num_ws}, {self.w_dim}]"
        t = _as_times(t, n, ws.device)
        num_t = t.shape[1]
        motion = Motion.coerce(motion, n)
        motion_v = self.motion_encoder(t, motion, c=c, exact_time=exact_time)  # [N*T, v_dim]
        ws = ws.to(torch.float32).repeat_interleave(num_t, dim=0)  # [N*T, num_ws, w_dim]
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + 1),
                           motion_v=motion_v if res == 4 else None, **block_kwargs)
            w_idx += block.num_conv
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
