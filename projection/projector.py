"""Projection of a photo into the generator's W / W+ space at t = 0 with the motion fixed.

Defaults follow the StyleGAN2-ADA projector (docs/reference.md, 'Projection and editing'): Adam (0.9, 0.999),
lr 0.1 with a 5% linear ramp-up and a 25% cosine ramp-down, start at w_avg of 10,000 z samples, w noise of std
w_std * 0.05 * max(0, 1 - step / (0.75 * steps))^2, LPIPS (VGG16) on images area-downsampled to 256.
Mode "w" optimizes one w broadcast to every layer (the StyleGAN2 default); "w+" one w per layer
(the StyleGAN-V variant).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from projection.photo import PhotoInput, load_photo, to_tensor, to_uint8

log = logging.getLogger(__name__)

Mode = Literal["w", "w+"]


class ProjectionError(ValueError):
    """Bad arguments to the projector."""


@dataclass
class ProjectionStep:
    """What the callback receives each step; `preview` (uint8 [H, W, C]) is set every `preview_every`
    steps and on the last one, None otherwise."""

    step: int  # 0-based
    num_steps: int
    loss: float
    lpips: float
    preview: np.ndarray | None = None


@dataclass
class ProjectionResult:
    ws: torch.Tensor  # [1, num_ws, w_dim] float32 on the CPU
    reconstruction: np.ndarray  # uint8 [H, W, C]: G(ws, t, motion) at the model's resolution
    target: np.ndarray  # uint8 [H, W, C]: the photo as the projector saw it
    lpips: float  # LPIPS(target, reconstruction) with the projector's LPIPS model
    psnr: float  # dB, on the uint8 images
    mode: str
    steps: int  # steps actually run (fewer when the callback stopped it)
    motion_seed: int
    t: float
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def lr_schedule(step: int, num_steps: int, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """StyleGAN2-ADA's learning rate: linear ramp-up over `rampup`, cosine ramp-down over `rampdown`."""
    t = step / num_steps
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup)


def noise_scale(step: int, num_steps: int, w_std: float, factor: float = 0.05, ramp: float = 0.75) -> float:
    """Std of the noise added to w, decaying quadratically to zero at `ramp` of the run."""
    return w_std * factor * max(0.0, 1.0 - (step / num_steps) / ramp) ** 2


@torch.no_grad()
def w_statistics(G, num_samples: int = 10_000, seed: int = 123, c: torch.Tensor | None = None,
                 batch: int = 2_000) -> tuple[torch.Tensor, float]:
    """w_avg [w_dim] and the scalar w_std = sqrt(E ||w - w_avg||^2) over `num_samples` z draws."""
    device = G.mapping.w_avg.device
    rng = np.random.RandomState(seed)
    ws = []
    for start in range(0, num_samples, batch):
        n = min(batch, num_samples - start)
        z = torch.from_numpy(rng.randn(n, G.z_dim)).float().to(device)
        cc = None if c is None else c.expand(n, -1)
        ws.append(G.mapping(z, cc)[:, 0].float())  # [n, w_dim]: the same w is broadcast to every layer
    w = torch.cat(ws)
    w_avg = w.mean(0)
    w_std = float(((w - w_avg).square().sum() / num_samples).sqrt())
    return w_avg, w_std


def resize_for_lpips(img: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> area-downsampled to `size` when larger; 1-channel images repeated to RGB."""
    if img.shape[2] > size:
        img = F.interpolate(img, size=(size, size), mode="area")
    if img.shape[1] == 1:
        img = img.repeat(1, 3, 1, 1)
    return img


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def target_tensor(G, target_image) -> tuple[torch.Tensor, np.ndarray]:
    """A photo (any `load_photo` input, or a tensor [1, C, H, W] in [-1, 1]) -> (tensor [1, C, R, R],
    uint8 [R, R, C]) at the model's resolution R."""
    res, ch = G.img_resolution, G.img_channels
    if isinstance(target_image, torch.Tensor):
        x = target_image.detach().float().cpu()
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape) != (1, ch, res, res):
            raise ProjectionError(f"target tensor must be [1, {ch}, {res}, {res}] in [-1, 1], "
                                  f"got {tuple(x.shape)}")
        return x, to_uint8(x)
    ready = isinstance(target_image, np.ndarray) and target_image.dtype == np.uint8
    if ready and target_image.shape == (res, res, ch):
        img = target_image
    else:
        img = load_photo(target_image, res, channels=ch)
    return to_tensor(img), img


