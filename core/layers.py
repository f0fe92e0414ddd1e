"""Layers with equalized learning rate (Karras et al. 2018): weights stored divided by their lr
multiplier and rescaled at run time, so Adam sees every parameter at unit scale."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.ops import ACTIVATIONS, bias_act, conv2d_resample, setup_filter
from core.weight_cache import derived


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _scaled(param: torch.Tensor, gain: float, dtype: torch.dtype) -> torch.Tensor:
    """param in `dtype` times its equalized-lr gain (cached at inference, core/weight_cache.py)."""
    if gain == 1:
        return derived(param, ("as", dtype), lambda t: t.to(dtype))
    return derived(param, ("gain", gain, dtype), lambda t: t.to(dtype) * gain)


class FullyConnectedLayer(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _scaled(self.weight, self.weight_gain, x.dtype)
        b = _scaled(self.bias, self.bias_gain, x.dtype) if self.bias is not None else None
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, act={self.activation}"


class EqLRConv1d(nn.Module):
    """Padding-less 1-D convolution over motion tokens `[N, C, L] -> [N, C', L - k + 1]`.

    Its leaky ReLU has no sqrt(2) gain, unlike the FC/conv2d layers (as in the released models).
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int, activation: str = "linear",
                 lr_multiplier: float = 1.0):
        super().__init__()
        assert activation in ("linear", "lrelu")
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features, kernel_size]) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros([out_features]))
        self.weight_gain = lr_multiplier / np.sqrt(in_features * kernel_size)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 3, f"expected [N, C, L], got {tuple(x.shape)}"
        w = _scaled(self.weight, self.weight_gain, x.dtype)
        b = _scaled(self.bias, self.bias_gain, x.dtype)
        y = F.conv1d(x, w, b)
        return F.leaky_relu(y, 0.2) if self.activation == "lrelu" else y


class Conv2dLayer(nn.Module):
    """Conv2d with optional FIR up/down-sampling, bias, activation and output clamping."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1, resample_filter=(1, 3, 3, 1),
                 conv_clamp: float | None = None, trainable: bool = True):
        super().__init__()
        self.activation = activation
        self.up, self.down = up, down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACTIVATIONS[activation].def_gain
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        bias_t = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_t) if bias_t is not None else None
        else:  # frozen layers (Freeze-D) keep their tensors as buffers
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_t)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # scaled before the cast (unlike _scaled), as the reference's discriminator does
        w = derived(self.weight, ("gain_then_cast", self.weight_gain, x.dtype),
                    lambda t: (t * self.weight_gain).to(x.dtype))
        b = _scaled(self.bias, 1, x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                            flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MinibatchStdLayer(nn.Module):
    """Appends the std over groups of `group_size` samples as extra feature maps."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        assert n % g == 0, f"batch {n} must be divisible by the minibatch-std group size {g}"
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)
