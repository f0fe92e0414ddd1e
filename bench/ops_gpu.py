"""CUDA ops vs the PyTorch reference through the public functions the product calls; every timing is a ratio
to the reference run in the same process. Variants only by `core.ops.options.use(...)` and public arguments:
"reference" = `use(impl="ref", fast_modconv=False, fuse_bias_act=False)`, "kernels" = `use(impl="cuda")`.

    python bench/ops_gpu.py                        # on a GPU: every section (~3-5 min on an H100 / H200)
    python bench/ops_gpu.py --sections parity,gen  # some of: build, parity, ops, gen, train
    python bench/ops_gpu.py --cpu-smoke            # the script on the CPU, tiny preset ("kernels" = reference)

parity: kernel vs reference error (forward, gradient, 2nd order; fp32, fp16) next to the reference's own error
vs float64. ops: bench/RESULTS.md's op shapes. gen: G frames/s per variant at 32x1 and 1x32, and as a share of
the matmul bound. train: one training.loss.StyleGANVLoss iteration (G loss, D loss, R1, Adam).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import itertools
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import preset  # noqa: E402
from core.cuda_graph import GraphedSynthesis  # noqa: E402
from core.discriminator import Discriminator  # noqa: E402
from core.generator import Generator  # noqa: E402
from core.motion import Motion  # noqa: E402
from core.ops import bias_act, downsample2d, modulated_conv2d, setup_filter, upfirdn2d, upsample2d  # noqa: E402
from core.ops.cuda.functions import KERNEL_ACTS  # noqa: E402
from core.ops.fused import upfirdn2d_bias_act  # noqa: E402
from core.ops.options import use  # noqa: E402
from training.loss import StyleGANVLoss  # noqa: E402

REF = dict(impl="ref", fast_modconv=False, fuse_bias_act=False)
KERN = dict(impl="cuda")  # impl="auto" (the reference on CPU tensors) with --cpu-smoke
NHWC, NCHW = torch.channels_last, torch.contiguous_format
FAILS: list[str] = []
say = functools.partial(print, flush=True)


def clock(dev) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter()


def time_ms(fn, dev, iters: int = 10) -> float:
    """Mean ms of fn() over `iters` back-to-back calls (synchronized before and after), after two warm-ups."""
    for _ in range(2):
        fn()
    t0 = clock(dev)
    for _ in range(iters):
        fn()
    return (clock(dev) - t0) * 1e3 / iters


def derivs(fn, inputs, seed: int) -> list[torch.Tensor]:
    """y = fn(*inputs); dL/dinputs for L = <y, r>; d<dL/dx0, v>/dinputs (second order)."""
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = fn(*inputs)
    r = torch.randn(y.shape, device=y.device, generator=(gen := torch.Generator(device=y.device).manual_seed(seed)))
    grads = torch.autograd.grad((y.float() * r).sum(), inputs, create_graph=True)
    second = [torch.zeros_like(t) for t in inputs]
    if grads[0].requires_grad:
        v = torch.randn(grads[0].shape, device=y.device, generator=gen)
        got = torch.autograd.grad((grads[0].float() * v).sum(), inputs, allow_unused=True)
        second = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, got)]
    return [y.detach(), *[g.detach() for g in grads], *second]


def check(label: str, names, fn, inputs, seed: int = 1) -> None:
    """fn(*inputs) under the kernels' options vs the reference's, fp32 and fp16 (names == ("y",): no grad)."""
    def run(opts, ts):
        with use(**opts), torch.set_grad_enabled(len(names) > 1):
            return derivs(fn, ts, seed) if len(names) > 1 else [fn(*ts)]

    def rel(a, b):
        return (a.double() - b.double()).norm().item() / (b.double().norm().item() or 1.0)
    for dtype in (torch.float32, torch.float16):
        cast = [t.to(dtype) for t in inputs]
        k, r, r64 = run(KERN, cast), run(REF, cast), run(REF, [t.double() for t in inputs])
        cells = []
        for name, a, b, c in zip(names, k, r, r64):
            err, yard = rel(a, b), rel(b, c)
            ok = err <= max(1e-5 if dtype == torch.float32 else 2e-2, 3 * yard)
            FAILS.extend([] if ok else [f"{label} {dtype} {name}: {err:.2e}"])
            cells.append(f"{name} {err:.1e}/{yard:.1e}{'' if ok else ' FAIL'}")
        say(f"  {label:<34} {str(dtype)[6:]:<8} " + "  ".join(cells))


def parity(dev, small: bool) -> None:
    say("\n== parity: rel. error kernel vs reference (same dtype) / reference vs float64 (y, gradient, 2nd order) ==")
    gen = torch.Generator(device=dev).manual_seed(0)

    def randn(*shape, scale=1.0):
        return torch.randn(shape, device=dev, generator=gen) * scale
    shape, xs = ((2, 8, 8, 8), (2, 4, 9, 7)) if small else ((8, 64, 32, 32), (8, 64, 64, 64))
    for act, clamp in itertools.product(sorted(KERNEL_ACTS), (None, 1.5)):
        check(f"bias_act {act} clamp={clamp}", ("y", "dx", "db", "d2x", "d2b"), lambda x, b, act=act, clamp=clamp:
              bias_act(x, b, act=act, clamp=clamp), [randn(*shape, scale=2), randn(shape[1])])
    f4, f8 = setup_filter([1, 3, 3, 1]).to(dev), setup_filter([1, 2, 4, 6, 6, 4, 2, 1]).to(dev)
    f35, p4, p8 = torch.rand(3, 5, device=dev, generator=gen) + 0.1, (2, 1, 2, 1), (4, 3, 4, 3)
    for label, f, up, down, pad, flip, fmt in (
            ("up2 4x4", f4, 2, 1, p4, False, NCHW), ("down2 4x4", f4, 1, 2, (1, 1, 1, 1), False, NCHW),
            ("filter 4x4", f4, 1, 1, p4, False, NCHW), ("filter 4x4 NHWC", f4, 1, 1, p4, False, NHWC),
            ("pad only", None, 1, 1, (1, 0, 1, 0), False, NCHW), ("up2 separable 8", f8, 2, 1, p8, False, NCHW),
            ("up(3,2) down(1,2) 3x5", f35, (3, 2), (1, 2), (0, -1, 3, 2), True, NCHW)):
        check(f"upfirdn2d {label}", ("y", "dx", "d2x"), lambda x, f=f, up=up, down=down, pad=pad, flip=flip, fmt=fmt:
              upfirdn2d(x.contiguous(memory_format=fmt), f, up, down, pad, flip, 1.5), [randn(*xs)], seed=2)
    for fmt in (NCHW, NHWC):  # inference only: the scales, the filter's bias_act epilogue
        args = [randn(*xs, scale=2), randn(xs[1]), randn(*xs[:2]).abs() + 0.5, randn(*xs[:2])]
        tag = "NHWC" if fmt == NHWC else "NCHW"
        check(f"bias_act scales {tag}", ("y",), lambda x, b, s, o, fmt=fmt: bias_act(
            x.contiguous(memory_format=fmt), b, act="lrelu", clamp=1.5, scale=s, out_scale=o), args)
        check(f"filter 4x4 + bias_act {tag}", ("y",), lambda x, b, s, o, fmt=fmt: upfirdn2d_bias_act(
            x.contiguous(memory_format=fmt), f4, p4, gain=4.0, b=b, act="lrelu", act_gain=math.sqrt(2), clamp=1.5,
            scale=s, out_scale=o), args)
    n, ci, co, res = (2, 8, 8, 8) if small else (8, 128, 128, 32)
    for fused in (True, False):  # the fast formulation (and the kernels) vs the reference formulation
        check(f"modconv up2 fused={fused}", ("y", "dx", "dw", "ds", "d2x", "d2w", "d2s"), lambda x, w, s, fused=fused:
              modulated_conv2d(x, *(t.to(torch.float64 if x.dtype == torch.float64 else torch.float32) for t in (w, s)),
                               up=2, padding=1, resample_filter=f4, flip_weight=False, fused_modconv=fused),
              [randn(n, ci, res, res), randn(co, ci, 3, 3), randn(n, ci)], seed=3)  # weights, styles: fp32 in fp16


def race(label: str, fn, x, backward: bool, dev, iters: int, variants: dict | None = None) -> None:
    """fn(x) (and its backward) timed under each variant's options; ratios to the first (the reference)."""
    x = x.detach().requires_grad_(backward)

    def call():
        y = fn(x)
        return y.backward(y) if backward else None
    ms = {}
    for name, opts in (variants or {"ref": REF, "kernels": KERN}).items():
        with use(**opts):
            ms[name] = time_ms(call, dev, iters)
    say(f"  {label + (' fwd+bwd' if backward else ' fwd'):<58} " + "  ".join(f"{k} {v:.3f} ms ({ms['ref'] / v:.2f}x)"
                                                                              for k, v in ms.items()))


