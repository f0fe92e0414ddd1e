"""Edit directions in W+ and per-layer controls: a direction is a small file any tool can apply.

A direction is a delta `[num_ws, w_dim]` added to ws with a strength alpha: ws + alpha * delta. Discovered
directions (SeFa, `editing.sefa`) are one unit vector in W spread over a layer group and scaled to one
standard deviation of random w along it; directions by example are the difference of two latents. Layer
groups follow StyleGAN's usage by block resolution: coarse (4x4, 8x8: pose and layout), middle (16x16,
32x32), fine (64x64 and up: colour and texture).

The same module holds the other per-layer ws controls: style mixing (layers of a second latent) and
truncation with a layer cutoff.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.files import atomic_savez

GROUPS = ("all", "coarse", "middle", "fine")
FORMAT = "stylegan-v-studio/direction/1"


class DirectionError(ValueError):
    """A direction file that is missing, malformed or made for another model shape."""


@dataclass
class Direction:
    delta: torch.Tensor  # [num_ws, w_dim]: added to ws per unit of strength
    name: str = "direction"
    source: str = ""  # how it was made, e.g. "sefa all #0" or "seed 3 - seed 7"

    def __post_init__(self):
        if self.delta.ndim != 2:
            raise DirectionError(f"a direction is [num_ws, w_dim], got {tuple(self.delta.shape)}")


def ws_layers(G) -> list[int]:
    """Block resolution of each ws index: the convs of block R read it (the last index: the final toRGB)."""
    out = []
    for res in G.synthesis.block_resolutions:
        out += [res] * getattr(G.synthesis, f"b{res}").num_conv
    return out + [G.synthesis.block_resolutions[-1]]


def group_indices(G, group: str) -> list[int]:
    """ws indices of a layer group: "all", "coarse" (<= 8x8), "middle" (16x16 - 32x32), "fine" (>= 64x64)."""
    if group not in GROUPS:
        raise DirectionError(f"layer group must be one of {', '.join(GROUPS)}, got {group!r}")
    keep = {"all": lambda r: True, "coarse": lambda r: r <= 8, "middle": lambda r: 16 <= r <= 32,
            "fine": lambda r: r >= 64}[group]
    return [i for i, r in enumerate(ws_layers(G)) if keep(r)]


def layer_mask(G, group: str) -> torch.Tensor:
    """float `[num_ws, 1]`: 1 on the group's ws indices."""
    mask = torch.zeros(G.num_ws, 1)
    mask[group_indices(G, group)] = 1.0
    return mask


def apply(ws: torch.Tensor, edits: list[tuple[Direction, float]]) -> torch.Tensor:
    """ws `[N, num_ws, w_dim]` + sum of alpha * delta -> a new tensor (ws is not modified)."""
    out = ws.clone()
    for d, alpha in edits:
        if d.delta.shape != tuple(ws.shape[1:]):
            raise DirectionError(f"direction {d.name!r} is {tuple(d.delta.shape)}, this model's ws are "
                                 f"{tuple(ws.shape[1:])}: it was made for another model")
        out = out + float(alpha) * d.delta.to(ws.device, ws.dtype)
    return out


def mix(ws: torch.Tensor, other: torch.Tensor, G, group: str) -> torch.Tensor:
    """Style mixing: the group's layers of `other` `[N or 1, num_ws, w_dim]`, the rest of `ws`."""
    mask = layer_mask(G, group).to(ws.device, ws.dtype)
    return ws * (1 - mask) + other.to(ws.device, ws.dtype) * mask


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """w_avg + psi (ws - w_avg) on the ws indices below `cutoff` (None: all), as StyleGAN's truncation cutoff."""
    out = ws.clone()
    end = ws.shape[1] if cutoff is None else int(cutoff)
    out[:, :end] = w_avg.to(ws) + float(psi) * (ws[:, :end] - w_avg.to(ws))
    return out


def save_direction(path: str | os.PathLike, d: Direction) -> Path:
    arrays = {"delta": d.delta.detach().float().cpu().numpy(), "name": np.str_(d.name),
              "source": np.str_(d.source), "format": np.str_(FORMAT)}

    return atomic_savez(path, **arrays)


def load_direction(path: str | os.PathLike) -> Direction:
    path = Path(path)
    if not path.is_file():
        raise DirectionError(f"direction file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            delta, name, source = f["delta"], str(f.get("name", path.stem)), str(f.get("source", ""))
    except Exception as exc:
        raise DirectionError(f"{path.name} is not a direction file: {exc}") from None
    if delta.ndim != 2 or not np.isfinite(delta).all():
        raise DirectionError(f"{path.name}: `delta` must be a finite [num_ws, w_dim] array")
    return Direction(torch.from_numpy(delta.astype(np.float32)), name=name, source=source)


def parse_direction_arg(text: str) -> tuple[str, float]:
    """'smile.npz:1.5' -> ('smile.npz', 1.5); 'smile.npz' -> strength 1."""
    path, sep, alpha = text.rpartition(":")
    if not sep or not path:
        return text, 1.0
    try:
        value = float(alpha)
    except ValueError:
        return text, 1.0  # a path with a colon and no strength
    if not np.isfinite(value) or abs(value) > 1000:
        raise DirectionError(f"direction strength must be a number in -1000 .. 1000, got {alpha!r}")
    return path, value
