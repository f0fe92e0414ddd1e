"""Parity of training/augment.py with the reference implementation's AugmentPipe ("bgc", ADA).

    python bench/augment_parity.py --reference-repo /path/to/universome/stylegan-v [--res 32 --frames 3]

Both pipes draw their random parameters in the same order from the same seed, so on the same clips
(the reference stacks a clip's frames along channels, [N, T * 3, H, W]; ours takes [N, T, 3, H, W]) the
outputs must agree to float32 rounding. Prints the max |ours - reference| per p and seed.
Needs a local clone of the reference (it is not part of this repository); runs on the CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.augment import AugmentPipe  # noqa: E402

BGC = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
           lumaflip=1, hue=1, saturation=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference-repo", required=True)
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--clips", type=int, default=8)
    args = ap.parse_args()
    sys.path.insert(0, args.reference_repo)
    from src.training.augment import AugmentPipe as RefPipe  # the reference's module, read from the clone

    n, t, res = args.clips, args.frames, args.res
    x = torch.rand([n, t, 3, res, res], generator=torch.Generator().manual_seed(0)) * 2 - 1
    worst = 0.0
    for p in (0.2, 0.6, 1.0):
        for seed in range(3):
            ref = RefPipe(**BGC)
            ref.p.fill_(p)
            torch.manual_seed(seed)
            y_ref = ref(x.reshape(n, t * 3, res, res)).reshape(n, t, 3, res, res)
            torch.manual_seed(seed)
            y = AugmentPipe("bgc", p=p)(x)
            err = float((y - y_ref).abs().max())
            changed = float((y_ref - x).abs().amax(dim=(1, 2, 3, 4)).gt(1e-3).float().mean())
            worst = max(worst, err)
            print(f"p={p:.1f} seed={seed}: max |ours - reference| = {err:.2e}  "
                  f"(clips the reference changed: {changed:.0%})")
    print(f"worst: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