def ops(dev, small: bool) -> None:
    say("\n== ops: mean ms per call, speed-up vs the reference in brackets ==")
    dt, iters = (torch.float32, 3) if small else (torch.float16, 20)
    f4 = setup_filter([1, 3, 3, 1]).to(dev)

    def randn(*shape, fmt=NCHW):
        return torch.randn(shape, device=dev, dtype=dt).contiguous(memory_format=fmt)
    shapes = [(2, 8, 16, 16)] if small else [(32, 512, 32, 32), (32, 128, 128, 128), (32, 64, 256, 256)]
    for shape, bwd in itertools.product(shapes, (False, True)):
        race(f"bias_act lrelu clamp {shape}", lambda x, b=randn(shape[1]): bias_act(x, b, act="lrelu", clamp=256.0),
             randn(*shape), bwd, dev, iters)
    for shape, (label, op), bwd in itertools.product(shapes[:2], (
            ("upsample2d up2 4x4", lambda x: upsample2d(x, f4)), ("downsample2d 4x4", lambda x: downsample2d(x, f4)),
            ("filter 4x4", lambda x: upfirdn2d(x, f4, padding=(2, 1, 2, 1)))), (False, True)):
        race(f"{label} {shape}", op, randn(*shape), bwd, dev, iters)
    for shape, fmt in itertools.product([(2, 8, 17, 17)] if small else [(32, 128, 129, 129), (32, 64, 257, 257)],
                                        (NCHW, NHWC)):
        kw = dict(b=randn(shape[1]), act="lrelu", act_gain=math.sqrt(2), clamp=256.0, scale=randn(*shape[:2]).abs(),
                  out_scale=randn(*shape[:2]).abs())
        race(f"filter 4x4 + bias_act {shape} {'NHWC' if fmt == NHWC else 'NCHW'}",
             lambda x, kw=kw: upfirdn2d_bias_act(x, f4, (1, 1, 1, 1), gain=4.0, **kw), randn(*shape, fmt=fmt), False,
             dev, iters, {"ref": REF, "two passes": dict(KERN, fuse_bias_act=False), "fused": KERN})  # the top up-convs


