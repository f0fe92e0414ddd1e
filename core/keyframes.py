"""Keyframe timelines: content latents pinned at output times, interpolated in W+ with easing, rendered with one
motion. A timeline is a small .npz project file (the keyframes' ws themselves, so any tool re-renders it bit
for bit without the controls that made them): `core.generate --keyframes project.npz`.

Between keyframes k and k+1 at output seconds s_k < s_{k+1}, the frame at second s uses
ws = lerp(ws_k, ws_{k+1}, e(u)), u = (s - s_k) / (s_{k+1} - s_k), e the segment's easing ("linear" or
"ease-in-out", a smoothstep). Before the first keyframe and after the last, their ws hold. At s = s_k, u = 0
and e(0) = 0, so the frame is keyframe k's frame exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.files import atomic_savez
from core.motion import Motion
from core.render import Timeline, to_uint8

EASINGS = ("linear", "ease-in-out")
FORMAT = "stylegan-v-studio/keyframes/1"


class KeyframeError(ValueError):
    """A timeline that cannot be built, read or rendered."""


@dataclass
class Keyframes:
    seconds: list[float] = field(default_factory=list)  # output seconds, increasing
    ws: list[torch.Tensor] = field(default_factory=list)  # each [num_ws, w_dim]
    easing: list[str] = field(default_factory=list)  # per keyframe: the easing into the next one
    motion_seed: int = 0
    fps: float = 25.0
    duration: float = 4.0  # output seconds
    slowmo: float = 1.0
    t_offset: float = 0.0  # model frames

    def add(self, second: float, ws: torch.Tensor, easing: str = "linear") -> None:
        """Insert (or replace, at the same second) a keyframe; ws `[1, num_ws, w_dim]` or `[num_ws, w_dim]`."""
        if easing not in EASINGS:
            raise KeyframeError(f"easing must be one of {', '.join(EASINGS)}, got {easing!r}")
        if not (np.isfinite(second) and second >= 0):
            raise KeyframeError(f"a keyframe's time must be a second >= 0, got {second}")
        w = ws.detach().float().cpu().reshape(ws.shape[-2:])
        if self.ws and w.shape != self.ws[0].shape:
            raise KeyframeError(f"keyframe ws {tuple(w.shape)} differ from the timeline's {tuple(self.ws[0].shape)}")
        if second in self.seconds:
            i = self.seconds.index(second)
            self.ws[i], self.easing[i] = w, easing
            return
        i = int(np.searchsorted(self.seconds, second))
        self.seconds.insert(i, float(second))
        self.ws.insert(i, w)
        self.easing.insert(i, easing)

    def ws_at(self, seconds: np.ndarray) -> torch.Tensor:
        """ws `[len(seconds), num_ws, w_dim]` at output seconds (see the module doc)."""
        if not self.seconds:
            raise KeyframeError("the timeline has no keyframes: add at least one")
        s = np.asarray(seconds, dtype=np.float64).reshape(-1)
        stack = torch.stack(self.ws)  # [K, num_ws, w_dim]
        knots = np.asarray(self.seconds)
        i = np.clip(np.searchsorted(knots, s, side="right") - 1, 0, len(knots) - 1)  # segment start
        j = np.minimum(i + 1, len(knots) - 1)
        span = np.where(j > i, knots[j] - knots[i], 1.0)
        u = np.clip((s - knots[i]) / span, 0.0, 1.0)
        u = np.where(j > i, u, 0.0)
        smooth = np.array([e == "ease-in-out" for e in self.easing])[i]
        u = np.where(smooth, u * u * (3 - 2 * u), u)
        w = torch.from_numpy(u).float().view(-1, 1, 1)
        return stack[i] * (1 - w) + stack[j] * w

    def timeline(self, native_fps: float) -> Timeline:
        return Timeline(self.t_offset, self.duration, self.fps, self.slowmo, native_fps)


def save_keyframes(path: str | os.PathLike, k: Keyframes) -> Path:
    if not k.seconds:
        raise KeyframeError("nothing to save: the timeline has no keyframes")
    arrays = {"format": np.str_(FORMAT), "seconds": np.asarray(k.seconds, np.float64),
              "ws": torch.stack(k.ws).numpy(), "easing": np.asarray(k.easing, dtype=np.str_),
              "motion_seed": np.int64(k.motion_seed), "fps": np.float64(k.fps), "duration": np.float64(k.duration),
              "slowmo": np.float64(k.slowmo), "t_offset": np.float64(k.t_offset)}

    return atomic_savez(path, **arrays)


def load_keyframes(path: str | os.PathLike) -> Keyframes:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f.get("format", "")) != FORMAT:
                raise KeyframeError(f"{path.name} is not a keyframes project ({FORMAT})")
            ws = f["ws"]
            k = Keyframes(seconds=[float(x) for x in f["seconds"]],
                          ws=[torch.from_numpy(w.astype(np.float32)) for w in ws],
                          easing=[str(e) for e in f["easing"]], motion_seed=int(f["motion_seed"]),
                          fps=float(f["fps"]), duration=float(f["duration"]), slowmo=float(f["slowmo"]),
                          t_offset=float(f["t_offset"]))
    except KeyframeError:
        raise
    except Exception as exc:
        raise KeyframeError(f"cannot read keyframes project {path.name}: {exc}") from None
    if not (len(k.seconds) == len(k.ws) == len(k.easing) >= 1) or any(e not in EASINGS for e in k.easing) \
            or not np.all(np.diff(k.seconds) > 0) or not all(torch.isfinite(w).all() for w in k.ws):
        raise KeyframeError(f"{path.name}: inconsistent keyframes")
    return k


@torch.no_grad()
def check_compatible(k: Keyframes, G) -> None:
    """A project's ws must fit G (the keyframes store ws, not seeds): else a KeyframeError naming both."""
    if tuple(k.ws[0].shape) != (G.num_ws, G.w_dim):
        raise KeyframeError(f"this project was made with another model (ws {tuple(k.ws[0].shape)}, this model's "
                            f"{(G.num_ws, G.w_dim)})")


def iter_keyframe_frames(G, k: Keyframes, native_fps: float, chunk: int = 8):
    """uint8 `[H, W, 3]` per output frame: frame j shows ws_at(second j / fps) at its model time, motion seed
    k.motion_seed. Frames are computed `chunk` at a time (one video per frame, each with its own ws)."""
    tl = k.timeline(native_fps)
    device = next(G.parameters()).device
    for start in range(0, tl.num_frames, chunk):
        stop = min(start + chunk, tl.num_frames)
        seconds = np.arange(start, stop) / tl.fps
        ws = k.ws_at(seconds).to(device)
        t = torch.from_numpy(tl.times(start, stop)).to(device)[:, None]  # [B, 1]: one frame per video
        frames = G.synthesis(ws, t, Motion.from_seeds([k.motion_seed] * (stop - start)))  # [B, 1, C, H, W]
        yield from to_uint8(frames[:, 0])


def render_keyframes(G, k: Keyframes, path: str | os.PathLike, native_fps: float, callback=None) -> Path:
    """Write the timeline to `path` (.mp4, .gif, .zip of PNGs), streaming (core.render.FrameWriter)."""
    from core.render import FrameWriter

    total = k.timeline(native_fps).num_frames
    with FrameWriter(path, k.fps) as writer:
        for j, frame in enumerate(iter_keyframe_frames(G, k, native_fps)):
            writer.write(frame)
            if callback is not None:
                callback(j + 1, total)
    return Path(path)
