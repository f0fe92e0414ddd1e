"""Counter-based Gaussian noise: the value at (seed, token k, dim j) is a pure function of its indices.

A splitmix64-style integer hash (wrapping int64 arithmetic, the same on CPU and CUDA) turns each index
triple into two 53-bit uniforms, and Box-Muller turns those into normals. Any token of any motion seed
can thus be drawn on its own, in any order, on any device: frame t needs only the tokens around t.
"""

from __future__ import annotations

import math

import torch


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)
_GOLDEN = _signed(0x9E3779B97F4A7C15)
_TOKEN = _signed(0xD1B54A32D192ED03)


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = x ^ _shr(x, 30)
    x = x * _MUL1
    x = x ^ _shr(x, 27)
    x = x * _MUL2
    return x ^ _shr(x, 31)


def token_noise(seeds: torch.Tensor, tokens: torch.Tensor, dim: int) -> torch.Tensor:
    """Standard-normal noise `[*S, dim]` float32 for int64 `seeds` and token indices `tokens` of shape S.

    Runs on the device of `tokens`; `seeds` broadcast against `tokens`.
    """
    seeds = torch.as_tensor(seeds, dtype=torch.int64, device=tokens.device)
    tokens = tokens.to(torch.int64)
    key = _mix(_mix(seeds + _GOLDEN) ^ (tokens * _TOKEN))  # [*S]
    pairs = (dim + 1) // 2
    j = torch.arange(2 * pairs, device=tokens.device, dtype=torch.int64)
    bits = _mix(key.unsqueeze(-1) + (j + 1) * _GOLDEN)  # [*S, 2 * pairs]
    u = _shr(bits, 11).to(torch.float64) * (2.0**-53)  # uniform in [0, 1)
    u1, u2 = u[..., 0::2], u[..., 1::2]
    r = torch.sqrt(-2.0 * torch.log1p(-u1))  # 1 - u1 is in (0, 1]: the log is finite
    theta = 2.0 * math.pi * u2
    z = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=-1).flatten(-2)
    return z[..., :dim].to(torch.float32)
