"""Convert a checkpoint released with the paper into a StyleGAN-V Studio safetensors checkpoint.

    python -m core.convert network-snapshot.pkl out.safetensors [--fp16] [--g-ema-only]

The pickle is read by the restricted importer (core.official): none of its embedded code runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from core.checkpoint import CheckpointError, save_checkpoint
from core.official import import_official


def convert(src: str, dst: str, fp16: bool = False, g_ema_only: bool = False) -> dict:
    """Import `src` and write `dst` atomically; returns a summary (networks, config name, tensor count)."""
    from core.discriminator import Discriminator
    from core.generator import Generator

    ckpt = import_official(src, modules=("G_ema",) if g_ema_only else None)
    modules = {}
    for name in ckpt.modules:
        net = Discriminator(ckpt.cfg) if name == "D" else Generator(ckpt.cfg)
        net.load_state_dict(ckpt.module_state(name))  # names and shapes were checked by import_official
        modules[name] = net
    metadata = dict(ckpt.metadata, converted_fp16=fp16)
    save_checkpoint(dst, modules, ckpt.cfg, metadata=metadata, fp16=fp16)
    return {"networks": sorted(modules), "tensors": len(ckpt.tensors), "resolution": ckpt.cfg.img_resolution,
            "delta_z": ckpt.cfg.motion.delta_z, "c_dim": ckpt.cfg.mapping.c_dim}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.convert", description=__doc__.splitlines()[0])
    ap.add_argument("src", help="network-snapshot-*.pkl released with the paper (or a StyleGAN2-ADA image pickle)")
    ap.add_argument("dst", help="output .safetensors")
    ap.add_argument("--fp16", action="store_true", help="store floating-point tensors in float16 (half the size)")
    ap.add_argument("--g-ema-only", action="store_true", help="keep only G_ema (what rendering needs)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = convert(args.src, args.dst, fp16=args.fp16, g_ema_only=args.g_ema_only)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}: {', '.join(summary['networks'])} ({summary['tensors']} tensors), "
          f"{summary['resolution']}x{summary['resolution']}, delta_z {summary['delta_z']}, c_dim {summary['c_dim']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
