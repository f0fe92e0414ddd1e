"""StyleCLIP text edits of a latent at time t with the motion fixed.

Two methods (Patashnik et al. 2021, defaults in docs/reference.md, 'Projection and editing'):

- latent optimization: Adam on W+ from the start latent, loss = CLIP (1 - cos(image, prompt)) +
  l2_lambda * ||ws - ws_start||^2 (+ lpips_lambda * LPIPS(image, start image)); the StyleGAN-V
  variant's 40 steps, lr 0.1 (5% ramp-up, 25% cosine ramp-down), l2 0.001.
- global directions: StyleSpace = the per-layer style vectors s = affine(w) of every synthesis layer.
  Once per model, each channel's CLIP image direction is measured (perturb it by +-`perturb` std over a
  few images, average the normalized CLIP embedding differences) and cached on disk. An edit is then a
  dot product of those directions with the text direction, channels below `beta` zeroed, scaled by
  `alpha` and the channel std: no optimization, one synthesis.

Style offsets are applied by `core.styles.style_offsets` (forward hooks on the `affine` submodules of
G.synthesis; the weights are left untouched), so every renderer honours them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.files import atomic_write
from core.styles import StyleError, style_layers, style_offsets  # noqa: F401  (re-exported)
from editing.clip_weights import ClipModel, cache_dir
from projection.photo import to_uint8
from projection.projector import lr_schedule

log = logging.getLogger(__name__)


class EditError(ValueError):
    """Bad arguments to an edit."""


# --------------------------------------------------------------------------------------------------
# StyleSpace plumbing.

def synthesize(G, ws: torch.Tensor, motion_seed: int | list[int] = 0, t: float = 0.0,
               offsets: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] -> frames at time t [N, C, H, W] in ~[-1, 1], with optional style offsets."""
    n = ws.shape[0]
    seeds = [motion_seed] * n if isinstance(motion_seed, int) else list(motion_seed)
    times = torch.full([n, 1], float(t), dtype=torch.float64, device=ws.device)
    with style_offsets(G, offsets):
        return G.synthesis(ws, times, seeds)[:, 0]


@dataclass
class EditResult:
    ws: torch.Tensor  # [1, num_ws, w_dim]
    style_offsets: dict[str, torch.Tensor]  # layer -> [C]; empty for latent optimization
    image: np.ndarray  # uint8 [H, W, C] of the edit at t
    similarity_before: float  # cos(CLIP(image), CLIP(prompt)) before the edit
    similarity_after: float
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------
# Latent optimization.

def latent_edit(G, ws: torch.Tensor, prompt: str, clip: ClipModel, *, steps: int = 40, lr: float = 0.1,
                l2_lambda: float = 0.001, lpips_lambda: float = 0.0,
                lpips_model: torch.nn.Module | None = None,
                motion_seed: int = 0, t: float = 0.0,
                callback: Callable[[int, float, np.ndarray | None], bool | None] | None = None,
                preview_every: int = 5) -> EditResult:
    """Optimize W+ so the frame at t matches `prompt` in CLIP while staying near ws [1, num_ws, w_dim].

    callback(step, loss, preview uint8 [H, W, C] or None); returning False stops early.
    """
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise EditError(f"ws must be [N, {G.num_ws}, {G.w_dim}], got {tuple(ws.shape)}")
    if lpips_lambda > 0 and lpips_model is None:
        raise EditError("lpips_lambda > 0 needs an lpips_model (projection.lpips_weights.load_lpips())")
    with _frozen(G):
        return _latent_edit(G, ws, prompt, clip, steps, lr, l2_lambda, lpips_lambda, lpips_model,
                            motion_seed, t, callback, preview_every)


def _latent_edit(G, ws, prompt, clip, steps, lr, l2_lambda, lpips_lambda, lpips_model, motion_seed, t,
                 callback, preview_every) -> EditResult:
    started = time.perf_counter()
    ws_start = ws.detach().float().to(G.mapping.w_avg.device)
    text = clip.encode_text([prompt])  # [1, D]
    with torch.no_grad():
        img_start = synthesize(G, ws_start, motion_seed, t)
        sim_before = float((clip.encode_image(img_start) * text).sum(-1).mean())
    w = ws_start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w], lr=lr)
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_schedule(step, steps, lr)
        img = synthesize(G, w, motion_seed, t)
        clip_loss = (1.0 - (clip.encode_image(img) * text).sum(-1)).mean()
        loss = clip_loss + l2_lambda * (w - ws_start).square().sum()
        if lpips_lambda > 0:
            loss = loss + lpips_lambda * lpips_model(img, img_start).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if callback is not None:
            preview = to_uint8(img[0]) if step % preview_every == 0 or step == steps - 1 else None
            if callback(step, losses[-1], preview) is False:
                break
    with torch.no_grad():
        w = w.detach()
        img = synthesize(G, w, motion_seed, t)
        sim_after = float((clip.encode_image(img) * text).sum(-1).mean())
    return EditResult(ws=w.cpu(), style_offsets={}, image=to_uint8(img[0]), similarity_before=sim_before,
                      similarity_after=sim_after, losses=losses, seconds=time.perf_counter() - started)