def frames_bound(G, dev, small: bool) -> float:
    say("\n== gen: matmul rate and G's FLOPs per frame: the frames/s bound ==")
    size, rates, old = (256 if small else 8192), {}, torch.get_float32_matmul_precision()
    for name, dtype, precision in [("fp32", torch.float32, "highest")] if small else [
            ("fp16", torch.float16, "highest"), ("tf32", torch.float32, "high")]:
        a = torch.randn(size, size, device=dev, dtype=dtype)
        torch.set_float32_matmul_precision(precision)
        try:
            rates[name] = 2 * size**3 / (time_ms(lambda a=a: a @ a, dev, 3 if small else 10) * 1e-3)
        finally:
            torch.set_float32_matmul_precision(old)
        say(f"  {name:<5} {size}^3: {rates[name] / 1e12:9.3f} TFLOP/s")
    with torch.no_grad(), use(**REF), FlopCounterMode(display=False) as counter:
        G(torch.randn(2, G.z_dim, device=dev), torch.zeros(2, 1, device=dev), [0, 1])
    per_frame = {k: sum(v.values()) / 2 for k, v in counter.get_flop_counts().items()}
    half = sum(per_frame.get(f"Generator.synthesis.b{r}", 0) for r in G.synthesis.block_resolutions
               if dev.type == "cuda" and getattr(G.synthesis, f"b{r}").use_fp16)  # the blocks run in fp16
    bound = 1 / (half / rates.get("fp16", 1.0) + (per_frame["Global"] - half) / rates.get("tf32", rates.get("fp32")))
    say(f"  {per_frame['Global'] / 1e9:.4f} GFLOP/frame ({half / 1e9:.4f} in fp16 blocks); bound: {bound:,.0f} "
        "frames/s (fp16 blocks at the fp16 rate, the rest at TF32: fp32 convolutions run as TF32)")
    return bound


