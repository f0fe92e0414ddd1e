"""Pivotal tuning benchmark: what a photo looks like after projection + tuning, whether its animation keeps
the person and still moves, and how much of the rest of the model the tuning touched.

    python bench/pivotal_tuning.py --photos assets/samples
    python bench/pivotal_tuning.py --photos ../shared/data/talking-heads/photos --num-images 4 --face

Per photo: W+ projection (--proj-steps), then pivotal tuning (projection.tuning defaults unless overridden).
Figures (LPIPS = the projector's VGG16 LPIPS, on the model's resolution):
- t = 0 reconstruction LPIPS / PSNR before and after tuning, seconds (projection + tuning);
- animation over --frames frames x 3 motion seeds (tuned generator), as the studio and core.generate
  render a latent (every motion passes through the photo's frame at t = 0), and with free motion (each
  seed from its own pose): max over frames of LPIPS(frame, photo) / LPIPS(t = 0 reconstruction, photo)
  (must stay <= 2), and the mean LPIPS of consecutive frames divided by the untuned generator's for the
  same latent and seeds (0.5 .. 2);
- locality: mean LPIPS between original and tuned generator's frames for 16 random latents (<= 0.1).

--untuned: projection only, and the untuned model's own drift over the same animation, max LPIPS(G0(t),
G0(t0)). It bounds the frame / t0 target: a tuned model that keeps the original motion ends about that far
from its t = 0 frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import load_generator  # noqa: E402
from core.motion import Motion  # noqa: E402
from projection.lpips_weights import load_lpips  # noqa: E402
from projection.photo import load_photo, to_tensor  # noqa: E402
from projection.projector import project  # noqa: E402
from projection.tuning import TuneOptions, tune  # noqa: E402

MOTION_SEEDS = (1, 2, 3)


@torch.no_grad()
def animation_figures(G0, G1, ws, target, lp, frames: int, motion_seeds=MOTION_SEEDS,
                      origin: tuple[int, float] | None = None) -> tuple[float, float, float]:
    """(max LPIPS(frame, photo) over frames and seeds, tuned / untuned mean consecutive-frame LPIPS,
    the tuned mean consecutive LPIPS). `origin`: the motions pass through the photo's frame (the studio's
    and core.generate's animations of a latent) instead of starting from their own poses."""
    ts = torch.arange(frames, dtype=torch.float64)[None]
    worst, cons1, cons0 = 0.0, [], []
    for m in motion_seeds:
        motion = Motion.from_seeds([m], origin=origin)
        v1 = G1.synthesis(ws, ts, motion)[0]  # [T, C, H, W]
        v0 = G0.synthesis(ws, ts, motion)[0]
        worst = max(worst, float(lp(v1, target.expand(frames, -1, -1, -1)).max()))
        cons1.append(float(lp(v1[1:], v1[:-1]).mean()))
        cons0.append(float(lp(v0[1:], v0[:-1]).mean()))
    return worst, float(np.mean(cons1) / np.mean(cons0)), float(np.mean(cons1))


@torch.no_grad()
def untuned_drift(G0, projected, lp, frames: int, motion_seeds=MOTION_SEEDS) -> float:
    """max LPIPS(G0(t), G0(t0)) over the studio's animation of the projected latent (motions through t0)."""
    ts = torch.arange(frames, dtype=torch.float64)[None]
    worst = 0.0
    for m in motion_seeds:
        v = G0.synthesis(projected.ws, ts, Motion.from_seeds([m], origin=(projected.motion_seed, projected.t)))[0]
        worst = max(worst, float(lp(v, v[:1].expand_as(v)).max()))
    return worst


