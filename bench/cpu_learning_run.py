"""Evidence that the trainer learns, on the CPU: the Weizmann actions at 32x32 for a fixed wall time.

    python -m training.prepare /work/shared/data/weizmann-actions data/weizmann32.zip --resolution 32 --ext jpg
    python bench/cpu_learning_run.py --data data/weizmann32.zip --outdir runs/cpu --minutes 60 [--fvd-ticks 5]

A slim 32x32 variant of the `small` preset (channels 128 max) so that a 2-core CPU sees enough
kimg in an hour; everything else is the paper's recipe (k = 3, ADA bgc, lazy R1, EMA). Losses land in
the run's stats.jsonl and sample videos (t = 0.. and t = 10,000..) in samples/; with --fvd-ticks, FVD_16
(real I3D, --fvd-videos clips a side) every that many ticks, as "kind": "metrics" lines in stats.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import preset  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.loop import train  # noqa: E402


def model_config():
    return preset("small").replace(
        name="cpu32",
        synthesis={"img_resolution": 32, "channel_base": 2048, "channel_max": 128, "num_fp16_res": 0},
        discriminator={"channel_base": 2048, "channel_max": 128, "num_fp16_res": 0, "concat_res": 8},
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--outdir", default="runs/cpu")
    p.add_argument("--minutes", type=float, default=60)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--fvd-ticks", type=int, default=0, help="FVD_16 every this many ticks (0: none)")
    p.add_argument("--fvd-videos", type=int, default=36)
    args = p.parse_args()
    metrics = dict(metrics=("fvd16",), metrics_ticks=args.fvd_ticks, metrics_num_videos=args.fvd_videos) \
        if args.fvd_ticks else {}
    cfg = TrainConfig(data=args.data, model=model_config(), batch=args.batch, workers=1, kimg_per_tick=2,
                      snapshot_ticks=5, sample_ticks=5, total_kimg=1e6, device="cpu", sample_format="gif",
                      **metrics)
    run = Path(args.outdir) / time.strftime("cpu32-%Y%m%d-%H%M%S")
    run.mkdir(parents=True)
    (run / "config.json").write_text(cfg.to_json())
    deadline = time.time() + args.minutes * 60
    print(f"run folder: {run}", flush=True)
    info = train(cfg, str(run), should_stop=lambda: time.time() > deadline)
    print(f"stopped at {info['kimg']:.3f} kimg", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
