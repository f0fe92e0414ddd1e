"""Roofline of the generator: FLOPs and memory traffic per frame, hence what a card can reach at best.

    python bench/roofline.py [--preset 256] [--shape 32x1] [--layout shared] [--fp16-tflops 740] [--tbps 4.8]

Counts, for one call of G's synthesis on N videos x T frames (run on the CPU; shapes do not depend on
the device) with the given modconv layout (shared conv / grouped / per video), divided by N*T, every
operation's FLOPs (torch.utils.flop_counter's formulas) and the bytes it reads and writes, as the GPU
would run it: fp16 for tensors of the fp16 blocks (>= the fp16 resolution), fp32 elsewhere. Three
traffic figures:
- "reference ops": the reference implementation's structure (modconv's reference formulation, the
  modulation as separate multiplies), every PyTorch op reading its inputs and writing its output;
- "kernels": this project's CUDA path (the default `core.ops.options`): bias_act and upfirdn2d as our
  kernels (one read, one write: every call of these public ops, and of upsample2d / downsample2d /
  upfirdn2d_bias_act, counts as one op, seen with `sys.setprofile`), the modulation fused into bias_act's
  pass, bias_act fused into the upsampling filter's pass, toRGB as one batched matmul;
- "convolutions only": the floor for an implementation that fuses everything into the convolutions
  (and toRGB's batched matmul).
The defaults are the H200's rates measured by bench/ops_gpu.py (bench/RESULTS.md) and its nominal
4.8 TB/s; the ceiling is the roofline time max(FLOPs / rate, bytes / bandwidth) summed over ops.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import preset  # noqa: E402
from core.generator import Generator  # noqa: E402
from core.ops import bias_act, downsample2d, upfirdn2d, upsample2d  # noqa: E402
from core.ops.fused import upfirdn2d_bias_act  # noqa: E402
from core.ops.options import use  # noqa: E402

# The ops our kernels run in one pass each: a call of one of these counts as one read of x, one write of y.
KERNELS = {f.__code__: f.__name__ for f in (bias_act, upfirdn2d, upsample2d, downsample2d, upfirdn2d_bias_act)}
REFERENCE = dict(impl="ref", fast_modconv=False, fuse_bias_act=False)  # the reference implementation's structure

_FREE = {"view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "unsqueeze", "squeeze",
         "select", "slice", "narrow", "unbind", "split", "alias", "detach", "as_strided", "_to_copy_noop",
         "empty", "empty_like", "zeros", "lift_fresh", "clone_noop"}
_CONV = {"convolution", "conv2d", "conv_transpose2d", "_convolution", "mkldnn_convolution"}


class Traffic(TorchDispatchMode):
    """Per-op FLOPs and bytes, by op kind; with `kernels`, a call of a KERNELS function counts as one op."""

    def __init__(self, fp16_res: int, kernels: bool):
        super().__init__()
        self.fp16_res, self.kernels = fp16_res, kernels
        self.rows: list[tuple[str, float, float, bool]] = []  # (kind, flops, bytes, fp16)
        self._inputs: list[torch.Tensor] = []  # x of the KERNELS calls under way (outermost first)

    def nbytes(self, t: torch.Tensor) -> float:
        half = t.ndim == 4 and t.shape[-1] >= self.fp16_res
        return t.numel() * (2 if half else 4)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._overloadpacket.__name__
        if self._inputs or name in _FREE:
            return out
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        tensors += [a for v in args if isinstance(v, (list, tuple)) for a in v if isinstance(a, torch.Tensor)]
        outs = out if isinstance(out, (list, tuple)) else [out]
        moved = sum(self.nbytes(t) for t in tensors + [o for o in outs if isinstance(o, torch.Tensor)])
        flops = flop_registry[func._overloadpacket](*args, **kwargs, out_val=out) \
            if func._overloadpacket in flop_registry else 0
        half = any(t.ndim == 4 and t.shape[-1] >= self.fp16_res for t in tensors)
        self.rows.append(("conv" if name in _CONV else name, float(flops), float(moved), half))
        return out

    def _profile(self, frame, event, arg):
        """sys.setprofile hook: the calls of the KERNELS functions (nothing is patched)."""
        kind = KERNELS.get(frame.f_code)
        if kind is None or event not in ("call", "return"):
            return
        if event == "call":
            self._inputs.append(frame.f_locals["x"])
            return
        x = self._inputs.pop()
        if not self._inputs and isinstance(arg, torch.Tensor):  # the outermost one is the kernel
            self.rows.append((kind, 0.0, self.nbytes(x) + self.nbytes(arg), x.shape[-1] >= self.fp16_res))

    def __enter__(self):
        self._prev_profile = sys.getprofile()
        if self.kernels:
            sys.setprofile(self._profile)
        return super().__enter__()

    def __exit__(self, *exc):
        sys.setprofile(self._prev_profile)
        return super().__exit__(*exc)


LAYOUTS = {"shared": dict(fused_modconv=False), "grouped": dict(fused_modconv=True),
           "per_video": dict(per_video=True)}


def count(G: Generator, kernels: bool, fp16_res: int, n: int, num_t: int, layout: str) -> Traffic:
    """kernels=False: the reference implementation's structure (modconv's reference formulation, no
    fusions into bias_act) in PyTorch ops; True: this project's CUDA path (kernels, fast path, fusions)."""
    mode = Traffic(fp16_res, kernels)
    ws = G.mapping(torch.randn(n, G.z_dim), None)
    t = torch.arange(num_t, dtype=torch.float64).expand(n, -1)
    with torch.no_grad(), use(**({} if kernels else REFERENCE)), mode:
        G.synthesis(ws, t, list(range(n)), **LAYOUTS[layout])
    return mode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="256")
    ap.add_argument("--shape", default="32x1", help="N videos x T frames per call")
    ap.add_argument("--layout", choices=list(LAYOUTS), default="shared")
    ap.add_argument("--fp16-tflops", type=float, default=740.0)
    ap.add_argument("--tf32-tflops", type=float, default=394.0)
    ap.add_argument("--tbps", type=float, default=4.8, help="memory bandwidth, TB/s")
    args = ap.parse_args()
    cfg = preset(args.preset)
    s = cfg.synthesis
    fp16_res = max(2 ** (s.img_resolution.bit_length() - s.num_fp16_res), 8)
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    bw = args.tbps * 1e12

    def rate(half):
        return (args.fp16_tflops if half else args.tf32_tflops) * 1e12

    n, num_t = (int(v) for v in args.shape.split("x"))
    frames = n * num_t
    runs = {"reference ops": count(G, False, fp16_res, n, num_t, args.layout),
            "kernels": count(G, True, fp16_res, n, num_t, args.layout)}
    for mode in runs.values():  # per frame
        mode.rows = [(k, f / frames, b / frames, h) for k, f, b, h in mode.rows]
    conv_rows = [r for r in runs["kernels"].rows if r[0] in ("conv", "bmm")]  # toRGB is a bmm at inference
    flops = sum(r[1] for r in conv_rows)
    t_compute = sum(r[1] / rate(r[3]) for r in runs["kernels"].rows)
    print(f"preset {args.preset}, {n} videos x {num_t} frames, {args.layout} layout, "
          f"fp16 from {fp16_res}x{fp16_res}; rates: fp16 {args.fp16_tflops:g} TFLOP/s, "
          f"fp32 layers at {args.tf32_tflops:g} (TF32), memory {args.tbps:g} TB/s")
    print(f"FLOPs per frame (convolutions): {flops / 1e9:.2f} GFLOP -> compute bound {1 / t_compute:,.0f} frames/s; "
          f"40% of it: {0.4 / t_compute:,.0f} frames/s")
    table = dict(runs)
    table["convolutions only"] = type("Rows", (), {"rows": conv_rows})()
    for label, mode in table.items():
        moved = sum(r[2] for r in mode.rows)
        t_roof = sum(max(r[1] / rate(r[3]), r[2] / bw) for r in mode.rows)
        by_kind = defaultdict(float)
        for r in mode.rows:
            by_kind[r[0]] += r[2]
        top = ", ".join(f"{k} {v / moved:.0%}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])[:5])
        print(f"{label:<18}: {len(mode.rows):4d} ops, {moved / 2**20:8.1f} MiB/frame -> memory bound "
              f"{bw / moved:8,.0f} frames/s; roofline ceiling {1 / t_roof:8,.0f} frames/s "
              f"({100 * t_compute / t_roof:.0f}% of the compute bound). Traffic: {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
