"""Rendering frames and videos at arbitrary times, streamed to disk at constant memory.

Model time is measured in frames of the training data (`native_fps` of them per second). Output
frame j of a video with offset t0, output rate `fps` and slow-motion factor s shows model time
t_j = t0 + j * native_fps / (fps * s): a higher fps or s samples the continuous motion more densely.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.files import PendingFile
from core.generator import Generator, z_from_seed
from core.images import image_to_uint8
from core.motion import Motion

log = logging.getLogger(__name__)

FORMATS = ("mp4", "gif", "png")


class RenderError(ValueError):
    """Bad render settings or output path."""


@dataclass(frozen=True)
class Timeline:
    """Which model times the output frames show."""

    t_offset: float = 0.0  # model frames
    duration: float = 4.0  # output seconds
    fps: float = 25.0  # output frames per second
    slowmo: float = 1.0  # >1 plays motion slower
    native_fps: float = 25.0  # frames per second of the training data

    def __post_init__(self):
        if not (self.fps > 0 and self.slowmo > 0 and self.native_fps > 0 and self.duration > 0):
            raise RenderError("fps, slowmo, native_fps and duration must be positive")
        if not (self.t_offset >= 0 and np.isfinite(self.t_offset)):
            raise RenderError("t_offset must be finite and >= 0")

    @property
    def num_frames(self) -> int:
        return max(1, int(round(self.duration * self.fps)))

    @property
    def step(self) -> float:
        """Model frames between consecutive output frames."""
        return self.native_fps / (self.fps * self.slowmo)

    def times(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float64 model times of output frames start .. stop-1."""
        j = np.arange(start, self.num_frames if stop is None else stop, dtype=np.float64)
        return self.t_offset + j * self.step


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """`[..., C, H, W]` in [-1, 1] -> uint8 `[..., H, W, 3]` (grayscale repeated to RGB)."""
    x = image_to_uint8(frames).movedim(-3, -1)
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:-1], 3)
    return x.numpy()


