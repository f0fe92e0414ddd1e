"""Train the bundled default model (issue 9) on a lent GPU in bounded calls, and export it.

One call (run from the repository root on the device, `$OUT` being the folder that comes back):

    python bench/train_bundled.py --data data/weizmann64.zip --run runs/bundled --minutes 7 --out "$OUT" \
        [--i3d data/i3d-fp16.safetensors --fvd-videos 256]

- trains the `small` preset (64x64) for at most --minutes, resuming from `--run` when it holds a snapshot
  (the device keeps ignored folders between calls while it stays warm), and snapshots at the end;
- exports G_ema as an fp16 safetensors checkpoint (`$OUT/default-model.safetensors`, a few MB, the file
  to commit as assets/default-model.safetensors), with the kimg, GPU minutes and data in its metadata;
- copies the slim run record (config.json, stats.jsonl, the latest sample video) to `$OUT/run/`;
- with --i3d (the converted Kinetics-400 I3D weights, carried along) computes FVD_16 against the real
  clips and writes it to `$OUT/fvd.json`.

Everything the device needs travels with the call: the prepared data zip (`python -m training.prepare
/work/shared/data/weizmann-actions data/weizmann64.zip --resolution 64 --ext jpg --exclude
0_00000067,1_00000065,3_00000069,4_00000071`, 12 MB; the excluded clips are the held-out sample photos in
assets/samples) and the I3D weights in fp16.
Runs with torch + numpy only (imageio optional, for the sample video). `--cpu-smoke` checks it here.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import load_generator, save_checkpoint  # noqa: E402
from core.config import preset  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.loop import train  # noqa: E402


def make_config(args) -> TrainConfig:
    model = preset(args.preset)
    return TrainConfig(data=args.data, model=model, batch=args.batch, workers=args.workers,
                       kimg_per_tick=args.kimg_per_tick, snapshot_ticks=args.snapshot_ticks,
                       sample_ticks=args.sample_ticks, total_kimg=args.total_kimg, device=args.device,
                       sample_format="gif")  # GIF: the device image has no ffmpeg


def latest(pattern: str) -> str | None:
    files = sorted(glob.glob(pattern))
    return files[-1] if files else None


def export(run: Path, out: Path, gpu_minutes: float, data: str) -> dict:
    net = latest(str(run / "snapshots" / "network-*.safetensors"))
    if net is None:
        raise SystemExit(f"no snapshot in {run}")
    G_ema = load_generator(net)
    stats = [json.loads(line) for line in open(run / "stats.jsonl")] if (run / "stats.jsonl").exists() else []
    kimg = stats[-1]["kimg"] if stats else None
    prev = json.loads((run / "gpu_minutes.json").read_text())["minutes"] if (run / "gpu_minutes.json").exists() else 0
    total_minutes = prev + gpu_minutes
    (run / "gpu_minutes.json").write_text(json.dumps({"minutes": total_minutes}))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    meta = {"fps": 25, "kimg": kimg, "train_minutes": round(total_minutes, 2), "device": device,
            "data": f"{Path(data).name} (Weizmann human actions, 72 clips, 64x64)", "preset": G_ema.cfg.name,
            "snapshot": Path(net).name, "date": time.strftime("%Y-%m-%d")}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "default-model.safetensors", {"G_ema": G_ema}, G_ema.cfg, metadata=meta, fp16=True)
    rec = out / "run"
    rec.mkdir(exist_ok=True)
    for name in ("config.json", "stats.jsonl", "gpu_minutes.json"):
        if (run / name).exists():
            shutil.copy(run / name, rec / name)
    sample = latest(str(run / "samples" / "samples-*"))
    if sample:
        shutil.copy(sample, rec / Path(sample).name)
    return meta


def evaluate_fvd(model_path: Path, data: str, i3d: str, num_videos: int, out: Path) -> dict:
    from training.dataset import VideoDataset
    from training.metrics.evaluate import compute_metrics

    device = "cuda" if torch.cuda.is_available() else "cpu"
    G = load_generator(model_path, device=device)
    res = compute_metrics(G, VideoDataset(data), ["fvd16"], num_videos=num_videos, device=device,
                          i3d_weights=i3d, offline=True, use_cache=False)
    (out / "fvd.json").write_text(json.dumps(res, indent=1))
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--run", default="runs/bundled")
    p.add_argument("--out", default=os.environ.get("OUT", "out"))
    p.add_argument("--minutes", type=float, default=7.0)
    p.add_argument("--preset", default="small")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--kimg-per-tick", type=float, default=4)
    p.add_argument("--snapshot-ticks", type=int, default=25)
    p.add_argument("--sample-ticks", type=int, default=25)
    p.add_argument("--total-kimg", type=float, default=100000)
    p.add_argument("--device", default="auto")
    p.add_argument("--i3d", default=None, help="I3D weights for FVD_16 (skipped without)")
    p.add_argument("--fvd-videos", type=int, default=256)
    p.add_argument("--cpu-smoke", action="store_true", help="tiny preset, a few seconds, on the CPU")
    args = p.parse_args()
    if args.cpu_smoke:
        args.preset, args.batch, args.workers, args.device = "tiny", 4, 0, "cpu"
        args.kimg_per_tick, args.snapshot_ticks, args.sample_ticks = 0.05, 2, 2
    run = Path(args.run)
    resume = "latest" if latest(str(run / "snapshots" / "network-*.safetensors")) else None
    run.mkdir(parents=True, exist_ok=True)
    if resume is None:
        cfg = make_config(args)
        (run / "config.json").write_text(cfg.to_json())
    else:
        cfg = TrainConfig.from_json((run / "config.json").read_text())
    deadline = time.time() + args.minutes * 60
    start = time.time()
    print(f"{'resuming' if resume else 'starting'} {run} for {args.minutes} min on {cfg.device}", flush=True)
    info = train(cfg, str(run), should_stop=lambda: time.time() > deadline, resume=resume)
    minutes = (time.time() - start) / 60
    meta = export(run, Path(args.out), minutes, args.data)
    print(f"trained {minutes:.1f} min to {info.get('kimg')} kimg; exported {meta}", flush=True)
    if args.i3d:
        res = evaluate_fvd(Path(args.out) / "default-model.safetensors", args.data, args.i3d, args.fvd_videos,
                           Path(args.out))
        print(f"FVD_16 ({args.fvd_videos} videos): {res.get('fvd16')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