def generator(G, dev, small: bool, batch: int) -> None:
    bound, gpu = frames_bound(G, dev, small), dev.type == "cuda"
    variants = [("reference ops", REF, {}, False), ("kernels (default)", KERN, {}, False),
                ("kernels, grouped conv", KERN, {"fused_modconv": True}, False)]
    for graph, per_video, nhwc in itertools.product((False, True) if gpu else (False,), (False, True), (False, True)):
        label = f"kernels, {'per video' if per_video else 'shared'}, {'NHWC' if nhwc else 'NCHW'}{', graph' * graph}"
        variants.append((label, KERN, dict(per_video=per_video, channels_last=nhwc), graph))
    variants.append((f"kernels, shared, NHWC{', graph' * gpu}, no bias_act fusion", dict(KERN, fuse_bias_act=False),
                     dict(channels_last=True), gpu))
    for n, num_t in [(2, 1), (1, 2)] if small else [(batch, 1), (1, batch)]:
        say(f"\n== gen: G frames/s, N={n} videos x T={num_t} frames (eval, no grad, mapping included) ==")
        z, ref_fps = torch.randn(n, G.z_dim, device=dev), None
        t = (torch.rand(n, 1, device=dev) * 100 + torch.arange(num_t, device=dev)).double()
        for label, opts, kw, graph in variants:
            synth = GraphedSynthesis(G.synthesis, **kw) if graph else functools.partial(G.synthesis, **kw)

            try:
                with torch.no_grad(), use(**opts):  # time_ms's warm-up calls build, capture
                    fps = n * num_t / (time_ms(lambda s=synth, z=z, t=t, n=n: s(G.mapping(z, None), t, list(range(n))),
                                               dev, 2 if small else 10) * 1e-3)
            except Exception as exc:  # one failing variant must not cost the others
                say(f"  {label}: FAILED {type(exc).__name__}: {str(exc)[:300]}")
                continue
            ref_fps = ref_fps or fps
            say(f"  {label:<44} {fps:9.1f} frames/s {fps / ref_fps:6.2f}x ref {100 * fps / bound:6.1f}% of the bound")


