"""CUDA ops: parity, op timings and end-to-end speed, in one run on one GPU.

    python bench/ops_gpu.py                 # on a GPU: everything (~5-8 min on an H100 incl. torch.compile)
    python bench/ops_gpu.py --skip-compile  # without the torch.compile baselines (~2-3 min)
    python bench/ops_gpu.py --cpu-smoke     # checks this script on CPU with the tiny preset (no figures)

Sections (printed as they finish, so a run cut short still reports what it measured):
1. build of the extension;
2. parity of every kernel against the reference on fresh random inputs: forward, gradient and
   second-order gradient, fp32 and fp16, as relative errors ||kernel - ref|| / ||ref||, next to the
   reference's own error against a float64 reference as the yardstick;
3. op-level timings (kernel vs reference vs torch.compile of the reference);
4. the card's matmul rate and the generator's FLOPs per frame (counted by dtype), hence the frames/s
   bound the card allows;
5. generator frames/s at batch 32, as 32 videos x 1 frame and as 1 video x 32 frames, for every way
   of running it (reference ops; kernels with the shared / grouped / per-video modconv, NHWC fp16
   blocks, CUDA-graph replay; torch.compile of the reference), each as a share of the bound, and the
   CUDA kernels of the fastest; then one training iteration (G loss, D loss, R1; k = 3 frames) with
   the kernels vs the reference vs torch.compile of the reference.
Needs only torch, numpy and this repository's core package. Never prints a figure it did not measure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core.synthesis as synthesis_mod  # noqa: E402
from core.motion import Motion  # noqa: E402
from core.ops import _dispatch, modconv  # noqa: E402
from core.ops import fused as fused_mod  # noqa: E402
from core.ops.bias_act import ACTIVATIONS, bias_act  # noqa: E402
from core.ops.fused import upfirdn2d_bias_act  # noqa: E402
from core.ops.upfirdn2d import setup_filter, upfirdn2d  # noqa: E402

FAILS: list[str] = []


def say(*args) -> None:
    print(*args, flush=True)


# ---------------------------------------------------------------------------------------------
# Choosing the implementation for a whole model


@contextlib.contextmanager
def ops_mode(mode: str):
    """"ref": the PyTorch reference everywhere (modconv's reference formulation, no fusions into
    bias_act, i.e. the reference implementation's structure); "cuda": the kernels on CUDA tensors
    (raising if they do not build), modconv's fast path and the fusions into bias_act."""
    orig = _dispatch.resolve, modconv.FAST_PATH, synthesis_mod.FUSE_INTO_BIAS_ACT
    if mode == "ref":
        _dispatch.resolve = lambda name, impl, x: "ref"
        modconv.FAST_PATH = synthesis_mod.FUSE_INTO_BIAS_ACT = False
    elif mode == "cuda":
        _dispatch.resolve = lambda name, impl, x: orig[0](name, "cuda" if x.is_cuda else "ref", x)
        modconv.FAST_PATH = synthesis_mod.FUSE_INTO_BIAS_ACT = True
    else:
        raise ValueError(mode)
    try:
        yield
    finally:
        _dispatch.resolve, modconv.FAST_PATH, synthesis_mod.FUSE_INTO_BIAS_ACT = orig


@contextlib.contextmanager
def filter_kernel(tiled: bool = False, epilogue: bool = True):
    """The previous (tiled) kernel for the 4x4 filter instead of the direct one, and/or bias_act as a
    pass of its own instead of the filter's epilogue: to time what each change gained."""
    old = os.environ.get("SGV_UPFIRDN2D_TILED"), fused_mod.EPILOGUE
    os.environ["SGV_UPFIRDN2D_TILED"] = "1" if tiled else "0"
    fused_mod.EPILOGUE = epilogue
    try:
        yield
    finally:
        if old[0] is None:
            os.environ.pop("SGV_UPFIRDN2D_TILED", None)
        else:
            os.environ["SGV_UPFIRDN2D_TILED"] = old[0]
        fused_mod.EPILOGUE = old[1]


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device, warmup: int = 2, iters: int = 10) -> float:
    """Median wall time of fn() in ms (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    den = b.norm().item()
    return (a - b).norm().item() / den if den > 0 else (a - b).norm().item()


# ---------------------------------------------------------------------------------------------
# 2. Parity


def _derivs(fn, inputs, seed: int):
    """fn(*inputs) -> y; returns y, dL/dinputs for L = <y, r>, and d<dL/dx0, v>/dinputs (2nd order)."""
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = fn(*inputs)
    gen = torch.Generator(device=y.device).manual_seed(seed)
    r = torch.randn(y.shape, device=y.device, generator=gen).to(y.dtype)
    grads = torch.autograd.grad((y.float() * r.float()).sum(), inputs, create_graph=True)
    v = torch.randn(grads[0].shape, device=y.device, generator=gen).to(grads[0].dtype)
    second = [torch.zeros_like(t) for t in inputs]
    if grads[0].requires_grad:
        got = torch.autograd.grad((grads[0].float() * v.float()).sum(), inputs, allow_unused=True)
        second = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, got)]
    return [y.detach(), *[g.detach() for g in grads], *second]


def _parity_row(label: str, names, kernel_fn, ref_fn, inputs, dtype, seed: int) -> None:
    cast = [t.to(dtype) for t in inputs]
    k = _derivs(kernel_fn, cast, seed)
    r = _derivs(ref_fn, cast, seed)
    r64 = _derivs(ref_fn, [t.double() for t in inputs], seed)
    limit = 1e-5 if dtype == torch.float32 else 2e-2
    cells = []
    for name, a, b, c in zip(names, k, r, r64):
        err, yard = rel(a, b), rel(b, c)
        ok = err <= max(limit, 3 * yard)
        if not ok:
            FAILS.append(f"{label} {dtype} {name}: {err:.2e}")
        cells.append(f"{name} {err:.1e}/{yard:.1e}{'' if ok else ' FAIL'}")
    say(f"  {label:<34} {str(dtype).replace('torch.', ''):<8} " + "  ".join(cells))


def _scales_parity(device, shape, gen) -> None:
    """bias_act's inference-only scale / out_scale (fused demodulation and input modulation), forward."""
    n, c = shape[:2]
    x = torch.randn(shape, device=device, generator=gen) * 2
    b = torch.randn(c, device=device, generator=gen)
    sc = torch.rand(n, c, device=device, generator=gen) + 0.5
    osc = torch.randn(n, c, device=device, generator=gen)
    for dtype in (torch.float32, torch.float16):
        for layout in (torch.contiguous_format, torch.channels_last):
            xs = x.to(dtype).contiguous(memory_format=layout)
            with torch.no_grad():
                got = bias_act(xs, b.to(dtype), act="lrelu", clamp=1.5, scale=sc.to(dtype), out_scale=osc.to(dtype),
                               impl="cuda")
                want = bias_act(xs, b.to(dtype), act="lrelu", clamp=1.5, scale=sc.to(dtype), out_scale=osc.to(dtype),
                                impl="ref")
                want64 = bias_act(x.double(), b.double(), act="lrelu", clamp=1.5, scale=sc.double(),
                                  out_scale=osc.double(), impl="ref")
            err, yard = rel(got, want), rel(want, want64)
            ok = err <= max(1e-5 if dtype == torch.float32 else 2e-2, 3 * yard)
            label = f"bias_act scales {'NHWC' if layout == torch.channels_last else 'NCHW'}"
            if not ok:
                FAILS.append(f"{label} {dtype}: {err:.2e}")
            say(f"  {label:<34} {str(dtype)[6:]:<8} y {err:.1e}/{yard:.1e}{'' if ok else ' FAIL'}")


