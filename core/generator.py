"""The StyleGAN-V generator: G(z, t, motion) = synthesis(mapping(z), t, motion)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.config import ModelConfig
from core.mapping import MappingNetwork
from core.motion import Motion
from core.synthesis import SynthesisNetwork


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        m = cfg.mapping
        self.z_dim, self.c_dim, self.w_dim = m.z_dim, m.c_dim, m.w_dim
        self.img_resolution = cfg.synthesis.img_resolution
        self.img_channels = cfg.synthesis.img_channels
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(m.z_dim, m.c_dim, m.w_dim, self.num_ws, num_layers=m.num_layers,
                                      lr_multiplier=m.lr_multiplier, w_avg_beta=m.w_avg_beta)

    def forward(self, z: torch.Tensor, t, motion_seed, c: torch.Tensor | None = None,
                truncation_psi: float = 1.0, **synthesis_kwargs) -> torch.Tensor:
        """z `[N, z_dim]`, t `[N, T]` (or `[T]`), motion seeds (or Motion / noise) -> `[N, T, C, H, W]`."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi)
        return self.synthesis(ws, t, motion_seed, c=c, **synthesis_kwargs)

    @torch.no_grad()
    def render(self, seed: int, t, motion_seed: int | None = None, truncation_psi: float = 1.0):
        """Frames `[T, C, H, W]` of one video from integer seeds (content z from `seed`)."""
        z = z_from_seed(seed, self.z_dim, device=self.mapping.w_avg.device)
        motion = Motion.from_seeds([seed if motion_seed is None else motion_seed])
        return self(z, t, motion, truncation_psi=truncation_psi)[0]


def z_from_seed(seed: int | list[int], z_dim: int, device="cpu") -> torch.Tensor:
    """Content codes `[N, z_dim]` from integer seeds (NumPy's RandomState, as StyleGAN tools do)."""
    seeds = [seed] if isinstance(seed, int) else list(seed)
    z = np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])
    return torch.from_numpy(z).to(device=device, dtype=torch.float32)