def tile(frames: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`[rows * cols, H, W, 3]` -> one `[rows * H, cols * W, 3]` image, row-major."""
    n, h, w, c = frames.shape
    assert n == rows * cols, f"{n} frames do not fill a {rows}x{cols} grid"
    return frames.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


@torch.no_grad()
def iter_frames(G: Generator, ws: torch.Tensor, motion, timeline: Timeline, chunk: int = 8,
                c: torch.Tensor | None = None) -> Iterator[np.ndarray]:
    """Yield uint8 `[N, H, W, 3]` per output frame, computing `chunk` times at once: memory stays flat."""
    n = ws.shape[0]
    motion = Motion.coerce(motion, n)
    for start in range(0, timeline.num_frames, chunk):
        stop = min(start + chunk, timeline.num_frames)
        t = torch.from_numpy(timeline.times(start, stop)).to(ws.device).expand(n, -1)
        frames = to_uint8(G.synthesis(ws, t, motion, c=c))  # [N, T, H, W, 3]
        yield from frames.transpose(1, 0, 2, 3, 4)


class FrameWriter:
    """Streams frames to an mp4 (H.264, yuv420p: browser-playable), a GIF, or a zip/folder of PNGs.

    Writes into a temporary file that replaces `path` only on `close()`; `abort()` removes it.
    """

    def __init__(self, path: str | os.PathLike, fps: float, fmt: str | None = None, quality: int = 8):
        self.path = Path(path)
        self.fmt = fmt or self.path.suffix.lstrip(".").lower().replace("zip", "png")
        if self.fmt not in FORMATS:
            raise RenderError(f"unknown video format {self.fmt!r}; use one of {', '.join(FORMATS)}")
        self.fps, self.count = float(fps), 0
        self._pending = PendingFile(self.path, suffix=f".{self.fmt}")
        self.tmp = self._pending.tmp
        import imageio.v2 as imageio  # imported here: training on bare GPU images does not need it

        if self.fmt == "mp4":
            self._w = imageio.get_writer(self.tmp, format="FFMPEG", mode="I", fps=self.fps, codec="libx264",
                                         quality=quality, pixelformat="yuv420p", macro_block_size=2,
                                         ffmpeg_params=["-movflags", "+faststart"])
        elif self.fmt == "gif":
            self._w = imageio.get_writer(self.tmp, format="GIF", mode="I", duration=1000 / self.fps, loop=0)
        else:
            self._w = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED)

    def write(self, frame: np.ndarray) -> None:
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3, "frames are uint8 [H, W, 3]"
        if self.fmt == "png":
            import imageio.v2 as imageio

            self._w.writestr(f"{self.count:06d}.png", imageio.imwrite("<bytes>", frame, format="PNG"))
        else:
            self._w.append_data(frame)
        self.count += 1

    def close(self) -> Path:
        self._w.close()
        if self.count == 0:
            self.abort()
            raise RenderError("no frames were written")
        return self._pending.commit()

    def abort(self) -> None:
        try:
            self._w.close()
        except Exception:  # the writer may already be closed or broken; the temp file goes either way
            pass
        self._pending.discard()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def render_video(G: Generator, path: str | os.PathLike, timeline: Timeline, content_seeds: Sequence[int] = (0,),
                 motion_seeds: Sequence[int] | None = None, ws: torch.Tensor | None = None, grid: bool = False,
                 truncation_psi: float = 1.0, chunk: int = 8,
                 callback: Callable[[int, int], None] | None = None,
                 motion_origin: tuple[int, float] | None = None, motion: Motion | None = None,
                 loop: tuple[float, float] | None = None) -> Path:
    """Render a video to `path` (.mp4, .gif, .png/.zip for PNG frames), streaming at constant memory.

    Without `grid`, videos are placed side by side (content seed i with motion seed i). With `grid`,
    rows share motion and columns share content. `ws` `[N, num_ws, w_dim]` overrides content seeds
    (e.g. a projected photo; one content with several motion seeds makes one video per motion).
    `callback(done, total)` reports progress. `motion_origin` (seed, t0): every video passes through that
    seed's frame at t0 (`core.motion.Motion.from_seeds`), e.g. several motions of one projected photo.
    `motion` (one per video, or one for all) replaces the motion seeds, e.g. an inverted clip's tokens.
    `loop` (period, blend) in model frames makes every motion periodic and seamless (`core.motion`).
    """
    device = next(G.parameters()).device
    if ws is None:
        ws = G.mapping(z_from_seed(list(content_seeds), G.z_dim, device), None, truncation_psi=truncation_psi)
    ws = ws.to(device)
    n_content = ws.shape[0]
    motion_seeds = list(motion_seeds) if motion_seeds is not None else list(range(n_content))
    if grid:
        if motion is not None:
            raise RenderError("a grid takes motion seeds, not an explicit motion")
        rows, cols = len(motion_seeds), n_content
        ws = ws.repeat(rows, 1, 1)
        motion = Motion.from_seeds(np.repeat(motion_seeds, cols), origin=motion_origin)
    else:
        motion = Motion.from_seeds(motion_seeds, origin=motion_origin) if motion is None else motion
        if n_content == 1:  # one content (e.g. a projected photo) animated by several motions
            ws, n_content = ws.repeat(len(motion), 1, 1), len(motion)
        if len(motion) not in (1, n_content):
            raise RenderError(f"{len(motion)} motion seeds for {n_content} videos")
        motion = Motion.coerce(motion, n_content)  # one motion for all: repeated
        rows, cols = 1, n_content
    if loop is not None:
        motion = motion.replace(loop=loop)
    total = timeline.num_frames
    with FrameWriter(path, timeline.fps) as writer:
        for j, frames in enumerate(iter_frames(G, ws, motion, timeline, chunk=chunk)):
            writer.write(tile(frames, rows, cols))
            if callback is not None:
                callback(j + 1, total)
    return Path(path)
