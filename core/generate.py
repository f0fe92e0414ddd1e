"""Render videos from a checkpoint.

    python -m core.generate --checkpoint model.safetensors --seeds 0,1,2 --out out.mp4
    python -m core.generate --checkpoint m.safetensors --seeds 0-3 --motion-seeds 10,11 --grid --out grid.mp4
    python -m core.generate --checkpoint m.safetensors --seeds 0 --t-offset 90000 --fps 50 --slowmo 2 --out far.gif
    python -m core.generate --checkpoint m.safetensors --latent latent.npz --motion-seeds 1,2,3 --out anim.mp4

A latent .npz (from projection or editing) brings its tuned weights (pivotal tuning; refused with a message
for another checkpoint), its StyleSpace offsets (global-direction edits) and, unless --motion-seeds is
given, its motion seed. Every motion seed then passes through the latent's own frame (its motion seed at
its t: the photo) at that instant; --free-motion lets each seed start from its own pose.

An inverted clip (python -m projection.video) renders with its own motion at any --fps / --t-offset /
--duration: past the clip's end the motion goes on with fresh tokens of its seed. --content-from puts
another latent's content (and tuned weights) into the clip's motion. --loop [SECONDS] makes the motion
periodic and seamless (default: the clip's length, or --duration).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch

from core.checkpoint import CheckpointError, load_generator, read_header
from core.directions import DirectionError, load_direction, parse_direction_arg
from core.directions import apply as apply_directions
from core.generator import z_from_seed
from core.keyframes import KeyframeError, load_keyframes, render_keyframes
from core.keyframes import check_compatible as check_keyframes
from core.latent import LatentFileError, check_compatible, latent_generator, load_latent
from core.motion import MotionError, default_loop
from core.render import RenderError, Timeline, render_video
from core.styles import StyleError, style_offsets

MAX_SEED = 2**32 - 1  # numpy's RandomState, which draws z from a content seed, takes no more
MAX_SEEDS = 4096


def parse_seeds(text: str) -> list[int]:
    """'0,3,5-7' -> [0, 3, 5, 6, 7]."""
    seeds: list[int] = []
    try:
        for part in filter(None, text.split(",")):
            a, _, b = part.partition("-")
            count = int(b) - int(a) + 1 if b else 1
            if len(seeds) + count > MAX_SEEDS:
                raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS} seeds, got more in {text!r}")
            seeds.extend(range(int(a), int(b) + 1) if b else [int(a)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}: use e.g. 0,3,5-7") from None
    if not seeds or min(seeds) < 0 or max(seeds) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}: seeds are whole numbers in 0 .. {MAX_SEED}")
    return seeds


def native_fps_of(path: str, default: float = 25.0) -> float:
    """The training data's frame rate stored in a checkpoint's metadata ("fps"), else `default`."""
    if str(path).endswith(".pkl"):
        return default
    try:
        meta = json.loads(read_header(path).get("metadata", "{}"))
    except (CheckpointError, ValueError):
        return default
    return float(meta.get("fps", default))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help=".safetensors checkpoint or a released .pkl")
    p.add_argument("--out", required=True, help="output .mp4, .gif, or .zip/.png (PNG frames)")
    p.add_argument("--seeds", type=parse_seeds, default=[0], help="content seeds, e.g. 0,1,5-8")
    p.add_argument("--motion-seeds", type=parse_seeds, default=None, help="motion seeds (default: = seeds)")
    p.add_argument("--latent", default=None, help=".npz with ws (projected / edited photo) instead of seeds")
    p.add_argument("--free-motion", action="store_true", help="with --latent: let each motion seed start from "
                   "its own pose instead of passing through the latent's frame (its motion seed at its t)")
    p.add_argument("--content-from", default=None, help="with a clip's --latent: another latent .npz whose "
                   "content (and tuned weights) takes the clip's motion")
    p.add_argument("--loop", type=float, nargs="?", const=0.0, default=None, metavar="SECONDS",
                   help="seamless loop of this many output seconds (no value: the clip's length or --duration)")
    p.add_argument("--direction", action="append", default=[], metavar="FILE[:STRENGTH]",
                   help="add an edit direction (.npz from the studio or editing.sefa) with a strength, e.g. "
                        "smile.npz:1.5; repeatable")
    p.add_argument("--keyframes", default=None, help="render a keyframes project (.npz from the studio) with its "
                   "own fps, duration and motion seed")
    p.add_argument("--grid", action="store_true", help="rows share motion, columns share content")
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--t-offset", type=float, default=0.0, help="model time of the first frame (frames)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds of output")
    p.add_argument("--fps", type=float, default=25.0, help="output frame rate")
    p.add_argument("--slowmo", type=float, default=1.0, help="slow-motion factor (2 = half speed)")
    p.add_argument("--native-fps", type=float, default=None, help="data frame rate (default: from checkpoint)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--chunk", type=int, default=8, help="frames computed at once")
    args = p.parse_args(argv)

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    try:
        G = load_generator(args.checkpoint, device=device)
        native = args.native_fps or native_fps_of(args.checkpoint)
        if args.keyframes:
            k = load_keyframes(args.keyframes)
            check_keyframes(k, G)
            out = render_keyframes(G, k, args.out, native)
            print(f"wrote {out} ({k.timeline(native).num_frames} frames, {len(k.seconds)} keyframes)")
            return 0
        timeline = Timeline(args.t_offset, args.duration, args.fps, args.slowmo, native)
        ws, offsets, motion_seeds, motion, clip_frames = None, {}, args.motion_seeds, None, 0.0
        if args.content_from and not args.latent:
            raise RenderError("--content-from needs --latent (the clip whose motion it takes)")
        if args.latent:  # a projected photo or inverted clip: tuned weights, StyleSpace edits, its motion
            latent = load_latent(args.latent)
            content = load_latent(args.content_from) if args.content_from else latent
            G = latent_generator(content, G)
            if content is not latent:
                check_compatible(latent, G)
            ws, offsets = content.ws.to(device), content.style_offsets
            motion = latent.motion(motion_seeds, free=args.free_motion)
            clip_frames = latent.clip_duration if not motion_seeds else 0.0
        loop = _loop(args.loop, clip_frames, timeline, G.synthesis.motion_encoder.cfg.delta_z)
        if args.direction:
            if ws is None:
                ws = G.mapping(z_from_seed(args.seeds, G.z_dim, device), None, truncation_psi=args.truncation)
            edits = [parse_direction_arg(a) for a in args.direction]
            ws = apply_directions(ws, [(load_direction(path), alpha) for path, alpha in edits])
        from tqdm import tqdm

        with tqdm(total=timeline.num_frames, unit="frame", desc="rendering") as bar, style_offsets(G, offsets):
            out = render_video(G, args.out, timeline, content_seeds=args.seeds, motion_seeds=motion_seeds,
                               ws=ws, grid=args.grid, truncation_psi=args.truncation, chunk=args.chunk,
                               callback=lambda done, total: bar.update(done - bar.n), motion=motion, loop=loop)
    except (CheckpointError, LatentFileError, RenderError, MotionError, StyleError, DirectionError, KeyframeError,
            OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({timeline.num_frames} frames, t = {timeline.times(0, 1)[0]:g} .. "
          f"{timeline.times(timeline.num_frames - 1)[0]:g})")
    return 0


def _loop(seconds: float | None, clip_frames: float, timeline: Timeline, delta_z: int) -> tuple[float, float] | None:
    """--loop -> (period, blend) in model frames: the blend is half the period, at most two token spacings."""
    if seconds is None:
        return None
    if seconds < 0 or not math.isfinite(seconds):
        raise RenderError(f"--loop must be a positive number of seconds, got {seconds}")
    if seconds > 0:
        period = round(seconds * timeline.fps) * timeline.step
    else:
        period = clip_frames or timeline.num_frames * timeline.step
    if period <= 0:
        raise RenderError(f"--loop {seconds} is shorter than one output frame")
    return default_loop(period, delta_z)


if __name__ == "__main__":
    sys.exit(main())