def _filter_epilogue_parity(device, small: bool, gen) -> None:
    """The 4x4 filter (direct and tiled kernels) and filter + bias_act in one pass, NCHW and NHWC, forward."""
    n, c, h, w = (2, 4, 9, 7) if small else (8, 64, 64, 64)
    f, pad = setup_filter([1, 3, 3, 1]).to(device), (2, 1, 2, 1)
    x = torch.randn(n, c, h, w, device=device, generator=gen)
    b = torch.randn(c, device=device, generator=gen)
    sc, osc = (torch.rand(n, c, device=device, generator=gen) + 0.5 for _ in range(2))
    args = dict(b=b, act="lrelu", act_gain=math.sqrt(2), clamp=1.5, scale=sc, out_scale=osc)
    want64 = upfirdn2d_bias_act(x.double(), f, pad, gain=4.0, impl="ref",
                                **{k: v.double() if torch.is_tensor(v) else v for k, v in args.items()})
    for dtype, layout, tiled in itertools.product((torch.float32, torch.float16),
                                                  (torch.contiguous_format, torch.channels_last), (False, True)):
        xs = x.to(dtype).contiguous(memory_format=layout)
        cast = {k: v.to(dtype) if torch.is_tensor(v) else v for k, v in args.items()}
        with torch.no_grad(), filter_kernel(tiled=tiled):
            errs = (rel(upfirdn2d(xs, f, padding=pad, gain=4.0, impl="cuda"),
                        upfirdn2d(xs, f, padding=pad, gain=4.0, impl="ref")),
                    rel(upfirdn2d_bias_act(xs, f, pad, gain=4.0, impl="cuda", **cast),
                        upfirdn2d_bias_act(xs, f, pad, gain=4.0, impl="ref", **cast)))
            yard = rel(upfirdn2d_bias_act(xs, f, pad, gain=4.0, impl="ref", **cast), want64)
        limit = max(1e-5 if dtype == torch.float32 else 2e-2, 3 * yard)
        label = f"filter 4x4 {'tiled' if tiled else 'direct'} {'NHWC' if layout == torch.channels_last else 'NCHW'}"
        ok = all(e <= limit for e in errs)
        if not ok:
            FAILS.append(f"{label} {dtype}: {errs}")
        say(f"  {label:<34} {str(dtype)[6:]:<8} y {errs[0]:.1e}  +bias_act y {errs[1]:.1e}/{yard:.1e}"
            f"{'' if ok else ' FAIL'}")


