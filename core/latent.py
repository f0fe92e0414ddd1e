"""The latent file shared by projection, editing and rendering: an .npz of plain arrays (no pickles).

Keys: `ws` float32 [1, num_ws, w_dim]; `motion_seed` int; `t` float; `checkpoint` str; `mode` str;
optional `style/<synthesis layer>` float32 [C] StyleSpace offsets (from StyleCLIP global directions);
optional `tuned_weights` str (a `core.tuned` delta file, relative to the latent's folder) with
`base_hash` str (the `weights_sha256` of the model it was tuned from); for an inverted clip,
`motion_noise` float32 [1, L, z_dim] (the clip's motion tokens; later tokens come from `motion_seed`) and
`clip_duration` float (model frames the clip covers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.files import atomic_savez
from core.motion import Motion
from core.styles import STYLE_PREFIX, offsets_from_arrays
from core.tuned import TunedWeightsError, apply_delta, load_delta


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
    tuned_weights: str = ""  # absolute path of the delta file in memory; relative to the .npz on disk
    base_hash: str = ""
    motion_noise: torch.Tensor | None = None  # [1, L, z_dim]: an inverted clip's own motion tokens
    clip_duration: float = 0.0  # model frames covered by the clip (0: a photo)

    def motion(self, seeds: list[int] | None = None, free: bool = False,
               loop: tuple[float, float] | None = None) -> Motion:
        """How this latent moves: a clip's own tokens (continued by its seed), or the given / its own
        motion seeds passing through its frame at t (unless `free`)."""
        if self.motion_noise is not None and not seeds:
            return Motion.from_noise(self.motion_noise, continue_seeds=[self.motion_seed], loop=loop)
        origin = None if free or self.motion_noise is not None else (self.motion_seed, self.t)
        return Motion.from_seeds(seeds or [self.motion_seed], origin=origin, loop=loop)


def save_latent(path: str | os.PathLike, latent: Latent) -> Path:
    """Write atomically (core.files.atomic_write). The tuned-weights file must already exist."""
    path = Path(path)
    assert latent.ws.ndim == 3 and latent.ws.shape[0] == 1, latent.ws.shape
    arrays = {"ws": latent.ws.detach().float().cpu().numpy(), "motion_seed": np.int64(latent.motion_seed),
              "t": np.float64(latent.t), "checkpoint": np.str_(latent.checkpoint),
              "mode": np.str_(latent.mode)}
    for name, offset in latent.style_offsets.items():
        arrays[STYLE_PREFIX + name] = offset.detach().float().cpu().numpy()
    if latent.motion_noise is not None:
        assert latent.motion_noise.ndim == 3 and latent.motion_noise.shape[0] == 1, latent.motion_noise.shape
        arrays["motion_noise"] = latent.motion_noise.detach().float().cpu().numpy()
        arrays["clip_duration"] = np.float64(latent.clip_duration)
    if latent.tuned_weights:
        weights = Path(latent.tuned_weights).resolve()
        if not weights.is_file() or not latent.base_hash:
            raise LatentFileError(f"tuned weights {weights} missing (or no base hash): save them first")
        arrays["tuned_weights"] = np.str_(os.path.relpath(weights, path.resolve().parent))
        arrays["base_hash"] = np.str_(latent.base_hash)

    return atomic_savez(path, **arrays)


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
    noise = d.get("motion_noise")
    if noise is not None and (noise.ndim != 3 or noise.shape[0] != 1 or not np.isfinite(noise).all()):
        raise LatentFileError(f"{path}: `motion_noise` must be finite [1, L, z_dim], got {noise.shape}")
    tuned = str(d.get("tuned_weights", ""))
    if tuned:
        tuned = str((path.resolve().parent / tuned).resolve())
    return Latent(ws=torch.from_numpy(d["ws"].astype(np.float32)), motion_seed=int(d.get("motion_seed", 0)),
                  t=float(d.get("t", 0.0)), checkpoint=str(d.get("checkpoint", "")),
                  mode=str(d.get("mode", "w+")), style_offsets=offsets, tuned_weights=tuned,
                  base_hash=str(d.get("base_hash", "")),
                  motion_noise=None if noise is None else torch.from_numpy(noise.astype(np.float32)),
                  clip_duration=float(d.get("clip_duration", 0.0)))


def check_compatible(latent: Latent, G) -> None:
    if tuple(latent.ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise LatentFileError(f"latent ws {tuple(latent.ws.shape)} does not fit this model "
                              f"[1, {G.num_ws}, {G.w_dim}]; was it projected with another checkpoint "
                              f"({latent.checkpoint or 'unknown'})?")
    z_dim = G.synthesis.motion_encoder.cfg.z_dim
    if latent.motion_noise is not None and latent.motion_noise.shape[2] != z_dim:
        raise LatentFileError(f"the clip's motion tokens have {latent.motion_noise.shape[2]} dims, this model's "
                              f"{z_dim}; was it inverted with another checkpoint ({latent.checkpoint or 'unknown'})?")


def latent_generator(latent: Latent, G, G_hash: str | None = None):
    """The generator to render this latent with: G itself, or a tuned copy when the latent has tuned
    weights (refused, with a message, when G is not the model they were tuned from)."""
    check_compatible(latent, G)
    if not latent.tuned_weights:
        return G
    try:
        delta, base_hash = load_delta(latent.tuned_weights)
        if latent.base_hash and latent.base_hash != base_hash:
            raise TunedWeightsError(f"{latent.tuned_weights} was tuned from another model than this latent "
                                    f"records ({base_hash[:12]} vs {latent.base_hash[:12]})")
        return apply_delta(G, delta, base_hash, G_hash)
    except TunedWeightsError as exc:
        raise LatentFileError(str(exc)) from None
