"""Trainer speed: sec/kimg of StyleGAN-V (k = 3 frames per clip) vs an image-only configuration of the
same code (k = 1: D sees single frames, no time conditioning), at the `256` preset, batch 32 (issue 4).

    python bench/train_speed.py                 # on a GPU: 256 preset, batch 32
    python bench/train_speed.py --cpu-smoke     # tiny preset on the CPU, to check the script

kimg counts real frames shown to D (as the reference does), so the two figures are comparable; the paper
reports StyleGAN-V ~5% costlier than StyleGAN2-ADA per frame. Random frames are used: speed does not
depend on the content. Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import preset  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.loop import train  # noqa: E402


def make_dataset(root: Path, resolution: int, videos: int = 8, frames: int = 40) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for v in range(videos):
        d = root / f"video{v:03d}"
        d.mkdir(parents=True)
        for f in range(frames):
            img = rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)
            Image.fromarray(img).save(d / f"{f:06d}.jpg", quality=90)
    return root


def sec_per_kimg(data: Path, model, batch: int, num_frames: int, ticks: int, kimg_per_tick: float,
                 device: str, run: Path) -> float:
    model = model.replace(discriminator={"num_frames": num_frames})
    cfg = TrainConfig(data=str(data), model=model, batch=batch, workers=4 if device != "cpu" else 0,
                      kimg_per_tick=kimg_per_tick, total_kimg=kimg_per_tick * ticks, snapshot_ticks=10**6,
                      sample_ticks=10**6, device=device, tensorboard=False, augment="bgc")
    run.mkdir(parents=True)
    train(cfg, str(run))
    lines = [json.loads(x) for x in open(run / "stats.jsonl") if '"tick"' in x]
    steady = [x["sec_per_kimg"] for x in lines[1:]] or [lines[-1]["sec_per_kimg"]]  # tick 1 includes warm-up
    return float(np.median(steady))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="256")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ticks", type=int, default=4)
    p.add_argument("--kimg-per-tick", type=float, default=1.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cpu-smoke", action="store_true")
    args = p.parse_args()
    if args.cpu_smoke:
        args.preset, args.batch, args.ticks, args.kimg_per_tick, args.device = "tiny", 4, 2, 0.03, "cpu"
    model = preset(args.preset)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"{name}, torch {torch.__version__}, preset {args.preset}, batch {args.batch}, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data", model.img_resolution)
        video = sec_per_kimg(data, model, args.batch, 3, args.ticks, args.kimg_per_tick, args.device,
                             Path(tmp) / "k3")
        image = sec_per_kimg(data, model, args.batch, 1, args.ticks, args.kimg_per_tick, args.device,
                             Path(tmp) / "k1")
    print(f"StyleGAN-V (k=3): {video:.2f} sec/kimg; image-only (k=1): {image:.2f} sec/kimg; "
          f"overhead {100 * (video / image - 1):+.1f}% (paper: ~5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