# --------------------------------------------------------------------------------------------------
# Global directions.

@dataclass
class GlobalDirections:
    """Per-StyleSpace-channel CLIP directions of one model (and one CLIP)."""

    layers: list[str]  # synthesis layer names, in order
    channels: list[int]  # style channels per layer
    directions: torch.Tensor  # [K, D] unit CLIP image-space direction of each channel (K = sum channels)
    style_std: torch.Tensor  # [K] std of each style channel over random w
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        k = sum(self.channels)
        assert self.directions.ndim == 2 and self.directions.shape[0] == k, (self.directions.shape, k)
        assert self.style_std.shape == (k,), self.style_std.shape

    def relevance(self, text_direction: torch.Tensor) -> torch.Tensor:
        """[K]: how much moving each channel moves the image along the text direction [D]."""
        return self.directions @ text_direction.to(self.directions.dtype)

    def offsets(self, text_direction: torch.Tensor, alpha: float, beta: float) -> dict[str, torch.Tensor]:
        """StyleCLIP's edit: channels with |relevance| < beta are zeroed (disentanglement), the rest are
        scaled so the largest is 1, times alpha (strength) and the channel's std."""
        r = self.relevance(text_direction)
        r = torch.where(r.abs() >= beta, r, torch.zeros_like(r))
        peak = float(r.abs().max())
        if peak == 0.0:
            log.warning("no style channel passes beta=%.3f for this prompt; the edit does nothing", beta)
            return {}
        delta = alpha * (r / peak) * self.style_std  # [K]
        out, start = {}, 0
        for name, c in zip(self.layers, self.channels):
            chunk = delta[start: start + c]
            if bool((chunk != 0).any()):
                out[name] = chunk.clone()
            start += c
        return out

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        meta = {"layers": json.dumps(self.layers), "channels": json.dumps(self.channels),
                "meta": json.dumps(self.meta)}
        tensors = {"directions": self.directions.contiguous(), "style_std": self.style_std.contiguous()}
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> GlobalDirections:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return cls(json.loads(meta["layers"]), json.loads(meta["channels"]), tensors["directions"],
                   tensors["style_std"], json.loads(meta.get("meta", "{}")))


def model_fingerprint(G) -> str:
    """sha256 over the generator's tensors: the cache key for its directions."""
    h = hashlib.sha256()
    for name, tensor in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _frozen(G) -> Iterator[None]:
    """No gradients into G's weights during an edit, without changing the caller's flags for good."""
    flags = [(p, p.requires_grad) for p in G.parameters()]
    G.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@torch.no_grad()
def style_statistics(G, layers: list[tuple[str, torch.nn.Module]], num_samples: int = 1000,
                     seed: int = 0) -> torch.Tensor:
    """[K] std of every style channel over random z (all layers see the same w for a sampled z)."""
    device = G.mapping.w_avg.device
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G.z_dim)).float().to(device)
    w = G.mapping(z)[:, 0]  # [num_samples, w_dim]
    return torch.cat([module(w).std(0) for _, module in layers]).cpu()


