"""Inflated Inception-v1 (I3D, Carreira & Zisserman 2017), Kinetics-400 RGB, as a PyTorch module.

Matches DeepMind's Sonnet model that FVD uses (the TF-Hub `i3d-kinetics-400` graph):
- TensorFlow "SAME" padding (asymmetric: the extra pixel goes after), max pools padded with -inf;
- batch norm with eps 1e-3, a learned offset and no scale (Sonnet v1 BatchNorm, scale=False);
- the logits are a 1x1x1 conv after a [2, 7, 7] VALID average pool, averaged over time.
Module names follow the Sonnet scopes (`Mixed_4b.Branch_1.Conv3d_0b_3x3`), so converted weights
map one-to-one. FVD uses the 400-d averaged logits as features (docs/reference.md, 'Metrics').
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.images import image_from_uint8

# Output channels of each Inception block: [b0, b1a, b1b, b2a, b2b, b3] (Sonnet i3d.py).
MIXED_CHANNELS: dict[str, tuple[int, ...]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


@dataclass(frozen=True)
class I3DConfig:
    """width_div shrinks every channel count (tests use tiny random models of the same graph);
    input_size is the side the detector resizes frames to (224 for the real model)."""

    num_classes: int = 400
    width_div: int = 1
    input_size: int = 224

    def __post_init__(self) -> None:
        if self.width_div < 1 or self.num_classes < 1:
            raise ValueError(f"invalid I3DConfig: {self}")
        if self.input_size % 32 != 0:
            raise ValueError(f"I3D input_size must be a multiple of 32, got {self.input_size}")

    def ch(self, c: int) -> int:
        return max(1, c // self.width_div)


def _same_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
              value: float) -> torch.Tensor:
    """Pad x [N, C, T, H, W] like TF "SAME": output size ceil(n / s), extra padding at the end."""
    pads: list[int] = []
    for n, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):  # F.pad wants W first
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class SonnetBatchNorm(nn.Module):
    """Inference batch norm: (x - mean) / sqrt(var + 1e-3) + beta (no scale, as in Sonnet v1)."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, self.eps)


class Unit3D(nn.Module):
    """Conv3d ("SAME") -> optional batch norm -> optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), bn: bool = True, relu: bool = True,
                 bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding=0, bias=bias)
        self.bn = SonnetBatchNorm(cout) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(_same_pad(x, self.kernel, self.stride, 0.0))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # -inf padding: TF's SAME max pool ignores padded positions.
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches (1x1; 1x1-3x3; 1x1-3x3; maxpool-1x1) concatenated on channels."""

    def __init__(self, cin: int, c: tuple[int, ...]) -> None:
        super().__init__()
        k3 = (3, 3, 3)
        self.Branch_0 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, c[0])})
        self.Branch_1 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, c[1]),
                                       "Conv3d_0b_3x3": Unit3D(c[1], c[2], k3)})
        self.Branch_2 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, c[3]),
                                       "Conv3d_0b_3x3": Unit3D(c[3], c[4], k3)})
        self.Branch_3 = nn.ModuleDict({"Conv3d_0b_1x1": Unit3D(cin, c[5])})
        self.pool = MaxPoolSame(k3, (1, 1, 1))
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.Branch_0["Conv3d_0a_1x1"](x)
        b1 = self.Branch_1["Conv3d_0b_3x3"](self.Branch_1["Conv3d_0a_1x1"](x))
        b2 = self.Branch_2["Conv3d_0b_3x3"](self.Branch_2["Conv3d_0a_1x1"](x))
        b3 = self.Branch_3["Conv3d_0b_1x1"](self.pool(x))
        return torch.cat([b0, b1, b2, b3], dim=1)


class InceptionI3d(nn.Module):
    """x [N, 3, T, S, S] float in [-1, 1] (S = cfg.input_size, T >= 9) -> logits [N, num_classes].

    The logits are averaged over the remaining time steps, exactly as the Sonnet model's "Logits"
    end point; FVD takes them as 400-d features.
    """

    def __init__(self, cfg: I3DConfig = I3DConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.ch
        self.Conv3d_1a_7x7 = Unit3D(3, ch(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(ch(64), ch(64))
        self.Conv3d_2c_3x3 = Unit3D(ch(64), ch(192), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        cin = ch(192)
        blocks: dict[str, nn.Module] = {}
        for name, channels in MIXED_CHANNELS.items():
            if name == "Mixed_4b":
                blocks["MaxPool3d_4a_3x3"] = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                blocks["MaxPool3d_5a_2x2"] = MaxPoolSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(cin, tuple(ch(c) for c in channels))
            blocks[name] = block
            cin = block.out_channels
        for name, module in blocks.items():
            self.add_module(name, module)
        self._mixed_order = list(blocks)
        self.Logits = nn.ModuleDict({
            "Conv3d_0c_1x1": Unit3D(cin, cfg.num_classes, bn=False, relu=False, bias=True)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.cfg.input_size
        if x.ndim != 5 or x.shape[1] != 3 or tuple(x.shape[3:]) != (s, s) or x.shape[2] < 9:
            raise ValueError(f"I3D expects [N, 3, T>=9, {s}, {s}] in [-1, 1], got {tuple(x.shape)}")
        x = self.Conv3d_1a_7x7(x)
        x = self.MaxPool3d_2a_3x3(x)
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = self.MaxPool3d_3a_3x3(x)
        for name in self._mixed_order:
            x = getattr(self, name)(x)
        k = s // 32  # 7 for the real 224 model
        x = F.avg_pool3d(x, (2, k, k), stride=1)  # VALID
        x = self.Logits["Conv3d_0c_1x1"](x)  # [N, classes, T', 1, 1]
        return x.squeeze(4).squeeze(3).mean(dim=2)


def to_i3d_input(videos: torch.Tensor, input_size: int) -> torch.Tensor:
    """uint8 videos [N, T, H, W, 3] or [N, 3, T, H, W] -> float [N, 3, T, S, S] in [-1, 1].

    Rescale first, then resize every frame to S x S (trilinear with T kept = bilinear per frame,
    half-pixel centres), which is how the paper's TorchScript detector resizes inside itself.
    """
    if videos.ndim != 5:
        raise ValueError(f"videos must be 5-D uint8 [N, T, H, W, 3] or [N, 3, T, H, W], "
                         f"got {tuple(videos.shape)}")
    if videos.dtype != torch.uint8:
        raise ValueError(f"videos must be uint8 (0..255), got {videos.dtype}")
    if videos.shape[-1] == 3 and videos.shape[1] != 3:
        videos = videos.permute(0, 4, 1, 2, 3)  # [N, T, H, W, 3] -> [N, 3, T, H, W]
    elif videos.shape[1] != 3:
        raise ValueError(f"cannot find the RGB axis in videos of shape {tuple(videos.shape)}")
    x = image_from_uint8(videos)
    if tuple(x.shape[3:]) != (input_size, input_size):
        x = F.interpolate(x, size=(x.shape[2], input_size, input_size), mode="trilinear", align_corners=False)
    return x