def train_iteration(G, D, dev, batch: int, small: bool) -> None:
    k, res = D.num_frames, G.img_resolution
    say(f"\n== train: one iteration, batch {batch} clips x k={k} frames: G loss, D loss, R1, Adam steps ==")
    real = torch.rand(batch, k, G.img_channels, res, res, device=dev) * 2 - 1
    t, c = torch.randint(1, 8, (batch, k), device=dev).cumsum(1).float() - 1, torch.zeros(batch, 0, device=dev)
    loss = StyleGANVLoss(G, D, augment_pipe=None, r1_gamma=1.0)
    opt = {m: torch.optim.Adam(m.train().requires_grad_(False).parameters(), 1e-4, (0.0, 0.99)) for m in (G, D)}

    def phases(*names: str) -> float:  # ms of these phases, each as training/loop.py's Trainer._phase
        t0 = clock(dev)
        for name in names:
            module = G if name == "Gmain" else D
            module.requires_grad_(True)
            opt[module].zero_grad(set_to_none=True)
            loss.accumulate(name, real, t, c, torch.randn(batch, G.z_dim, device=dev), t, c, Motion.random(batch))
            module.requires_grad_(False)
            opt[module].step()
        return (clock(dev) - t0) * 1e3
    base = None
    for label, opts in (("reference", REF), ("kernels", KERN)):
        with use(**opts):  # the first iteration warms up
            m, r = (statistics.median(col) for col in zip(*[(phases("Gmain", "Dmain"), phases("Dreg"))
                                                             for _ in range(2 if small else 6)][1:]))
        bm, br = base = base or (m, r)
        say(f"  {label:<10} G+D main {m:8.1f} ms, R1 {r:8.1f} ms, total {m + r:8.1f} ms: {(bm + br) / (m + r):5.2f}x"
            f" the reference; with R1 every 16 steps {m + r / 16:8.1f} ms: {(bm + br / 16) / (m + r / 16):5.2f}x")


def build(dev) -> None:
    t0 = time.perf_counter()
    if dev.type == "cuda":
        with use(impl="cuda"):  # the first kernel call builds (or loads the cached) extension
            bias_act(torch.zeros(1, 1, device=dev))
    say("\n== build ==\n  " + (f"extension ready in {clock(dev) - t0:.1f} s" if dev.type == "cuda" else "skipped"))


def main(argv: list[str] | None = None) -> int:
    sections = ("build", "parity", "ops", "gen", "train")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="every section on the CPU, tiny preset, few iterations")
    ap.add_argument("--sections", default=",".join(sections), help=f"comma-separated, of {','.join(sections)}")
    args = ap.parse_args(argv)
    chosen = [s for s in args.sections.split(",") if s]
    if set(chosen) - set(sections):
        ap.error(f"unknown sections {sorted(set(chosen) - set(sections))}; choose from {sections}")
    small = args.cpu_smoke
    if not small and not torch.cuda.is_available():
        ap.error("no CUDA device: run on a GPU, or pass --cpu-smoke to check the script")
    dev, KERN["impl"], name = (torch.device("cpu"), "auto", "tiny") if small else (torch.device("cuda"), "cuda", "256")
    if small:
        torch.set_num_threads(1)  # the tiny model on shared cores: more threads only oversubscribe them
    say(f"# bench/ops_gpu.py {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} on "
        f"{'CPU' if small else torch.cuda.get_device_name(dev)}; torch {torch.__version__} "
        f"(CUDA {torch.version.cuda}), preset {name}, cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}"
        + ("\n# CPU smoke run: the 'kernel' rows run the reference (no kernels on the CPU); no results" * small))
    torch.manual_seed(0)
    G, D = (Generator(preset(name)).to(dev).eval(), Discriminator(preset(name)).to(dev)) \
        if {"gen", "train"} & set(chosen) else (None, None)
    steps = {"build": lambda: build(dev), "parity": lambda: parity(dev, small), "ops": lambda: ops(dev, small),
             "gen": lambda: generator(G, dev, small, 32),
             "train": lambda: train_iteration(G, D, dev, 2 if small else 16, small)}
    errors = []
    for section in (s for s in sections if s in chosen):
        try:
            steps[section]()
        except Exception:  # report it, go on with the other sections
            say(f"\n== {section}: ERROR ==\n{traceback.format_exc()}")
            errors.append(section)
    if "parity" in chosen and "parity" not in errors:
        say(f"\nPARITY: {'all within tolerance' if not FAILS else f'{len(FAILS)} FAILED: ' + '; '.join(FAILS[:10])}")
    if errors:
        say(f"ERRORS in: {', '.join(errors)}")
    return 1 if FAILS or errors else 0


if __name__ == "__main__":
    sys.exit(main())