def parity(device, small: bool) -> None:
    say("\n== 2. parity: rel. error kernel vs reference (same dtype) / reference vs float64 reference ==")
    say("   (y = forward, dx/db = gradient, d2x/d2b = second-order gradient)")
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (2, 8, 8, 8) if small else (8, 64, 32, 32)
    for dtype in (torch.float32, torch.float16):
        for act in sorted(ACTIVATIONS):
            x = torch.randn(shape, device=device, generator=gen) * 2
            b = torch.randn(shape[1], device=device, generator=gen)
            for clamp in (None, 1.5):
                def kern(x_, b_, act=act, clamp=clamp):
                    return bias_act(x_, b_, act=act, clamp=clamp, impl="cuda")

                def ref(x_, b_, act=act, clamp=clamp):
                    return bias_act(x_, b_, act=act, clamp=clamp, impl="ref")

                _parity_row(f"bias_act {act} clamp={clamp}", ("y", "dx", "db", "d2x", "d2b"),
                            kern, ref, [x, b], dtype, seed=1)
    _scales_parity(device, shape, gen)
    f4 = setup_filter([1, 3, 3, 1]).to(device)
    f8 = setup_filter([1, 2, 4, 6, 6, 4, 2, 1]).to(device)
    frand = (torch.rand(3, 5, device=device, generator=gen) + 0.1)
    cases = [("up2 4x4", f4, 2, 1, (2, 1, 2, 1), False), ("down2 4x4", f4, 1, 2, (1, 1, 1, 1), False),
             ("filter 4x4", f4, 1, 1, (2, 1, 2, 1), False), ("pad only", None, 1, 1, (1, 0, 1, 0), False),
             ("up(3,2) down(1,2) 3x5", frand, (3, 2), (1, 2), (0, -1, 3, 2), True),
             ("up2 separable 8", f8, 2, 1, (4, 3, 4, 3), False)]
    xs = (2, 4, 9, 7) if small else (8, 64, 64, 64)
    for dtype in (torch.float32, torch.float16):
        for label, f, up, down, pad, flip in cases:
            x = torch.randn(xs, device=device, generator=gen)

            def kern(x_, f=f, up=up, down=down, pad=pad, flip=flip):
                return upfirdn2d(x_, f, up, down, pad, flip, 1.5, impl="cuda")

            def ref(x_, f=f, up=up, down=down, pad=pad, flip=flip):
                return upfirdn2d(x_, f, up, down, pad, flip, 1.5, impl="ref")

            _parity_row(f"upfirdn2d {label}", ("y", "dx", "d2x"), kern, ref, [x], dtype, seed=2)
    _filter_epilogue_parity(device, small, gen)
    # modconv: fast formulation vs reference (both through the selected op implementations)
    for fused in (True, False):
        n, ci, co, res = (2, 8, 8, 8) if small else (8, 128, 128, 32)
        x = torch.randn(n, ci, res, res, device=device, generator=gen)
        w = torch.randn(co, ci, 3, 3, device=device, generator=gen)
        s = torch.randn(n, ci, device=device, generator=gen)

        def fast(x_, w_, s_, fused=fused):
            with ops_mode("cuda"):
                return modconv.modulated_conv2d(x_, w_.float(), s_.float(), up=2, padding=1,
                                                resample_filter=f4, flip_weight=False, fused_modconv=fused)

        def refm(x_, w_, s_, fused=fused):
            with ops_mode("ref"):
                return modconv.modulated_conv2d(x_, w_.float(), s_.float(), up=2, padding=1,
                                                resample_filter=f4, flip_weight=False, fused_modconv=fused)

        for dtype in (torch.float32, torch.float16):
            _parity_row(f"modconv up2 fused={fused}", ("y", "dx", "dw", "ds", "d2x", "d2w", "d2s"),
                        fast, refm, [x, w, s], dtype, seed=3)


# ---------------------------------------------------------------------------------------------
# 3. Op timings