def compute_global_directions(G, clip: ClipModel, *, num_images: int = 16, perturb: float = 5.0,
                              channels_per_batch: int = 8, truncation_psi: float = 0.7, seed: int = 0,
                              include_torgb: bool = False, motion_seed: int = 0, t: float = 0.0,
                              cache: bool | str | os.PathLike = True,
                              callback: Callable[[int, int], None] | None = None) -> GlobalDirections:
    """Measure (or load from the cache) every style channel's CLIP direction.

    For each channel: images from `num_images` fixed z (truncated by `truncation_psi`) rendered with the
    channel at +perturb and -perturb std; the CLIP embedding differences are normalized, averaged and
    normalized again. Cost ~ K * 2 * num_images syntheses + CLIP passes; callback(done, total) reports
    progress in channels. `cache`: True = the user cache, a path = that file, False = no caching.
    """
    layers = style_layers(G, include_torgb)
    params = {"num_images": num_images, "perturb": perturb, "psi": truncation_psi, "seed": seed,
              "torgb": include_torgb, "motion_seed": motion_seed, "t": t, "clip": clip.name}
    key = hashlib.sha256(json.dumps({**params, "G": model_fingerprint(G)}, sort_keys=True).encode())
    path = None
    if cache:
        path = Path(cache) if not isinstance(cache, bool) else \
            cache_dir() / "styleclip" / f"directions-{key.hexdigest()[:20]}.safetensors"
        if path.is_file():
            log.info("loading cached global directions from %s", path)
            return GlobalDirections.load(path)
    started = time.perf_counter()
    device = G.mapping.w_avg.device
    std = style_statistics(G, layers, seed=seed + 1).to(device)
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_images, G.z_dim)).float().to(device)
    with torch.no_grad(), _frozen(G):
        ws = G.mapping(z, truncation_psi=truncation_psi)  # [n, num_ws, w_dim]
        names = [n for n, _ in layers]
        sizes = [int(m(ws[:1, 0]).shape[-1]) for _, m in layers]  # style channels = the layer's in_channels
        total, done, directions = sum(sizes), 0, []
        offsets_std = torch.split(std, sizes)
        for name, size, layer_std in zip(names, sizes, offsets_std):
            for c0 in range(0, size, channels_per_batch):
                cs = list(range(c0, min(size, c0 + channels_per_batch)))
                directions.append(_channel_directions(G, clip, ws, name, size, cs, layer_std, perturb,
                                                      motion_seed, t))
                done += len(cs)
                if callback is not None:
                    callback(done, total)
    result = GlobalDirections(names, sizes, torch.cat(directions).cpu(), std.cpu(),
                              {**params, "seconds": time.perf_counter() - started})
    if path is not None:
        result.save(path)
        log.info("cached global directions (%d channels, %.1f s) at %s", total, result.meta["seconds"], path)
    return result


def _channel_directions(G, clip: ClipModel, ws: torch.Tensor, name: str, size: int, cs: list[int],
                        layer_std: torch.Tensor, perturb: float, motion_seed: int, t: float) -> torch.Tensor:
    """Unit CLIP directions [len(cs), D] of channels `cs` of layer `name`, in one batch."""
    n = ws.shape[0]
    k = len(cs)
    # Batch layout [k channels, 2 signs, n images].
    offset = torch.zeros(k, 2, n, size, device=ws.device)
    for i, c in enumerate(cs):
        offset[i, 0, :, c] = perturb * layer_std[c]
        offset[i, 1, :, c] = -perturb * layer_std[c]
    batch_ws = ws.repeat(2 * k, 1, 1)  # [k * 2 * n, num_ws, w_dim]
    img = synthesize(G, batch_ws, motion_seed, t, {name: offset.reshape(k * 2 * n, size)})
    emb = clip.encode_image(img).reshape(k, 2, n, -1)
    diff = F.normalize(emb[:, 0] - emb[:, 1], dim=-1).mean(1)  # [k, D]
    return F.normalize(diff, dim=-1)


def text_direction(clip: ClipModel, prompt: str, neutral: str = "a photo") -> torch.Tensor:
    """Unit direction [D] from the neutral description to the target one in CLIP text space."""
    e = clip.encode_text([prompt, neutral])
    return F.normalize(e[0] - e[1], dim=0)


def global_edit(G, ws: torch.Tensor, prompt: str, clip: ClipModel, directions: GlobalDirections, *,
                neutral: str = "a photo", alpha: float = 4.0, beta: float = 0.1, motion_seed: int = 0,
                t: float = 0.0) -> EditResult:
    """One text edit with precomputed global directions: no optimization, well under a second."""
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise EditError(f"ws must be [1, {G.num_ws}, {G.w_dim}], got {tuple(ws.shape)}")
    if math.isnan(alpha) or beta < 0:
        raise EditError("alpha must be a number and beta >= 0")
    started = time.perf_counter()
    ws = ws.detach().float().to(G.mapping.w_avg.device)
    offsets = directions.offsets(text_direction(clip, prompt, neutral), alpha, beta)
    prompt_emb = clip.encode_text([prompt])
    with torch.no_grad():
        before = synthesize(G, ws, motion_seed, t)
        after = synthesize(G, ws, motion_seed, t, offsets)
        sim_before = float((clip.encode_image(before) * prompt_emb).sum(-1).mean())
        sim_after = float((clip.encode_image(after) * prompt_emb).sum(-1).mean())
    return EditResult(ws=ws.cpu(), style_offsets={k: v.cpu() for k, v in offsets.items()},
                      image=to_uint8(after[0]), similarity_before=sim_before, similarity_after=sim_after,
                      seconds=time.perf_counter() - started)
