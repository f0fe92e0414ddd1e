"""Video inversion: a real clip -> one content latent + the motion that makes G render each frame at its
own timestamp, then (optionally) pivotal tuning across the frames.

In the paper's terms (section 3.1): a video is one content code w (here W+, one w per layer) and a
sequence of motion noise tokens z_k at times k * delta_z; F_m's two padding-less conv1d turn them into
motion codes u_j, and the acyclic positional encoding (section 3.1) turns the codes around t into v_t,
which enters the synthesis network at its 4x4 constant. Inversion optimizes w and exactly the tokens
that the clip's time span reads (`tokens_for`): 2(K-1) + 1 + floor(t_max / delta_z) + 1 of them. Past
the last optimized token the motion continues with the tokens of `motion_seed` (core.motion.Motion with
both noise and seeds), so rendering past the clip's end goes on, and the join is as smooth as any frame
step (the positional encoding keeps the codes continuous in t).

Stages, each with the callback (progress, preview, cancel):
1. content: W+ projection of the first frame at t = 0 with the motion seed's own tokens
   (`projector.project`), the initialization;
2. motion: w and the tokens together over all frames (a few random frames per step), loss LPIPS + L2
   per frame + a frame-difference term that makes the motion, not the content, explain how frames differ
   (the known failure of clip inversion is the collapse to a static mean frame; `motion_ratio` measures
   it: the reconstruction's mean frame-to-frame LPIPS over the clip's), + a prior that keeps each token's
   squared norm near z_dim as for N(0, I) tokens;
3. tune (optional): `projection.tuning.tune_frames` on all frames, every block (the frames say how the
   clip moves, so the coarse blocks that turn v_t into pose are fitted too; docs/video_inversion.md).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import weights_sha256
from core.latent import Latent, save_latent
from core.motion import Motion
from core.noise import token_noise
from core.render import to_uint8 as frames_to_uint8
from core.tuned import save_delta
from projection.photo import to_tensor, to_uint8
from projection.projector import ProjectionError, lr_schedule, project, psnr_uint8, resize_for_lpips
from projection.tuning import TuneOptions, frame_difference_loss, pick_frames, tune_frames
from projection.video.clip import Clip, clip_duration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoOptions:
    """Defaults measured on the bundled 64x64 model on 2 CPU cores (bench/video_inversion.py)."""

    content_steps: int = 100  # W+ projection of the first frame
    steps: int = 300  # w and motion tokens over all frames
    lr: float = 0.05  # peak lr of w (the projector's ramp-up / ramp-down schedule)
    motion_lr: float = 0.05  # peak lr of the motion tokens
    frames_per_step: int = 4
    l2_weight: float = 1.0
    diff_weight: float = 1.0  # frame-difference term (anti-collapse)
    token_prior: float = 0.01  # (||z_k||^2 / z_dim - 1)^2 per token
    motion_seed: int = 0  # the tokens' initial values and the continuation past the clip
    tune: bool = False
    tune_options: TuneOptions = TuneOptions(steps=400, min_resolution=4, diff_weight=1.0, regularize_every=4,
                                            locality_frames=2)
    seed: int = 0

    def check(self) -> None:
        if min(self.content_steps, self.steps, self.frames_per_step) < 1:
            raise ProjectionError("content_steps, steps and frames_per_step must be >= 1")
        values = (self.lr, self.motion_lr, self.l2_weight, self.diff_weight, self.token_prior)
        if not all(np.isfinite(values)) or min(values) < 0 or not (self.lr > 0 and self.motion_lr > 0):
            raise ProjectionError("learning rates must be > 0 and loss weights finite and >= 0")
        if not 0 <= self.motion_seed < 2**31:
            raise ProjectionError(f"motion_seed must be in 0 .. 2**31 - 1, got {self.motion_seed}")
        self.tune_options.check()


@dataclass
class VideoStep:
    """What the callback receives each step; `preview` (uint8 [H, W, C]) every few steps, else None."""

    stage: str  # "content", "motion" or "tune"
    step: int
    num_steps: int
    lpips: float
    preview: np.ndarray | None = None


@dataclass
class VideoInversion:
    ws: torch.Tensor  # [1, num_ws, w_dim]
    motion_noise: torch.Tensor  # [1, L, z_dim]: the clip's tokens
    motion_seed: int  # tokens from L on
    times: np.ndarray  # float64 [T] model frames of the clip's frames
    frames: np.ndarray  # uint8 [T, H, W, 3]: the reconstruction (tuned when tuned)
    target: np.ndarray  # uint8 [T, H, W, 3]: the clip as the model saw it
    frame_lpips: list[float]
    psnr: float
    motion_ratio: float  # mean consecutive-frame LPIPS, reconstruction / clip (1 = the clip's motion)
    untuned_lpips: float  # mean per-frame LPIPS before tuning
    G: torch.nn.Module | None = None  # the tuned generator (a copy) when tuned
    delta: dict[str, torch.Tensor] = field(default_factory=dict)  # its fp16 delta (core.tuned.save_delta)
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def lpips(self) -> float:
        return float(np.mean(self.frame_lpips))

    @property
    def duration(self) -> float:
        """Model frames the clip covers (`Clip.duration`): the last frame's time plus one frame interval."""
        return clip_duration(self.times)

    def motion(self, loop: tuple[float, float] | None = None) -> Motion:
        return Motion.from_noise(self.motion_noise, continue_seeds=[self.motion_seed], loop=loop)