@torch.no_grad()
def locality(G0, G1, lp, n: int = 16, seed: int = 1000) -> float:
    """Mean LPIPS(original, tuned) over n random latents, each at a random motion seed and t in [0, 48)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G0.z_dim, generator=g)
    ws = G0.mapping(z, None)
    t = torch.rand(n, 1, generator=g, dtype=torch.float64) * 48
    seeds = list(range(seed, seed + n))
    return float(lp(G1.synthesis(ws, t, seeds)[:, 0], G0.synthesis(ws, t, seeds)[:, 0]).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="assets/default-model.safetensors")
    p.add_argument("--photos", default="assets/samples")
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--face", action="store_true", help="crop photos to the face first")
    p.add_argument("--proj-steps", type=int, default=100)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--verbose", action="store_true", help="log the tuning's loss terms")
    p.add_argument("--untuned", action="store_true", help="projection only: the untuned model's own drift")
    for f in fields(TuneOptions):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(message)s")
        logging.getLogger("PIL").setLevel(logging.INFO)
    opts = replace(TuneOptions(), **{f.name: getattr(args, f.name) for f in fields(TuneOptions)
                                     if getattr(args, f.name) is not None})
    G = load_generator(args.checkpoint)
    lp_model = load_lpips("vgg")

    def lp(a, b):
        return lp_model(a, b).flatten()

    files = sorted(f for f in Path(args.photos).iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
    files = files[: args.num_images]
    print(f"{args.checkpoint} ({G.img_resolution}px); photos {args.photos}; {platform.machine()}, "
          f"{torch.get_num_threads()} threads of {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}")
    print(f"projection W+ {args.proj_steps} steps; {opts}")
    rows = []
    for f in files:
        target_u8 = load_photo(str(f), G.img_resolution, face=args.face, channels=G.img_channels)
        target = to_tensor(target_u8)
        t0 = time.perf_counter()
        r = project(G, target_u8, steps=args.proj_steps, mode="w+", lpips_model=lp_model)
        if args.untuned:
            drift = untuned_drift(G, r, lp, args.frames)
            print(f"  {f.name:28s} projected LPIPS {r.lpips:.4f} | untuned drift {drift:.4f}", flush=True)
            continue
        tr = tune(G, r.ws, target_u8, motion_seed=r.motion_seed, options=opts, lpips_model=lp_model)
        seconds = time.perf_counter() - t0
        worst, cons_ratio, cons = animation_figures(G, tr.G, r.ws, target, lp, args.frames,
                                                    origin=(r.motion_seed, r.t))
        free_worst, free_ratio, _ = animation_figures(G, tr.G, r.ws, target, lp, args.frames)
        loc = locality(G, tr.G, lp)
        rows.append((r.lpips, r.psnr, tr.lpips, tr.psnr, seconds, worst / tr.lpips, cons_ratio, loc,
                     free_worst / tr.lpips, free_ratio))
        print(f"  {f.name:28s} projected LPIPS {r.lpips:.4f} PSNR {r.psnr:5.2f} | tuned LPIPS {tr.lpips:.4f} "
              f"PSNR {tr.psnr:5.2f} | {seconds:5.1f} s ({r.seconds:.1f} + {tr.seconds:.1f}) | animation from "
              f"the photo: max frame/t0 LPIPS {worst / tr.lpips:.2f}, motion {cons_ratio:.2f}x untuned "
              f"({cons:.4f}); free motion: {free_worst / tr.lpips:.2f}, {free_ratio:.2f}x | locality {loc:.4f}",
              flush=True)
    if not rows:
        return
    a = np.asarray(rows)
    print(f"mean of {len(rows)}: projected LPIPS {a[:, 0].mean():.4f} PSNR {a[:, 1].mean():.2f} | tuned LPIPS "
          f"{a[:, 2].mean():.4f} PSNR {a[:, 3].mean():.2f} | {a[:, 4].mean():.1f} s/photo | max frame/t0 "
          f"{a[:, 5].max():.2f} | motion ratio {a[:, 6].min():.2f}..{a[:, 6].max():.2f} | locality "
          f"{a[:, 7].mean():.4f} | free motion: max frame/t0 {a[:, 8].max():.2f}, motion ratio "
          f"{a[:, 9].min():.2f}..{a[:, 9].max():.2f}")


if __name__ == "__main__":
    main()
