"""Animation of a projected or edited latent through `core.render`: new motion for the same content, or
new content for the same motion, at any time offset, frame rate and slow-motion factor, streamed to
mp4 / GIF / PNG frames at constant memory.

StyleSpace edits (global directions) are applied with the style-offset hooks around the render, so
every frame of every tile carries the edit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from core.generator import z_from_seed
from core.render import RenderError, Timeline, render_video
from editing.styleclip import style_offsets

log = logging.getLogger(__name__)

__all__ = ["AnimationError", "Timeline", "content_variations", "content_ws", "motion_variations"]


class AnimationError(ValueError):
    """Bad animation arguments."""


def _check_ws(G, ws: torch.Tensor) -> None:
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise AnimationError(f"ws must be [N, {G.num_ws}, {G.w_dim}], got {tuple(ws.shape)}")


def content_ws(G, seeds: Sequence[int], truncation_psi: float = 0.7) -> torch.Tensor:
    """ws [N, num_ws, w_dim] of fresh content from integer seeds (the z of `core.generator.z_from_seed`)."""
    device = G.mapping.w_avg.device
    with torch.no_grad():
        return G.mapping(z_from_seed(list(seeds), G.z_dim, device), None, truncation_psi=truncation_psi)


def motion_variations(G, ws: torch.Tensor, motion_seeds: Sequence[int], path: str | os.PathLike, *,
                      timeline: Timeline | None = None, offsets: dict[str, torch.Tensor] | None = None,
                      callback: Callable[[int, int], None] | None = None,
                      origin: tuple[int, float] | None = None) -> Path:
    """Keep the content (one latent [1, num_ws, w_dim], edits included), resample the motion: one tile per
    motion seed, side by side. `timeline` sets the time offset (model frames), fps, duration, slow motion.
    `origin` (motion seed, t): every tile passes through that frame (the projected photo's) at t."""
    _check_ws(G, ws)
    if ws.shape[0] != 1 or not motion_seeds:
        raise AnimationError("motion_variations takes one latent [1, num_ws, w_dim] and >= 1 motion seed")
    ws = ws.detach().float().expand(len(motion_seeds), -1, -1)
    try:
        with style_offsets(G, offsets):
            return render_video(G, path, timeline or Timeline(), ws=ws, motion_seeds=list(motion_seeds),
                                callback=callback, motion_origin=origin)
    except RenderError as exc:
        raise AnimationError(str(exc)) from exc


def content_variations(G, motion_seed: int, content_seeds: Sequence[int], path: str | os.PathLike, *,
                       ws: torch.Tensor | None = None, truncation_psi: float = 0.7,
                       timeline: Timeline | None = None, offsets: dict[str, torch.Tensor] | None = None,
                       callback: Callable[[int, int], None] | None = None) -> Path:
    """Keep the motion (one motion seed), resample the content: one tile per content seed, preceded by
    `ws` (e.g. the projected photo) when given. Style offsets, if any, apply to every tile."""
    tiles = [content_ws(G, content_seeds, truncation_psi)] if content_seeds else []
    if ws is not None:
        _check_ws(G, ws)
        tiles.insert(0, ws.detach().float().to(G.mapping.w_avg.device))
    if not tiles:
        raise AnimationError("content_variations needs content seeds or a latent")
    all_ws = torch.cat(tiles)
    try:
        with style_offsets(G, offsets):
            return render_video(G, path, timeline or Timeline(), ws=all_ws, motion_seeds=[motion_seed],
                                callback=callback)
    except RenderError as exc:
        raise AnimationError(str(exc)) from exc