def project(G, target_image: PhotoInput | torch.Tensor, *, steps: int = 1000, mode: Mode = "w",
            lr: float = 0.1, lr_rampup: float = 0.05, lr_rampdown: float = 0.25,
            noise_factor: float = 0.05, noise_ramp: float = 0.75, w_avg_samples: int = 10_000,
            motion_seed: int = 0, t: float = 0.0, lpips_model: torch.nn.Module | None = None,
            lpips_resolution: int = 256, mse_weight: float = 0.0, seed: int = 0,
            c: torch.Tensor | None = None, device: torch.device | str | None = None,
            callback: Callable[[ProjectionStep], bool | None] | None = None,
            preview_every: int = 10) -> ProjectionResult:
    """Find ws with G.synthesis(ws, t, motion_seed) ~ target_image.

    target_image: a path / bytes / PIL image / uint8 array (loaded with `load_photo` at the model's
    resolution), or a tensor [1, C, H, W] in [-1, 1]. lpips_model: callable (x, y) -> [N, 1, 1, 1] on
    images in [-1, 1]; defaults to the real LPIPS VGG16 (`load_lpips`). mse_weight adds a pixel MSE term
    (0 as in StyleGAN2-ADA). The callback gets a ProjectionStep every step; returning False stops early.
    """
    if mode not in ("w", "w+"):
        raise ProjectionError(f"mode must be 'w' or 'w+', got {mode!r}")
    if steps < 1:
        raise ProjectionError(f"steps must be >= 1, got {steps}")
    if G.c_dim and c is None:
        raise ProjectionError("this generator is class-conditional: pass c [1, c_dim]")
    device = torch.device(device) if device is not None else G.mapping.w_avg.device
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    if lpips_model is None:
        from projection.lpips_weights import load_lpips

        lpips_model = load_lpips("vgg", device=device)
    started = time.perf_counter()

    target, target_u8 = target_tensor(G, target_image)
    target = target.to(device)
    target_lp = resize_for_lpips(target, lpips_resolution)
    c = None if c is None else c.to(device)
    w_avg, w_std = w_statistics(G, w_avg_samples, c=c)
    num_ws = G.num_ws
    w_opt = w_avg.reshape(1, 1, -1).repeat(1, 1 if mode == "w" else num_ws, 1).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt], betas=(0.9, 0.999), lr=lr)
    times = torch.full([1, 1], float(t), dtype=torch.float64, device=device)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def synth(w: torch.Tensor) -> torch.Tensor:
        ws = w.expand(1, num_ws, -1) if mode == "w" else w  # [1, num_ws, w_dim]
        return G.synthesis(ws, times, [motion_seed], c=c)[:, 0]  # [1, C, H, W]

    losses: list[float] = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_schedule(step, steps, lr, lr_rampup, lr_rampdown)
        sigma = noise_scale(step, steps, w_std, noise_factor, noise_ramp)
        w_noise = torch.randn(w_opt.shape, generator=gen).to(device) * sigma
        img = synth(w_opt + w_noise)
        dist = lpips_model(resize_for_lpips(img, lpips_resolution), target_lp).sum()
        loss = dist + mse_weight * (img - target).square().mean() if mse_weight else dist
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if callback is not None:
            last = step == steps - 1
            preview = to_uint8(img[0]) if (step % preview_every == 0 or last) else None
            if callback(ProjectionStep(step, steps, losses[-1], float(dist.detach()), preview)) is False:
                log.info("projection stopped by the callback at step %d", step)
                break

    with torch.no_grad():
        w_final = w_opt.detach()
        recon = synth(w_final)
        lp = float(lpips_model(resize_for_lpips(recon, lpips_resolution), target_lp).sum())
    recon_u8 = to_uint8(recon[0])
    ws = w_final.expand(1, num_ws, -1).contiguous() if mode == "w" else w_final.contiguous()
    assert ws.shape == (1, num_ws, G.w_dim), ws.shape
    return ProjectionResult(ws=ws.float().cpu(), reconstruction=recon_u8, target=target_u8, lpips=lp,
                            psnr=psnr_uint8(recon_u8, target_u8), mode=mode, steps=len(losses),
                            motion_seed=motion_seed, t=float(t), losses=losses,
                            seconds=time.perf_counter() - started)
