"""Sample videos at fixed seeds, written during training so progress can be watched.

Each sample is a grid video: one column per seed, top row frames t = 0 .. F-1, bottom row the same
videos at a far time t = far_t .. far_t + F - 1 (StyleGAN-V must not degrade there).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from core.files import atomic_write
from core.generator import z_from_seed
from core.motion import Motion
from core.render import to_uint8

log = logging.getLogger(__name__)


@torch.no_grad()
def sample_grid(G: torch.nn.Module, num_videos: int, num_frames: int, far_t: float,
                device: torch.device) -> np.ndarray:
    """uint8 [F, 2H, N*W, 3]: rows t in [0, F) and [far_t, far_t + F), seeds 0..N-1 as columns."""
    seeds = list(range(num_videos))
    z = z_from_seed(seeds, G.z_dim, device=device)
    c = torch.zeros([num_videos, G.c_dim], device=device)
    ws = G.mapping(z, c if G.c_dim else None)
    rows = []
    for start in (0.0, float(far_t)):
        t = torch.arange(num_frames, dtype=torch.float64, device=device).add(start).expand(num_videos, -1)
        img = G.synthesis(ws, t, Motion.from_seeds(seeds), c=c if G.c_dim else None)  # [N, F, C, H, W]
        rows.append(img)
    x = to_uint8(torch.cat(rows, dim=3))  # [N, F, 2H, W, 3]
    n, f, h, w, ch = x.shape
    return x.transpose(1, 2, 0, 3, 4).reshape(f, h, n * w, ch)


def write_video(frames: np.ndarray, path: str, fps: float = 25.0) -> str:
    """uint8 [F, H, W, 3] -> mp4 (H.264 via imageio-ffmpeg) or GIF; atomic. Returns the written path."""
    import imageio.v2 as iio

    ext = os.path.splitext(path)[1].lower()

    def write(tmp: str) -> None:
        if ext == ".mp4":
            # H.264 needs even sizes; macro_block_size=1 keeps the exact size (tiny test grids).
            with iio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                pixelformat="yuv420p" if frames.shape[1] % 2 == 0 == frames.shape[2] % 2
                                else "yuv444p") as w:
                for frame in frames:
                    w.append_data(frame)
        else:
            iio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)

    try:
        atomic_write(path, write, suffix=ext)
    except Exception:
        if ext == ".mp4":  # no ffmpeg on this machine: fall back to a GIF
            log.warning("mp4 writing failed, writing a GIF instead", exc_info=True)
            return write_video(frames, os.path.splitext(path)[0] + ".gif", fps)
        raise
    return path
