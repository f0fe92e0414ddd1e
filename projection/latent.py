"""The latent file shared by projection, editing and rendering: an .npz of plain arrays (no pickles).

Keys: `ws` float32 [1, num_ws, w_dim]; `motion_seed` int; `t` float; `checkpoint` str; `mode` str;
optional `style/<synthesis layer>` float32 [C] StyleSpace offsets (from StyleCLIP global directions).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.files import atomic_write
from core.styles import STYLE_PREFIX, offsets_from_arrays


class LatentFileError(ValueError):
    """A latent .npz is missing, malformed or incompatible."""


@dataclass
class Latent:
    ws: torch.Tensor  # [1, num_ws, w_dim]
    motion_seed: int = 0
    t: float = 0.0
    checkpoint: str = ""
    mode: str = "w+"
    style_offsets: dict[str, torch.Tensor] = field(default_factory=dict)  # layer name -> [C]


def save_latent(path: str | os.PathLike, latent: Latent) -> Path:
    """Write atomically (core.files.atomic_write)."""
    path = Path(path)
    assert latent.ws.ndim == 3 and latent.ws.shape[0] == 1, latent.ws.shape
    arrays = {"ws": latent.ws.detach().float().cpu().numpy(), "motion_seed": np.int64(latent.motion_seed),
              "t": np.float64(latent.t), "checkpoint": np.str_(latent.checkpoint),
              "mode": np.str_(latent.mode)}
    for name, offset in latent.style_offsets.items():
        arrays[STYLE_PREFIX + name] = offset.detach().float().cpu().numpy()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write, suffix=".npz")


def load_latent(path: str | os.PathLike) -> Latent:
    path = Path(path)
    if not path.is_file():
        raise LatentFileError(f"latent file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            d = {k: data[k] for k in data.files}
    except Exception as exc:
        raise LatentFileError(f"{path} is not a latent .npz: {exc}") from exc
    if "ws" not in d or d["ws"].ndim != 3 or d["ws"].shape[0] != 1:
        raise LatentFileError(f"{path} lacks `ws` [1, num_ws, w_dim]")
    offsets = offsets_from_arrays(d)
    return Latent(ws=torch.from_numpy(d["ws"].astype(np.float32)), motion_seed=int(d.get("motion_seed", 0)),
                  t=float(d.get("t", 0.0)), checkpoint=str(d.get("checkpoint", "")),
                  mode=str(d.get("mode", "w+")), style_offsets=offsets)


def check_compatible(latent: Latent, G) -> None:
    if tuple(latent.ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise LatentFileError(f"latent ws {tuple(latent.ws.shape)} does not fit this model "
                              f"[1, {G.num_ws}, {G.w_dim}]; was it projected with another checkpoint "
                              f"({latent.checkpoint or 'unknown'})?")
