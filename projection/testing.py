"""Small random-weight stand-ins for tests and offline demos (never for real measurements)."""

from __future__ import annotations

import torch
from torch import nn


class TinyLPIPS(nn.Module):
    """LPIPS's structure at toy size: input scaling, a conv trunk whose ReLU outputs are tapped,
    channel-wise unit normalization, squared differences weighted by non-negative 1x1 "lin" layers,
    spatial averages summed over taps. Same call as `lpips.LPIPS`: (x, y) in [-1, 1] -> [N, 1, 1, 1]."""

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32), seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        convs, lins, c_in = [], [], 3
        for i, c in enumerate(channels):
            conv = nn.Conv2d(c_in, c, 3, padding=1, stride=1 if i == 0 else 2)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (9 * c_in)) ** 0.5)
                conv.bias.zero_()
            lin = nn.Conv2d(c, 1, 1, bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.rand(lin.weight.shape, generator=gen) / c)
            convs.append(conv)
            lins.append(lin)
            c_in = c
        self.convs, self.lins = nn.ModuleList(convs), nn.ModuleList(lins)
        self.requires_grad_(False).eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        taps = []
        for conv in self.convs:
            x = torch.relu(conv(x))
            taps.append(x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert x.shape == y.shape and x.ndim == 4 and x.shape[1] == 3, (x.shape, y.shape)
        total = 0.0
        for lin, fx, fy in zip(self.lins, self._taps(x), self._taps(y)):
            total = total + lin((fx - fy).square()).mean(dim=(2, 3), keepdim=True)
        return total  # [N, 1, 1, 1]
