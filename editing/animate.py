"""Animation of a projected or edited latent: new motion for the same content, or new content for the same
motion, at any time offset and frame rate, streamed to mp4 / GIF at constant memory.

Times are in the model's frames (t = 0 is the projected instant); a video at `fps` advances
`model_fps / fps` model frames per output frame, so frame rate and speed are independent.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from editing.styleclip import style_offsets

log = logging.getLogger(__name__)


class AnimationError(ValueError):
    """Bad animation arguments."""


def frame_times(num_frames: int, fps: float, t_start: float = 0.0, model_fps: float = 25.0) -> np.ndarray:
    """Model times (frames, float64) [num_frames] of a video starting at t_start and played at fps."""
    if num_frames < 1 or fps <= 0 or model_fps <= 0 or t_start < 0:
        raise AnimationError("need num_frames >= 1, fps > 0, model_fps > 0 and t_start >= 0")
    return t_start + np.arange(num_frames, dtype=np.float64) * (model_fps / fps)


def content_ws(G, seeds: Sequence[int], truncation_psi: float = 0.7) -> torch.Tensor:
    """ws [N, num_ws, w_dim] of fresh content from integer seeds (NumPy RandomState z, as StyleGAN tools)."""
    z = np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])
    with torch.no_grad():
        z = torch.from_numpy(z).float().to(G.mapping.w_avg.device)
        return G.mapping(z, truncation_psi=truncation_psi)


def _tile(frames: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [H, N * W, 3] side by side."""
    x = ((frames.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x.permute(2, 0, 3, 1).reshape(x.shape[2], -1, 3).numpy()


def _writer(path: Path, fps: float):
    import imageio.v2 as imageio

    suffix = path.suffix.lower()
    if suffix == ".gif":
        return imageio.get_writer(path, format="GIF", mode="I", duration=1000.0 / fps, loop=0)
    if suffix in (".mp4", ".mov", ".mkv"):
        return imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                  pixelformat="yuv420p", macro_block_size=2)
    raise AnimationError(f"unsupported video format {suffix!r}: use .mp4 or .gif")


def render_video(G, ws: torch.Tensor, motion_seeds: Sequence[int], times: np.ndarray, path: str | os.PathLike,
                 *, fps: float = 25.0, offsets: dict[str, torch.Tensor] | None = None, chunk: int = 8,
                 callback: Callable[[int, int], bool | None] | None = None) -> Path:
    """Stream G(ws[i], times, motion_seeds[i]) for every i, tiled side by side, to an mp4/GIF.

    ws [N, num_ws, w_dim]; motion_seeds N ints; times [T] model frames. Frames are synthesized `chunk`
    at a time, so memory does not grow with T. The file appears only when complete (temp + rename).
    callback(done, total) after each chunk; returning False cancels (no file is left).
    """
    n = ws.shape[0]
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise AnimationError(f"ws must be [N, {G.num_ws}, {G.w_dim}], got {tuple(ws.shape)}")
    if len(motion_seeds) != n:
        raise AnimationError(f"need one motion seed per latent ({n}), got {len(motion_seeds)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    ws = ws.detach().float().to(G.mapping.w_avg.device)
    times = np.asarray(times, dtype=np.float64)
    try:
        writer = _writer(Path(tmp), fps)
        try:
            for start in range(0, len(times), chunk):
                t = torch.from_numpy(times[start: start + chunk]).to(ws.device).unsqueeze(0).expand(n, -1)
                with torch.no_grad(), style_offsets(G, offsets):
                    frames = G.synthesis(ws, t, list(motion_seeds))  # [N, T, C, H, W]
                for k in range(frames.shape[1]):
                    writer.append_data(_tile(frames[:, k]))
                done = min(start + chunk, len(times))
                if callback is not None and callback(done, len(times)) is False:
                    raise InterruptedError("rendering cancelled")
        finally:
            writer.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    log.info("wrote %s (%d frames, %d tiles)", path, len(times), n)
    return path


def motion_variations(G, ws: torch.Tensor, motion_seeds: Sequence[int], path: str | os.PathLike, *,
                      num_frames: int = 64, fps: float = 25.0, t_start: float = 0.0, model_fps: float = 25.0,
                      offsets: dict[str, torch.Tensor] | None = None, **kwargs) -> Path:
    """Keep the content (one latent [1, num_ws, w_dim], edits included), resample the motion: one tile
    per motion seed."""
    if ws.shape[0] != 1:
        raise AnimationError("motion_variations takes one latent [1, num_ws, w_dim]")
    times = frame_times(num_frames, fps, t_start, model_fps)
    return render_video(G, ws.expand(len(motion_seeds), -1, -1), list(motion_seeds), times, path, fps=fps,
                        offsets=offsets, **kwargs)


def content_variations(G, motion_seed: int, content_seeds: Sequence[int], path: str | os.PathLike, *,
                       ws: torch.Tensor | None = None, truncation_psi: float = 0.7, num_frames: int = 64,
                       fps: float = 25.0, t_start: float = 0.0, model_fps: float = 25.0,
                       **kwargs) -> Path:
    """Keep the motion (one motion seed), resample the content: one tile per content seed, preceded by
    `ws` (e.g. the projected photo) when given."""
    new = content_ws(G, content_seeds, truncation_psi)
    all_ws = new if ws is None else torch.cat([ws.to(new.device).float(), new])
    times = frame_times(num_frames, fps, t_start, model_fps)
    return render_video(G, all_ws, [motion_seed] * all_ws.shape[0], times, path, fps=fps, **kwargs)
