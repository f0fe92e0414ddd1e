"""Pivotal tuning (Roich et al., "Pivotal Tuning for Latent-based Editing of Real Images", 2021) for a
video generator: after `projector.project` has found the pivot ws, fine-tune a copy of the synthesis
network briefly so that G(ws, t = 0) reproduces the photo, while the rest of the model keeps working.

Per step: reconstruction at t = 0 with the projection's motion seed, LPIPS + L2 (L2 weighted 10: at 64x64
PSNR >= 30 dB needs it); every `regularize_every` steps PTI's locality regularizer (a latent interpolated
between the pivot and a random w renders the same under the tuned and the original network, LPIPS + L2,
weight lambda_R) at `locality_frames` random instants of a random motion; for a photo, every
`temporal_every` steps the temporal term below; optionally (`anchor` > 0) a decoupled pull of the tuned
weights back to the base ones after every step, which trades likeness for locality (measured in
docs/pivotal_tuning.md; off by default because the photo looking like the photo is the point).

Keeping the motion (measured, bench/pivotal_tuning.py, docs/pivotal_tuning.md): motion enters the
synthesis network only through the codes v_t concatenated to its 4x4 constant (paper section 3.1), so the
coarse blocks (4x4, 8x8) that turn v_t into pose stay frozen and only blocks from `min_resolution` up are
tuned. Tuning every block let the network memorize the photo and freeze the motion (frame-to-frame change
0.23x the untuned model's).

Keeping the person (the temporal term, `temporal_weight`): a fit at t0 alone holds only in the photo's pose,
and the moving frames drifted up to 3.5x further from the photo than the reconstruction. The term renders
the pivot at a random instant of a random motion through the photo's frame (as the studio animates it)
and asks for the photo plus the original network's own change since t0, G0(t) - G0(t0): the correction
then holds in every pose while the motion stays the original model's. Matching only the change between
consecutive frames (no photo in the target) was tried first and lowered likeness, motion and locality.

The mapping network and the motion mapping F_m stay frozen: the latent space and the motion codes keep
their meaning, so saved motion seeds, edits and directions still apply.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from core.motion import Motion
from core.render import to_uint8 as frames_to_uint8
from projection.photo import to_uint8
from projection.projector import ProjectionError, lr_schedule, psnr_uint8, resize_for_lpips, target_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneOptions:
    """Defaults measured on the bundled 64x64 model on 2 CPU cores (bench/pivotal_tuning.py)."""

    steps: int = 400
    lr: float = 1e-2  # peak; 5% linear ramp-up, 25% cosine ramp-down (projector.lr_schedule)
    lpips_weight: float = 1.0
    l2_weight: float = 10.0
    locality_weight: float = 0.3  # PTI's lambda_R, on both its LPIPS and L2
    regularize_every: int = 2  # steps between locality evaluations
    locality_frames: int = 1  # instants per locality evaluation (tuned frames it costs)
    locality_span: float = 48.0  # model frames: the locality term's instants are drawn from [0, span)
    min_resolution: int = 16  # synthesis blocks below this resolution stay frozen (they carry the motion)
    anchor: float = 0.0  # > 0: after each step w -= lr * anchor * (w - w_base), more locality, less likeness
    diff_weight: float = 0.0  # clips: L2 between consecutive fitted frames' and targets' differences
    temporal_weight: float = 0.2  # photos: frames at other instants = the photo + the original model's change
    temporal_every: int = 4  # steps between temporal-term evaluations (each costs one more tuned frame)
    seed: int = 0

    def check(self) -> None:
        if self.steps < 1:
            raise ProjectionError(f"tuning steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise ProjectionError(f"tuning lr must be > 0, got {self.lr}")
        weights = (self.lpips_weight, self.l2_weight, self.locality_weight, self.anchor, self.diff_weight,
                   self.temporal_weight)
        if min(weights) < 0 or not all(np.isfinite(weights)):
            raise ProjectionError("tuning loss weights and the anchor must be finite and >= 0")
        if min(self.regularize_every, self.temporal_every, self.locality_frames) < 1:
            raise ProjectionError("regularize_every, temporal_every and locality_frames must be >= 1")
        if not self.locality_span > 0:
            raise ProjectionError(f"locality_span must be > 0, got {self.locality_span}")


@dataclass
class TuneStep:
    """What the callback receives each step; `preview` (uint8 [H, W, C]) every `preview_every` steps."""

    step: int  # 0-based
    num_steps: int
    loss: float
    lpips: float  # reconstruction LPIPS at t = 0
    preview: np.ndarray | None = None


@dataclass
class TuneResult:
    """`reconstruction`, `target`: the first frame (the photo); `lpips` the mean over frames, `psnr` over all."""

    G: torch.nn.Module  # the tuned generator (a copy), eval mode, no grad, weights = base + fp16 delta
    delta: dict[str, torch.Tensor]  # {parameter name: fp16 change}: what `core.tuned.save_delta` stores
    reconstruction: np.ndarray  # uint8 [H, W, C] from the tuned generator
    target: np.ndarray
    lpips: float
    psnr: float
    steps: int  # run (fewer when the callback stopped it)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    frames: np.ndarray | None = None  # uint8 [T, H, W, C]: every tuned frame (T = 1 for a photo)
    frame_lpips: list[float] = field(default_factory=list)


def tune(G, ws: torch.Tensor, target_image, *, motion_seed: int = 0, t: float = 0.0,
         options: TuneOptions = TuneOptions(), lpips_model: torch.nn.Module | None = None,
         lpips_resolution: int = 256, device: torch.device | str | None = None,
         callback: Callable[[TuneStep], bool | None] | None = None, preview_every: int = 10) -> TuneResult:
    """Tune a copy of G's synthesis network so that G(ws [1, num_ws, w_dim], t, motion_seed) ~ the photo.

    The returned generator's changed weights are rounded to base + fp16(delta), exactly what
    `core.tuned.save_delta` stores, so the figures reported here are those of the saved artifact.
    """
    target, _ = target_tensor(G, target_image)
    return tune_frames(G, ws, target, torch.tensor([float(t)], dtype=torch.float64), Motion.from_seeds([motion_seed]),
                       options=options, lpips_model=lpips_model, lpips_resolution=lpips_resolution, device=device,
                       callback=callback, preview_every=preview_every)


def tune_frames(G, ws: torch.Tensor, targets: torch.Tensor, times: torch.Tensor, motion: Motion, *,
                options: TuneOptions = TuneOptions(), frames_per_step: int = 4,
                lpips_model: torch.nn.Module | None = None, lpips_resolution: int = 256,
                device: torch.device | str | None = None, callback: Callable[[TuneStep], bool | None] | None = None,
                preview_every: int = 10) -> TuneResult:
    """Pivotal tuning on T frames: G(ws, times[i], motion) ~ targets[i] (`[T, C, H, W]` in [-1, 1], times
    `[T]` model frames, motion for one video). Each step fits `frames_per_step` random frames (all of them
    when there are fewer); a photo is the case T = 1. The result's `frames` are every frame re-rendered."""
    options.check()
    if ws.ndim != 3 or ws.shape[0] != 1 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise ProjectionError(f"ws must be [1, {G.num_ws}, {G.w_dim}], got {tuple(ws.shape)}")
    num_t = targets.shape[0]
    assert targets.ndim == 4 and times.shape == (num_t,), (targets.shape, times.shape)
    device = torch.device(device) if device is not None else G.mapping.w_avg.device
    if lpips_model is None:
        from projection.lpips_weights import load_lpips

        lpips_model = load_lpips("vgg", device=device)
    started = time.perf_counter()
    G0 = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    G1 = copy.deepcopy(G0)
    params = _tunable(G1, options.min_resolution)
    if not params:
        raise ProjectionError(f"no synthesis block at or above min_resolution {options.min_resolution} "
                              f"(the model's blocks: {G1.synthesis.block_resolutions})")
    targets = targets.float().to(device)
    ws = ws.detach().float().to(device)
    times = times.to(torch.float64).to(device)
    gen = torch.Generator(device="cpu").manual_seed(options.seed)
    optimizer = torch.optim.Adam(params, lr=options.lr, betas=(0.9, 0.999))
    anchors = [(p, p.detach().clone()) for p in params]

    def lp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return lpips_model(resize_for_lpips(a, lpips_resolution), resize_for_lpips(b, lpips_resolution)).mean()

    temporal = options.temporal_weight > 0 and num_t == 1 and motion.seeds is not None  # photos only
    if temporal:  # the term's correction: the photo minus the original network's frame of it
        with torch.no_grad():
            correction = targets[0] - G0.synthesis(ws, times[None], motion)[0, 0]  # [C, H, W]
    losses: list[float] = []
    for step in range(options.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_schedule(step, options.steps, options.lr)
        idx = pick_frames(num_t, frames_per_step, gen)
        img = G1.synthesis(ws, times[idx][None], motion)[0]  # [B, C, H, W]
        x = targets[idx]
        rec_lpips = lp(img, x)
        loss = options.lpips_weight * rec_lpips + options.l2_weight * (img - x).square().mean()
        if options.diff_weight and len(idx) > 1:
            loss = loss + options.diff_weight * frame_difference_loss(img, x)
        if temporal and step % options.temporal_every == 0:
            loss = loss + options.temporal_weight * _transfer(G0, G1, ws, correction, times[0], motion, gen,
                                                             options.locality_span, lp, options.l2_weight)
        if options.locality_weight and step % options.regularize_every == 0:
            locality = _locality(G0, G1, ws, gen, options.locality_span, options.locality_frames, lp)
            loss = loss + options.locality_weight * locality
            log.debug("step %d: reconstruction LPIPS %.4f, locality %.4f", step, float(rec_lpips.detach()),
                      float(locality.detach()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if options.anchor:
            with torch.no_grad():
                for p, p0 in anchors:
                    p.sub_(p - p0, alpha=optimizer.param_groups[0]["lr"] * options.anchor)
        losses.append(float(loss.detach()))
        if callback is not None:
            last = step == options.steps - 1
            preview = to_uint8(img[0].detach()) if (step % preview_every == 0 or last) else None
            if callback(TuneStep(step, options.steps, losses[-1], float(rec_lpips.detach()), preview)) is False:
                log.info("tuning stopped by the callback at step %d", step)
                break

    G1.eval().requires_grad_(False)
    delta = _round_to_fp16_delta(G0, G1)
    with torch.no_grad():
        recon = G1.synthesis(ws, times[None], motion)[0]  # [T, C, H, W]
        per_frame = lpips_model(resize_for_lpips(recon, lpips_resolution),
                                resize_for_lpips(targets, lpips_resolution)).reshape(-1)
    frames, target_u8 = frames_to_uint8(recon), frames_to_uint8(targets)  # [T, H, W, 3]
    return TuneResult(G=G1, delta=delta, reconstruction=frames[0], target=target_u8[0],
                      lpips=float(per_frame.mean()), psnr=psnr_uint8(frames, target_u8), steps=len(losses),
                      losses=losses, seconds=time.perf_counter() - started, frames=frames,
                      frame_lpips=[float(x) for x in per_frame])


def frame_difference_loss(frames: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L2 between consecutive frames' differences and the targets' (both `[T, C, H, W]`, T >= 2): the motion
    must explain how the frames differ, the guard against a clip fit collapsing to a still mean frame."""
    return ((frames[1:] - frames[:-1]) - (targets[1:] - targets[:-1])).square().mean()


def pick_frames(num_frames: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """`count` distinct random frame indices, sorted (all frames when there are no more than `count`)."""
    if num_frames <= count:
        return torch.arange(num_frames)
    return torch.randperm(num_frames, generator=gen)[:count].sort().values


def _tunable(G, min_resolution: int = 4) -> list[torch.nn.Parameter]:
    """The synthesis blocks' parameters from `min_resolution` up; the motion mapping F_m stays frozen (see
    the module doc)."""
    G.requires_grad_(False)
    blocks = [getattr(G.synthesis, f"b{res}") for res in G.synthesis.block_resolutions if res >= min_resolution]
    params = [p for block in blocks for p in block.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def _transfer(G0, G1, ws, correction, t0, motion: Motion, gen: torch.Generator, span: float, lp,
              l2_weight: float) -> torch.Tensor:
    """The pivot under a random motion that passes through the photo's frame at t0 (as the studio animates
    it), at a random instant t: the tuned frame should be G0(t) + `correction` (photo - G0(t0)), i.e. the
    photo plus the original network's change since t0, so the tuning's correction holds in every pose."""
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
    moving = Motion.from_seeds([seed], origin=(int(motion.seeds[0]), float(t0)))
    t = float(torch.rand((), generator=gen, dtype=torch.float64)) * span
    ts = torch.tensor([[t]], dtype=torch.float64, device=ws.device)
    with torch.no_grad():
        target = G0.synthesis(ws, ts, moving)[0, 0] + correction  # [C, H, W]
    out = G1.synthesis(ws, ts, moving)[0, 0]
    return lp(out[None], target[None]) + l2_weight * (out - target).square().mean()


def _locality(G0, G1, ws, gen: torch.Generator, span: float, frames: int, lp) -> torch.Tensor:
    """PTI's locality regularizer: w_r = w_p + a (w_z - w_p), a ~ U(0.5, 1) for a random w_z (away from the
    pivot, where the reconstruction term rules), rendered at `frames` random instants of a random motion
    seed by both networks: LPIPS + L2 between them."""
    z = torch.randn(1, G0.z_dim, generator=gen).to(ws.device)
    a = 0.5 + 0.5 * float(torch.rand((), generator=gen))
    times = (torch.rand(1, frames, generator=gen, dtype=torch.float64) * span).to(ws.device)
    seeds = torch.randint(0, 2**31 - 1, (1,), generator=gen).tolist()
    with torch.no_grad():
        w_r = ws + a * (G0.mapping(z, None) - ws)  # [1, num_ws, w_dim]
        ref = G0.synthesis(w_r, times, seeds)[0]  # [frames, C, H, W]
    out = G1.synthesis(w_r, times, seeds)[0]
    return lp(out, ref) + (out - ref).square().mean()


@torch.no_grad()
def _round_to_fp16_delta(G0, G1) -> dict[str, torch.Tensor]:
    """G1 := G0 + fp16(G1 - G0) for every changed tensor, as `core.tuned.apply_delta` computes it from
    the saved file, so the tuned copy and a reload of the file agree bit for bit. Returns the delta."""
    base = dict(G0.named_parameters())
    delta = {}
    for name, p in G1.named_parameters():
        d = (p - base[name]).half()
        if bool(d.any()):
            delta[name] = d.cpu()
            p.copy_(base[name]).add_(d.float())
    return delta