def tokens_for(G, t_max: float) -> int:
    """Motion tokens that frames up to time t_max read: codes u_0 .. u_{i+1}, i = floor(t_max / delta_z)."""
    cfg = G.synthesis.motion_encoder.cfg
    return int(t_max // cfg.delta_z) + 2 + cfg.tokens_per_code - 1


def invert_clip(G, clip: Clip, options: VideoOptions = VideoOptions(), *, lpips_model=None,
                device: torch.device | str | None = None, w_avg_samples: int = 10_000,
                callback: Callable[[VideoStep], bool | None] | None = None,
                preview_every: int = 10) -> VideoInversion:
    """Invert `clip` (frames at G's resolution, times in model frames) into G; see the module doc."""
    options.check()
    res = G.img_resolution
    if clip.frames.shape[1:3] != (res, res):
        raise ProjectionError(f"clip frames are {clip.frames.shape[1]}x{clip.frames.shape[2]}, the model renders "
                              f"{res}x{res}: read it with projection.video.read_clip(path, {res})")
    device = torch.device(device) if device is not None else G.mapping.w_avg.device
    if lpips_model is None:
        from projection.lpips_weights import load_lpips

        lpips_model = load_lpips("vgg", device=device)
    started = time.perf_counter()
    targets = torch.cat([to_tensor(f) for f in clip.frames]).to(device)  # [T, C, H, W]
    times = torch.from_numpy(clip.times).to(device)
    stop = _Stop(callback)

    proj = project(G, targets[:1], steps=options.content_steps, mode="w+", motion_seed=options.motion_seed,
                   t=float(clip.times[0]), lpips_model=lpips_model, seed=options.seed, device=device,
                   w_avg_samples=w_avg_samples,
                   callback=stop.relay("content"), preview_every=preview_every)
    G_fixed = copy.deepcopy(G).eval().requires_grad_(False).to(device)  # the caller's model stays as it is
    ws, noise = _fit_motion(G_fixed, proj.ws.to(device), targets, times, options, lpips_model, device, stop,
                            preview_every)
    motion = Motion.from_noise(noise, continue_seeds=[options.motion_seed])
    frames, per_frame = _render_and_score(G_fixed, ws, times, motion, targets, lpips_model)
    untuned = float(np.mean(per_frame))
    tuned_G, delta = None, {}
    if options.tune and not stop.cancelled:
        tr = tune_frames(G, ws, targets, times, motion, options=options.tune_options,
                         frames_per_step=options.frames_per_step, lpips_model=lpips_model, device=device,
                         callback=stop.relay("tune"), preview_every=preview_every)
        tuned_G, delta, frames, per_frame = tr.G, tr.delta, tr.frames, tr.frame_lpips
    return VideoInversion(ws=ws.cpu(), motion_noise=noise.cpu(), motion_seed=options.motion_seed,
                          times=clip.times.copy(), frames=frames, target=clip.frames.copy(), frame_lpips=per_frame,
                          psnr=psnr_uint8(frames, clip.frames),
                          motion_ratio=motion_ratio(frames, clip.frames, lpips_model, device),
                          untuned_lpips=untuned, G=tuned_G, delta=delta, seconds=time.perf_counter() - started,
                          cancelled=stop.cancelled)


def _fit_motion(G, ws0, targets, times, options, lpips_model, device, stop, preview_every):
    """Stage 2: w and the clip's motion tokens over all frames. Returns (ws, tokens [1, L, z_dim])."""
    z_dim = G.synthesis.motion_encoder.cfg.z_dim
    length = tokens_for(G, float(times.max()))
    init = token_noise(torch.tensor(options.motion_seed), torch.arange(length), z_dim)[None].to(device)
    noise = init.clone().requires_grad_(True)
    ws = ws0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([{"params": [ws], "lr": options.lr},
                                  {"params": [noise], "lr": options.motion_lr}], betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(options.seed)
    num_t = targets.shape[0]
    for step in range(options.steps):
        if stop.cancelled:
            break
        for group, peak in zip(optimizer.param_groups, (options.lr, options.motion_lr)):
            group["lr"] = lr_schedule(step, options.steps, peak)
        idx = pick_frames(num_t, options.frames_per_step, gen)
        motion = Motion.from_noise(noise, continue_seeds=[options.motion_seed])
        img = G.synthesis(ws, times[idx][None], motion)[0]  # [B, C, H, W]
        x = targets[idx]
        lp = lpips_model(resize_for_lpips(img, 256), resize_for_lpips(x, 256)).mean()
        loss = lp + options.l2_weight * (img - x).square().mean()
        if len(idx) > 1 and options.diff_weight:  # the motion must explain how the frames differ
            loss = loss + options.diff_weight * frame_difference_loss(img, x)
        if options.token_prior:
            loss = loss + options.token_prior * (noise.square().mean(dim=2) - 1).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        preview = to_uint8(img[0].detach()) if step % preview_every == 0 or step == options.steps - 1 else None
        stop(VideoStep("motion", step, options.steps, float(lp.detach()), preview))
    return ws.detach(), noise.detach()


@torch.no_grad()
def _render_and_score(G, ws, times, motion, targets, lpips_model) -> tuple[np.ndarray, list[float]]:
    out = G.synthesis(ws, times[None], motion)[0]  # [T, C, H, W]
    per_frame = lpips_model(resize_for_lpips(out, 256), resize_for_lpips(targets, 256)).reshape(-1)
    return frames_to_uint8(out), [float(v) for v in per_frame]


@torch.no_grad()
def motion_ratio(frames: np.ndarray, real: np.ndarray, lpips_model, device="cpu") -> float:
    """Mean LPIPS between consecutive frames of `frames` over the same for `real` (both uint8 [T, H, W, 3]):
    about 1 when the reconstruction moves as much as the clip, near 0 for a collapse to a still frame."""
    return mean_step_lpips(frames, lpips_model, device) / max(mean_step_lpips(real, lpips_model, device), 1e-8)


@torch.no_grad()
def mean_step_lpips(frames: np.ndarray, lpips_model, device="cpu") -> float:
    x = torch.cat([to_tensor(f) for f in frames]).to(device)
    return float(lpips_model(resize_for_lpips(x[1:], 256), resize_for_lpips(x[:-1], 256)).mean())


class _Stop:
    """Relays each stage's steps to the user's callback and remembers a cancel (callback returned False)."""

    def __init__(self, callback):
        self.callback, self.cancelled = callback, False

    def __call__(self, step: VideoStep) -> bool:
        if self.callback is not None and self.callback(step) is False:
            self.cancelled = True
        return not self.cancelled

    def relay(self, stage: str):
        def on_step(s) -> bool:
            return self(VideoStep(stage, s.step, s.num_steps, float(s.lpips), s.preview))
        return on_step


def save_inversion(path: str | os.PathLike, inv: VideoInversion, G, checkpoint_name: str = "") -> Path:
    """Write the clip's latent .npz (content ws, motion tokens, continuation seed, clip duration) and, when
    tuned, its weights delta beside it (`<stem>.tuned.safetensors`), as photos do (core.latent, core.tuned).
    `G` is the base generator (its weights hash ties the delta to it)."""
    path = Path(path)
    latent = Latent(ws=inv.ws, motion_seed=inv.motion_seed, t=float(inv.times[0]), checkpoint=checkpoint_name,
                    mode="w+", motion_noise=inv.motion_noise, clip_duration=inv.duration)
    if not inv.delta:
        return save_latent(path, latent)
    latent.base_hash = weights_sha256(G)
    delta_path = save_delta(path.with_suffix(".tuned.safetensors"), inv.delta, latent.base_hash)
    latent.tuned_weights = str(delta_path)
    try:
        return save_latent(path, latent)
    except BaseException:  # no delta without the latent that references it
        delta_path.unlink(missing_ok=True)
        raise
