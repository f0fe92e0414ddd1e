"""python -m editing latent.npz --prompt "a smiling face" --checkpoint model.safetensors"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m editing",
                                description="StyleCLIP text edit of a projected latent.")
    p.add_argument("latent", help="latent .npz from `python -m projection`")
    p.add_argument("--prompt", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--method", choices=["optimize", "global"], default="optimize")
    p.add_argument("--out", default=None, help="edited latent .npz (default: <latent>.edit.npz)")
    p.add_argument("--steps", type=int, default=40, help="latent optimization steps")
    p.add_argument("--l2", type=float, default=0.001, help="latent optimization L2 weight")
    p.add_argument("--neutral", default="a photo", help="global directions: neutral description")
    p.add_argument("--alpha", type=float, default=4.0, help="global directions: strength")
    p.add_argument("--beta", type=float, default=0.1, help="global directions: disentanglement threshold")
    p.add_argument("--directions-images", type=int, default=16,
                   help="global directions: images per channel when precomputing (once per model)")
    p.add_argument("--clip-weights", default=None, help="CLIP ViT-B/32 weights file (or $SGV_CLIP_WEIGHTS)")
    p.add_argument("--offline", action="store_true", help="never download CLIP: --clip-weights, "
                   "$SGV_CLIP_WEIGHTS or the cache only")
    p.add_argument("--video", default=None, help="also render motion variations to this .mp4/.gif")
    p.add_argument("--motion-seeds", default="0,1,2", help="motion seeds for --video")
    p.add_argument("--seconds", type=float, default=2.0, help="length of --video")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from PIL import Image
    from tqdm import tqdm

    from core.checkpoint import CheckpointError, load_generator
    from core.latent import Latent, LatentFileError, latent_generator, load_latent, save_latent
    from editing.animate import AnimationError, Timeline, motion_variations
    from editing.clip_weights import ClipWeightsError, load_clip
    from editing.styleclip import EditError, compute_global_directions, global_edit, latent_edit

    out = Path(args.out) if args.out else Path(args.latent).with_suffix(".edit.npz")
    try:
        latent = load_latent(args.latent)
        G = latent_generator(latent, load_generator(args.checkpoint, device=args.device))  # tuned weights, if any
        clip = load_clip(weights=args.clip_weights, device=args.device, allow_download=not args.offline)
        if args.method == "optimize":
            result = latent_edit(G, latent.ws, args.prompt, clip, steps=args.steps, l2_lambda=args.l2,
                                 motion_seed=latent.motion_seed, t=latent.t)
        else:
            bar = tqdm(desc="global directions (once per model)", unit="ch")

            def on_progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            directions = compute_global_directions(G, clip, num_images=args.directions_images,
                                                   callback=on_progress)
            bar.close()
            result = global_edit(G, latent.ws, args.prompt, clip, directions, neutral=args.neutral,
                                 alpha=args.alpha, beta=args.beta, motion_seed=latent.motion_seed, t=latent.t)
        edited = Latent(ws=result.ws, motion_seed=latent.motion_seed, t=latent.t,
                        checkpoint=latent.checkpoint, mode=latent.mode,
                        style_offsets={**latent.style_offsets, **result.style_offsets},
                        tuned_weights=latent.tuned_weights, base_hash=latent.base_hash)
        save_latent(out, edited)
        Image.fromarray(result.image.squeeze()).save(out.with_suffix(".png"))
        if args.video:
            seeds = [int(s) for s in args.motion_seeds.split(",") if s.strip()]
            timeline = Timeline(t_offset=latent.t, duration=args.seconds, fps=args.fps)
            motion_variations(G, edited.ws, seeds, args.video, timeline=timeline,
                              offsets=edited.style_offsets or None)
    except (CheckpointError, LatentFileError, ClipWeightsError, EditError, AnimationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: CLIP similarity to the prompt {result.similarity_before:.3f} -> "
          f"{result.similarity_after:.3f} ({result.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