def _maybe_compile(fn, enabled: bool):
    if not enabled:
        return None
    try:
        return torch.compile(fn, dynamic=False)
    except Exception as exc:  # pragma: no cover - depends on the platform
        say(f"  torch.compile unavailable: {exc}")
        return None


def _time_variants(label: str, device, variants: dict, backward: bool, iters: int) -> None:
    cells = []
    base = None
    for name, fn in variants.items():
        if fn is None:
            continue
        try:
            ms = time_ms(fn, device, iters=iters)
        except Exception as exc:
            cells.append(f"{name} failed ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        base = ms if name == "ref" else base
        speed = f" ({base / ms:.2f}x)" if base and name != "ref" else ""
        cells.append(f"{name} {ms:.3f} ms{speed}")
    say(f"  {label:<46} {'fwd+bwd' if backward else 'fwd':<8} " + "  ".join(cells))


def op_timings(device, small: bool, use_compile: bool) -> None:
    say("\n== 3. op timings (median; speed-up vs ref in brackets) ==")
    iters = 3 if small else 20
    dt = torch.float16 if device.type == "cuda" else torch.float32
    f4 = setup_filter([1, 3, 3, 1]).to(device)
    shapes = [(2, 8, 16, 16)] if small else [(32, 512, 32, 32), (32, 128, 128, 128), (32, 64, 256, 256)]
    for shape in shapes:
        x0 = torch.randn(shape, device=device, dtype=dt)
        b = torch.randn(shape[1], device=device, dtype=dt)
        for backward in (False, True):
            x = x0.clone().requires_grad_(backward)
            fns = {}
            for impl in ("ref", "cuda"):
                def run(impl=impl, x=x, b=b, backward=backward):
                    y = bias_act(x, b, act="lrelu", clamp=256.0, impl=impl)
                    if backward:
                        y.backward(y)
                    return y
                fns[impl] = run
            comp = _maybe_compile(lambda x_, b=b: bias_act(x_, b, act="lrelu", clamp=256.0, impl="ref"),
                                  use_compile)
            if comp is not None:
                def run_c(x=x, backward=backward, comp=comp):
                    y = comp(x)
                    if backward:
                        y.backward(y)
                fns["compile"] = run_c
            _time_variants(f"bias_act lrelu clamp {tuple(shape)} {str(dt)[6:]}", device, fns, backward, iters)
    for shape in ([(2, 8, 16, 16)] if small else [(32, 512, 32, 32), (32, 128, 128, 128)]):
        for label, up, down in (("upsample2d (up2, 4x4)", 2, 1), ("downsample2d (down2, 4x4)", 1, 2),
                                ("filter 4x4 (after transposed conv)", 1, 1)):
            pad = {2: (2, 1, 2, 1), 1: (2, 1, 2, 1)}[up] if down == 1 else (1, 1, 1, 1)
            x0 = torch.randn(shape, device=device, dtype=dt)
            for backward in (False, True):
                x = x0.clone().requires_grad_(backward)
                fns = {}
                for impl in ("ref", "cuda", "tiled"):
                    if impl == "tiled" and (up, down) != (1, 1):
                        continue

                    def run(impl=impl, x=x, backward=backward, up=up, down=down, pad=pad):
                        with filter_kernel(tiled=impl == "tiled"):
                            y = upfirdn2d(x, f4, up, down, pad, gain=up * up, impl="ref" if impl == "ref" else "cuda")
                        if backward:
                            y.backward(y)
                    fns[impl] = run
                comp = _maybe_compile(lambda x_, up=up, down=down, pad=pad:
                                      upfirdn2d(x_, f4, up, down, pad, gain=up * up, impl="ref"), use_compile)
                if comp is not None:
                    def run_c(x=x, backward=backward, comp=comp):
                        y = comp(x)
                        if backward:
                            y.backward(y)
                    fns["compile"] = run_c
                _time_variants(f"{label} {tuple(shape)}", device, fns, backward, iters)
    # the filter after the up-convs of the two top blocks with bias_act (demodulation, next modulation):
    # two passes (separate) or one (fused: bias_act as the filter kernel's epilogue)
    for shape, layout in itertools.product([(2, 8, 16, 16)] if small else [(32, 128, 129, 129), (32, 64, 257, 257)],
                                           (torch.contiguous_format, torch.channels_last)):
        n, c = shape[:2]
        x = torch.randn(shape, device=device, dtype=dt).contiguous(memory_format=layout)
        act = dict(b=torch.randn(c, device=device, dtype=dt), act="lrelu", act_gain=math.sqrt(2), clamp=256.0,
                   scale=torch.rand(n, c, device=device, dtype=dt), out_scale=torch.rand(n, c, device=device, dtype=dt))
        fns = {}
        for name, impl, epilogue, tiled in (("ref", "ref", False, False), ("separate", "cuda", False, False),
                                            ("fused", "cuda", True, False), ("tiled+separate", "cuda", False, True)):
            def run(impl=impl, epilogue=epilogue, tiled=tiled, x=x, act=act):
                with torch.no_grad(), filter_kernel(tiled=tiled, epilogue=epilogue):
                    return upfirdn2d_bias_act(x, f4, (1, 1, 1, 1), gain=4.0, impl=impl, **act)
            fns[name] = run
        nhwc = " NHWC" if layout == torch.channels_last else ""
        _time_variants(f"filter 4x4 + bias_act {tuple(shape)}{nhwc}", device, fns, False, iters)
    # modulated conv layers of the 256 preset (fp32 at low resolution, fp16 at the top four)
    layers = [(2, 8, 8, 8, 1, torch.float32)] if small else [
        (32, 512, 512, 16, 1, torch.float32), (32, 512, 512, 32, 2, dt), (32, 256, 128, 128, 2, dt),
        (32, 64, 64, 256, 1, dt)]
    for n, ci, co, res, up, ldt in layers:
        x0 = torch.randn(n, ci, res // up, res // up, device=device, dtype=ldt)
        w = torch.randn(co, ci, 3, 3, device=device, requires_grad=True)
        s = torch.randn(n, ci, device=device, requires_grad=True)
        for fused in (True, False):
            for backward in (False, True):
                x = x0.clone().requires_grad_(backward)
                fns = {}
                for mode in ("ref", "cuda"):
                    def run(mode=mode, x=x, w=w, s=s, backward=backward, fused=fused, up=up):
                        with ops_mode(mode):
                            y = modconv.modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f4,
                                                         flip_weight=up == 1, fused_modconv=fused)
                            if backward:
                                y.backward(y)
                    fns[mode] = run
                _time_variants(f"modconv {n}x{ci}->{co} @{res} up{up} fused={fused} {str(ldt)[6:]}",
                               device, fns, backward, max(2, iters // 4))


# ---------------------------------------------------------------------------------------------
# 4. Matmul rate and generator FLOPs


def matmul_rates(device, small: bool) -> dict[str, float]:
    say("\n== 4a. matmul rate (dense, random data) ==")
    size = 256 if small else 8192
    rates = {}
    settings = [("fp16", torch.float16, False), ("bf16", torch.bfloat16, False), ("tf32", torch.float32, True),
                ("fp32", torch.float32, False)]
    for name, dtype, tf32 in settings:
        if device.type == "cpu" and dtype != torch.float32:
            continue
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            ms = time_ms(lambda a=a, b=b: a @ b, device, iters=3 if small else 10)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
        rates[name] = 2 * size**3 / (ms * 1e-3)
        say(f"  {name:<5} {size}^3: {rates[name] / 1e12:9.3f} TFLOP/s")
    return rates


class _FlopsByDtype(TorchDispatchMode):
    """Counts matmul/conv FLOPs (torch.utils.flop_counter's formulas) per input dtype."""

    def __init__(self):
        super().__init__()
        from torch.utils.flop_counter import flop_registry

        self.registry = flop_registry
        self.flops: dict[torch.dtype, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in self.registry:
            first = next(a for a in args if isinstance(a, torch.Tensor))
            self.flops[first.dtype] += int(self.registry[packet](*args, **kwargs, out_val=out))
        return out


def generator_flops(G, device, rates: dict[str, float]) -> float | None:
    """FLOPs per frame of G's forward (mapping + motion + synthesis); prints the frames/s bound."""
    say("\n== 4b. generator FLOPs per frame and the bound the matmul rate allows ==")
    n = 2
    z = torch.randn(n, G.z_dim, device=device)
    t = torch.zeros(n, 1, device=device)
    with torch.no_grad(), ops_mode("ref"), _FlopsByDtype() as counter:
        G(z, t, list(range(n)))
    per_frame = {dt: fl / n for dt, fl in counter.flops.items()}
    total = sum(per_frame.values())
    for dt, fl in per_frame.items():
        say(f"  {str(dt)[6:]:<8} {fl / 1e9:10.4f} GFLOP/frame")
    say(f"  total    {total / 1e9:10.4f} GFLOP/frame")
    if not rates:
        return None
    # fp32 convolutions run as TF32 under PyTorch's default (torch.backends.cudnn.allow_tf32 = True).
    fp32_rate = rates.get("tf32", rates.get("fp32"))
    half_rate = rates.get("fp16", fp32_rate)
    secs = sum(fl / (half_rate if dt in (torch.float16, torch.bfloat16) else fp32_rate)
               for dt, fl in per_frame.items())
    bound = 1 / secs
    say(f"  bound: {bound:,.0f} frames/s at the measured rates (fp16 layers at the fp16 rate, fp32 at TF32)")
    return bound


# ---------------------------------------------------------------------------------------------
# 5. End to end


def _generator_variants(G, device, use_compile: bool) -> dict:
    """label -> (ops mode, synthesis callable taking (ws, t, seeds)); every way this project can run G."""
    syn = G.synthesis
    variants = {"ref ops": ("ref", syn)}
    if device.type != "cuda":
        variants["shared conv"] = ("cuda", syn)
        variants["per video"] = ("cuda", lambda ws, t, m: syn(ws, t, m, per_video=True))
        return variants
    from core.cuda_graph import GraphedSynthesis

    def unfused(ws, t, m):  # modulation as separate multiplies, toRGB as a conv: not fused into bias_act
        synthesis_mod.FUSE_INTO_BIAS_ACT = False
        try:
            return syn(ws, t, m)
        finally:
            synthesis_mod.FUSE_INTO_BIAS_ACT = True

    variants.update({
        "kernels, shared conv (default)": ("cuda", syn),
        "kernels, shared, modulation not fused into bias_act": ("cuda", unfused),
        "kernels, grouped": ("cuda", lambda ws, t, m: syn(ws, t, m, fused_modconv=True)),
        "kernels, per video": ("cuda", lambda ws, t, m: syn(ws, t, m, per_video=True)),
        "kernels, shared, NHWC": ("cuda", lambda ws, t, m: syn(ws, t, m, channels_last=True)),
        "kernels, per video, NHWC": ("cuda", lambda ws, t, m: syn(ws, t, m, per_video=True, channels_last=True)),
        "kernels, shared, graph": ("cuda", GraphedSynthesis(syn)),
        "kernels, per video, graph": ("cuda", GraphedSynthesis(syn, per_video=True)),
        "kernels, per video, NHWC, graph": ("cuda", GraphedSynthesis(syn, per_video=True, channels_last=True)),
        "kernels, shared, NHWC, graph": ("cuda", GraphedSynthesis(syn, channels_last=True)),
    })
    for layout, kw in (("shared", {}), ("per video", {"per_video": True})):  # what the filter changes gained
        for what, ctx in (("previous filter kernel", dict(tiled=True, epilogue=False)),
                          ("no filter epilogue", dict(epilogue=False))):
            graphed = GraphedSynthesis(syn, **kw)

            def run(ws, t, m, graphed=graphed, ctx=ctx):  # captured inside the context, so it replays that way
                with filter_kernel(**ctx):
                    return graphed(ws, t, m)
            variants[f"kernels, {layout}, graph, {what}"] = ("cuda", run)
    # cuDNN's autotuner (off at inference so far; the trainer turns it on): the shapes are fixed per call
    for layout, kw in (("shared", {}), ("per video", {"per_video": True}), ("shared, NHWC", {"channels_last": True}),
                       ("per video, NHWC", {"per_video": True, "channels_last": True})):
        graphed = GraphedSynthesis(syn, **kw)

        def run_b(ws, t, m, graphed=graphed):
            old = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True
            try:
                return graphed(ws, t, m)
            finally:
                torch.backends.cudnn.benchmark = old
        variants[f"kernels, {layout}, graph, cudnn.benchmark"] = ("cuda", run_b)
    if use_compile:
        for mode in ("default", "max-autotune-no-cudagraphs") if use_compile == "autotune" else ("default",):
            frames = torch.compile(syn.frames, mode=mode, dynamic=False)

            def run(ws, t, m, frames=frames):
                motion_v = syn.motion_encoder(t if t.ndim == 2 else t.view(1, -1), Motion.coerce(m, len(ws)))
                return frames(ws, motion_v)
            variants[f"compile(ref ops, {mode})"] = ("ref", run)
    return variants


def generator_fps(G, device, shapes, use_compile: bool, small: bool, bound: float | None,
                  budget_s: float = 240.0, only: list[str] | None = None) -> None:
    """Frames/s of every variant for each (N videos x T frames) shape, each with its share of the bound;
    the eager variants of every shape first, the torch.compile ones (slow to build) last."""
    iters = 2 if small else 10
    start = time.perf_counter()
    variants = _generator_variants(G, device, use_compile)
    if only:
        variants = {k: v for k, v in variants.items() if k == "ref ops" or any(o in k for o in only)}
    rounds = [[k for k in variants if not k.startswith("compile")], [k for k in variants if k.startswith("compile")]]
    best, ref_fps = (0.0, None, None), {}
    for labels in rounds:
        for n, num_t in shapes if labels else []:
            say(f"\n== 5a. generator frames/s, N={n} videos x T={num_t} frames (eval, no grad; mapping included) ==")
            z = torch.randn(n, G.z_dim, device=device)
            t = (torch.rand(n, 1, device=device) * 100 + torch.arange(num_t, device=device)).double()
            for label in labels:
                if time.perf_counter() - start > budget_s:
                    say(f"  {label}: skipped (time budget of {budget_s:.0f} s spent)")
                    continue
                fps, first = _time_variant(G, device, label, variants[label], z, t, iters)
                if fps is None:
                    continue
                if label == "ref ops":
                    ref_fps[(n, num_t)] = fps
                ref = ref_fps.get((n, num_t))
                extra = f"  {fps / ref:5.2f}x ref" if ref and label != "ref ops" else ""
                if bound:
                    extra += f"  {100 * fps / bound:5.1f}% of the matmul bound"
                say(f"  {label:<36} {fps:9.1f} frames/s{extra}  (first call {first:.1f} s)")
                if fps > best[0]:
                    best = (fps, label, (n, num_t))
    if best[1] and device.type == "cuda":
        _profile_kernels(G, device, variants[best[1]], best[2], best[1])


def _time_variant(G, device, label: str, variant, z, t, iters: int):
    """(frames/s, seconds of the first call) of one variant, or (None, None) if it fails."""
    mode, synth = variant
    seeds = list(range(len(z)))
    try:
        with torch.no_grad(), ops_mode(mode):
            t0 = time.perf_counter()
            synth(G.mapping(z, None), t, seeds)  # first call: builds, captures or compiles
            sync(device)
            first = time.perf_counter() - t0
            ms = time_ms(lambda: synth(G.mapping(z, None), t, seeds), device, iters=iters)
    except Exception as exc:  # one failing variant must not cost the others
        say(f"  {label}: failed: {type(exc).__name__}: {str(exc)[:300]}")
        return None, None
    return t.numel() / (ms * 1e-3), first


def _profile_kernels(G, device, variant, shape, label: str) -> None:
    """Where the best variant's GPU time goes: the kernels by total CUDA time."""
    mode, synth = variant
    n, num_t = shape
    z = torch.randn(n, G.z_dim, device=device)
    t = torch.arange(num_t, device=device, dtype=torch.float64).expand(n, -1)
    say(f"\n== 5a'. CUDA kernels of '{label}' at N={n} x T={num_t} (one call) ==")
    try:
        from torch.profiler import ProfilerActivity, profile

        with torch.no_grad(), ops_mode(mode):
            synth(G.mapping(z, None), t, list(range(n)))
            sync(device)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                synth(G.mapping(z, None), t, list(range(n)))
                sync(device)
        say(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))
    except Exception as exc:
        say(f"  profiler failed: {type(exc).__name__}: {str(exc)[:200]}")


def _set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def train_iteration(G, D, device, batch: int, use_compile: bool, small: bool) -> None:
    k = D.num_frames
    say(f"\n== 5b. one training iteration: batch {batch}, k={k} frames; G loss, D loss, R1 (+ Adam steps) ==")
    gen = torch.Generator(device=device).manual_seed(0)
    res, ch = G.img_resolution, G.img_channels
    real = torch.rand(batch, k, ch, res, res, device=device, generator=gen) * 2 - 1
    gaps = torch.randint(1, 8, (batch, k - 1), device=device, generator=gen)
    t = torch.cat([torch.zeros(batch, 1, device=device, dtype=torch.long), gaps.cumsum(1)], dim=1).float()
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.99))
    gamma = 1.0

    def phases(G_, D_, D_r1):
        z = torch.randn(batch, G.z_dim, device=device)
        seeds = torch.randint(0, 2**31 - 1, (batch,)).tolist()
        # G main: non-saturating loss through D
        _set_requires_grad(G, True)
        _set_requires_grad(D, False)
        F.softplus(-D_(G_(z, t, seeds), t)).mean().backward()
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        # D main: fakes (no G graph) and reals
        _set_requires_grad(G, False)
        _set_requires_grad(D, True)
        with torch.no_grad():
            fake = G_(z, t, seeds)
        (F.softplus(D_(fake, t)).mean() + F.softplus(-D_(real, t)).mean()).backward()
        yield "main"
        # R1 on reals: gamma/2 * |grad_x D(x)|^2 (double backward)
        x = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(D_r1(x, t).sum(), [x], create_graph=True)
        (grad.square().sum([1, 2, 3, 4]).mean() * (gamma / 2)).backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        yield "r1"

    def timed(G_, D_, D_r1, iters):
        main_ms, r1_ms = [], []
        for i in range(iters + 1):
            sync(device)
            t0 = time.perf_counter()
            it = phases(G_, D_, D_r1)
            next(it)
            sync(device)
            t1 = time.perf_counter()
            next(it, None)
            sync(device)
            t2 = time.perf_counter()
            if i > 0:  # the first one warms up
                main_ms.append((t1 - t0) * 1e3)
                r1_ms.append((t2 - t1) * 1e3)
        if not main_ms:
            return math.nan, math.nan
        return float(np.median(main_ms)), float(np.median(r1_ms))

    G.train()
    D.train()
    iters = 1 if small else 5
    rows = {}
    for label, mode in (("ref", "ref"), ("cuda", "cuda")):
        if mode == "cuda" and device.type != "cuda":
            continue
        with ops_mode(mode):
            rows[label] = timed(G, D, D, iters)
    if use_compile:
        with ops_mode("ref"):
            try:
                t0 = time.perf_counter()
                Gc, Dc = torch.compile(G), torch.compile(D)
                try:  # compiled graphs do not support double backward; R1 may need the eager D
                    timed(Gc, Dc, Dc, 0)
                    d_r1, note = Dc, ""
                except Exception:
                    timed(Gc, Dc, D, 0)
                    d_r1, note = D, " (R1 with the eager D: compiled double backward unsupported)"
                say(f"  (torch.compile warm-up took {time.perf_counter() - t0:.0f} s){note}")
                rows["compile(ref)"] = timed(Gc, Dc, d_r1, iters)
            except Exception as exc:
                say(f"  compile(ref) failed: {type(exc).__name__}: {str(exc)[:200]}")
    base = rows.get("ref")
    say(f"  {'':<16} {'G+D main':>10} {'R1':>10} {'total':>10} {'R1 every 16':>12}")
    for label, (main_ms, r1_ms) in rows.items():
        lazy = main_ms + r1_ms / 16
        speed = ""
        if base and label != "ref":
            speed = f"  {(base[0] + base[1]) / (main_ms + r1_ms):.2f}x total, " \
                    f"{(base[0] + base[1] / 16) / lazy:.2f}x lazy-R1 vs ref"
        say(f"  {label:<16} {main_ms:8.1f}ms {r1_ms:8.1f}ms {main_ms + r1_ms:8.1f}ms {lazy:10.1f}ms{speed}")


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="run every section on CPU, tiny preset")
    parser.add_argument("--preset", default=None, help="model preset (default 256; tiny with --cpu-smoke)")
    parser.add_argument("--gen-batch", type=int, default=32)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile baselines")
    parser.add_argument("--autotune", action="store_true", help="also torch.compile's max-autotune for G (slow)")
    parser.add_argument("--only", choices=["parity", "ops", "e2e"], help="run one section group")
    parser.add_argument("--variants", default="", help="e2e: only the generator variants whose label contains "
                        "one of these comma-separated strings (and 'ref ops')")
    parser.add_argument("--no-train", action="store_true", help="e2e: leave out the training iteration")
    args = parser.parse_args(argv)

    small = args.cpu_smoke
    if small:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("no CUDA device: run on a GPU, or pass --cpu-smoke to check the script", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    preset_name = args.preset or ("tiny" if small else "256")
    use_compile = not args.skip_compile and not small
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    say(f"# bench/ops_gpu.py  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}  device: {name}")
    say(f"# torch {torch.__version__} (CUDA {torch.version.cuda}), preset {preset_name}, "
        f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    if small:
        say("# CPU smoke run: the 'cuda' rows run the reference (no kernels on CPU); figures are not results")

    say("\n== 1. build ==")
    if device.type == "cuda":
        from core.ops.cuda import load_extension

        t0 = time.perf_counter()
        ext = load_extension()
        say(f"  {ext.name} ready in {time.perf_counter() - t0:.1f} s")
    else:
        say("  skipped on CPU")

    if args.only in (None, "parity"):
        with ops_mode("ref") if small else contextlib.nullcontext():  # on CPU the reference stands in
            parity(device, small)
    if args.only in (None, "ops"):
        with ops_mode("ref") if small else contextlib.nullcontext():
            op_timings(device, small, use_compile)
    if args.only in (None, "e2e"):
        from core.config import preset
        from core.discriminator import Discriminator
        from core.generator import Generator

        torch.manual_seed(0)
        cfg = preset(preset_name)
        G = Generator(cfg).to(device).eval()
        D = Discriminator(cfg).to(device)
        rates = matmul_rates(device, small)
        bound = generator_flops(G, device, rates)
        shapes = [(2, 1), (1, 2)] if small else [(args.gen_batch, 1), (1, args.gen_batch)]
        generator_fps(G, device, shapes, "autotune" if use_compile and args.autotune else use_compile, small, bound,
                      only=[v for v in args.variants.split(",") if v])
        if not args.no_train:
            train_iteration(G, D, device, 2 if small else args.train_batch, use_compile, small)

    say(f"\nPARITY: {'all within tolerance' if not FAILS else f'{len(FAILS)} FAILED: ' + '; '.join(FAILS[:10])}")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
