"""The holistic StyleGAN-V discriminator (paper section 3.2, Fig. 6): a StyleGAN2 "resnet" D run on each of
the k frames separately (the backbone D_b), the frames' features concatenated channel-wise at `concat_res`
(the head D_h), and the time gaps between the frames fed through a projection head."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.config import ModelConfig
from core.layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer
from core.mapping import MappingNetwork
from core.ops import setup_filter


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, use_fp16: bool, conv_clamp: float | None):
        super().__init__()
        self.in_channels, self.resolution, self.use_fp16 = in_channels, resolution, use_fp16
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        conv0_in = in_channels if in_channels > 0 else tmp_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(conv0_in, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(conv0_in, out_channels, 1, bias=False, down=2)

    def forward(self, x, img, force_fp32: bool = False):
        ref = x if x is not None else img
        dtype = torch.float16 if self.use_fp16 and ref.is_cuda and not force_fp32 else torch.float32
        if self.in_channels == 0:
            x = self.fromrgb(img.to(dtype))
        else:
            assert x.shape[1:] == (self.in_channels, self.resolution, self.resolution), f"bad x {tuple(x.shape)}"
            x = x.to(dtype)
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=np.sqrt(0.5))
        return y + x


class FixedTimeEncoder(nn.Module):
    """sin/cos of log-spaced frequencies pi * 2^i / 2^ceil(log2 max_num_frames): eq. 1 with unit amplitudes,
    fixed frequencies and zero phases, the positional encoding of the time gaps (section 3.2)."""

    def __init__(self, max_num_frames: int):
        super().__init__()
        resolution = 2 ** int(np.ceil(np.log2(max_num_frames)))
        num = int(np.ceil(np.log2(resolution)))
        coefs = (2.0 ** torch.arange(num, dtype=torch.float32)) * np.pi / resolution
        self.register_buffer("fourier_coefs", coefs.unsqueeze(0))  # [1, F]

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        raw = self.fourier_coefs * t.reshape(-1, 1).float()
        return torch.cat([raw.sin(), raw.cos()], dim=1)


class TemporalDifferenceEncoder(nn.Module):
    """Embeds the k-1 gaps delta_i = t_{i+1} - t_i between a clip's sorted frame times (section 3.2): a
    learned table plus Fourier features per gap, concatenated. The 2-layer MLP that follows is the
    discriminator's `mapping`; the paper applies it per gap before concatenating, the released model
    (and this one) after."""

    def __init__(self, num_frames: int, max_num_frames: int, embed_dim: int):
        super().__init__()
        self.num_frames, self.max_num_frames = num_frames, max_num_frames
        self.const_embed = nn.Embedding(max_num_frames, embed_dim)
        self.time_encoder = FixedTimeEncoder(max_num_frames)
        self.dim_per_gap = embed_dim + 2 * self.time_encoder.fourier_coefs.shape[1]

    def get_dim(self) -> int:
        return self.dim_per_gap * (self.num_frames - 1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        n = t.shape[0]
        gaps = (t[:, 1:] - t[:, :-1]).reshape(-1)  # [N * (k-1)]
        idx = gaps.float().round().long()
        if (idx < 0).any() or (idx >= self.max_num_frames).any():
            raise ValueError(f"frame gaps must be in [0, {self.max_num_frames}); sort the times of each clip")
        out = torch.cat([self.const_embed(idx), self.time_encoder(gaps)], dim=1)
        return out.reshape(n, -1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels: int, cmap_dim: int, mbstd_group_size: int, mbstd_num_channels: int,
                 conv_clamp: float | None):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * 16, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:  # projection discriminator (section 3.2): <features, conditioning> / sqrt(dim)
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """img `[N, k, C, H, W]` in [-1, 1] + sorted frame times `[N, k]` (+ labels c) -> logits `[N]`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, res = cfg.discriminator, cfg.synthesis.img_resolution
        self.cfg = cfg
        self.c_dim, self.num_frames, self.concat_res = cfg.mapping.c_dim, d.num_frames, d.concat_res
        self.img_resolution, self.img_channels = res, cfg.synthesis.img_channels
        log2 = int(np.log2(res))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        fp16_resolution = max(2 ** (log2 + 1 - d.num_fp16_res), 8)
        cmap_dim = d.channels(4)
        self.time_encoder = None
        if d.num_frames > 1:
            self.time_encoder = TemporalDifferenceEncoder(d.num_frames, d.max_num_frames, d.time_embed_dim)
        if self.c_dim == 0 and self.time_encoder is None:
            cmap_dim = 0
        for r in self.block_resolutions:
            in_ch = d.channels(r) if r < res else 0
            out_ch = d.channels(r // 2)
            if r // 2 == d.concat_res:  # each frame contributes a fraction of the channels ...
                out_ch //= d.num_frames_div_factor
            if r == d.concat_res:  # ... and the k frames are stacked here
                in_ch = (in_ch // d.num_frames_div_factor) * d.num_frames
            block = DiscriminatorBlock(in_ch, d.channels(r), out_ch, r, self.img_channels,
                                       use_fp16=r >= fp16_resolution, conv_clamp=d.conv_clamp)
            setattr(self, f"b{r}", block)
        cond_dim = self.c_dim + (self.time_encoder.get_dim() if self.time_encoder is not None else 0)
        if cond_dim > 0:
            self.mapping = MappingNetwork(0, cond_dim, cmap_dim, num_ws=None, num_layers=d.mapping_layers,
                                          w_avg_beta=None)
        self.b4 = DiscriminatorEpilogue(d.channels(4), cmap_dim, d.mbstd_group_size, d.mbstd_num_channels,
                                        d.conv_clamp)

    def forward(self, img: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None,
                force_fp32: bool = False) -> torch.Tensor:
        n, k = img.shape[:2]
        assert k == self.num_frames, f"D was built for {self.num_frames} frames per clip, got {k}"
        assert img.shape[2:] == (self.img_channels, self.img_resolution, self.img_resolution), \
            f"img must be [N, {k}, {self.img_channels}, {self.img_resolution}, {self.img_resolution}]"
        assert t.shape == (n, k), f"t must be [N={n}, k={k}], got {tuple(t.shape)}"
        cond = []
        if self.c_dim > 0:
            assert c is not None and c.shape == (n, self.c_dim), f"c must be [N, {self.c_dim}]"
            cond.append(c.float())
        if self.time_encoder is not None:
            cond.append(self.time_encoder(t))
        x, frames = None, img.reshape(n * k, *img.shape[2:])
        for r in self.block_resolutions:
            if r == self.concat_res:  # [N*k, C, h, w] -> [N, k*C, h, w], frame-major
                x = x.reshape(n, -1, *x.shape[2:])
            x = getattr(self, f"b{r}")(x, frames, force_fp32=force_fp32)
        cmap = self.mapping(None, torch.cat(cond, dim=1)) if cond else None
        return self.b4(x, cmap).squeeze(1)
