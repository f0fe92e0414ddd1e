"""Kernel launches per generator call as a GPU runs it at inference, counted on the CPU.

A CUDA-graphed call still runs one kernel per op: at the `256` preset the few big ones (convolutions,
the filter and bias_act kernels) and ~100-150 small ones (the modulation's affine layers and weight
folds, casts, copies) of a few microseconds each. This counts them without a GPU: the call runs on
the CPU through the code path a GPU takes (every custom op resolved to its kernel, the kernels replaced
by counted stand-ins computing the PyTorch reference), every other non-view aten op counted as one
launch. Weight-derived tensors are cached by a first call, as the graphs' replays read them.

    python bench/launch_count.py [--preset 256] [--shapes 1x32,32x1] [--channels-last]

Prints launches per call by op, for the synthesis and the motion encoder's device work (what a graph
replays): "kernels", the defaults (toRGB inside the last bias_act of every block since the seventh
session, the per-sample weight fold and the motion tokens one kernel each since the sixth); "sixth", without
the toRGB epilogue (`fused.TORGB_EPILOGUE` False); "ops", the PyTorch ops of before the sixth session
(`modconv.FOLD_KERNEL`, `motion.MOTION_KERNELS` False too).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core.ops.cuda as cuda_pkg  # noqa: E402
from core import motion as motion_mod  # noqa: E402
from core.config import preset  # noqa: E402
from core.generator import Generator  # noqa: E402
from core.motion import Motion  # noqa: E402
from core.noise import token_noise  # noqa: E402
from core.ops import _dispatch, fused, modconv  # noqa: E402
from core.ops.bias_act import bias_act_ref  # noqa: E402
from core.ops.upfirdn2d import upfirdn2d_ref  # noqa: E402

# aten ops that launch nothing on a GPU (allocation, metadata, views)
_FREE = {"empty", "empty_strided", "empty_like", "view", "_unsafe_view", "reshape", "alias", "as_strided",
         "detach", "permute", "transpose", "t", "expand", "unsqueeze", "squeeze", "select", "slice", "split",
         "unbind", "lift_fresh", "_reshape_alias", "unfold", "_to_copy_noop"}


class _Counter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()
        self.paused = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self.paused and name not in _FREE:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @contextlib.contextmanager
    def kernel(self, name: str):
        """One launch for a custom kernel, whatever its stand-in computes."""
        self.ops[name] += 1
        self.paused += 1
        try:
            yield
        finally:
            self.paused -= 1


def _stand_ins(counter: _Counter) -> dict:
    """The core.ops.cuda entry points as counted PyTorch computations (same arguments, same results)."""
    def bias_act_cuda(x, b, dim=1, act="linear", alpha=0.0, gain=1.0, clamp=-1.0, scale=None, out_scale=None):
        with counter.kernel("[bias_act kernel]"):
            return bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp,
                                scale=scale, out_scale=out_scale)

    def upfirdn2d_cuda(x, f, up=(1, 1), down=(1, 1), padding=(0, 0, 0, 0), flip_filter=False, gain=1.0):
        with counter.kernel("[upfirdn2d kernel]"):
            return upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)

    def upfirdn2d_bias_act_cuda(x, f, padding, flip_filter, gain, b, act, alpha, act_gain, clamp, scale=None,
                                out_scale=None):
        with counter.kernel("[filter + bias_act kernel]"):
            y = upfirdn2d_ref(x, f, padding=padding, flip_filter=flip_filter, gain=gain)
            return bias_act_ref(y, b, act=act, alpha=alpha, gain=act_gain, clamp=clamp,
                                scale=scale, out_scale=out_scale)

    def modulate_weight_cuda(weight, wsq, styles, norm_styles, dtype):
        with counter.kernel("[modulate_weight kernel]"):
            s = styles / styles.norm(float("inf"), dim=1, keepdim=True) if norm_styles else styles
            w = modconv._folded_weight(weight, s, wsq is not None, fast=True)
            fmt = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) and \
                not weight.is_contiguous() else torch.contiguous_format
            return w.reshape(-1, *weight.shape[1:]).to(dtype, memory_format=fmt)

    def modulation_coefs_cuda(styles, wsq_t, norm_styles, dtype, want_styles):
        with counter.kernel("[modulation_coefs kernel]"):
            s = styles / styles.norm(float("inf"), dim=1, keepdim=True) if norm_styles else styles
            d = (s.square() @ wsq_t + 1e-8).rsqrt().to(dtype) if wsq_t is not None else None
            return d, s.to(dtype) if want_styles else None

    def bias_act_torgb_cuda(x, b, act, alpha, gain, clamp, scale, out_scale, rgb_weight, rgb_styles, rgb_bias,
                            rgb_clamp, skip):
        with counter.kernel("[bias_act + toRGB kernel]"):
            return fused.bias_act_torgb(x, b, act=act, alpha=alpha, gain=gain, clamp=None if clamp < 0 else clamp,
                                        scale=scale, out_scale=out_scale, rgb_weight=rgb_weight,
                                        rgb_styles=rgb_styles, rgb_bias=rgb_bias,
                                        rgb_clamp=None if rgb_clamp < 0 else rgb_clamp, skip=skip, impl="ref")

    def token_noise_cuda(seeds, sample, start, length, dim):
        with counter.kernel("[token_noise kernel]"):
            video_seeds = seeds[sample] if sample is not None else seeds
            return token_noise(video_seeds.unsqueeze(1), start.unsqueeze(1) + torch.arange(length), dim)

    def time_encoding_cuda(t, scale_logits, phase_logits, aligners_left, aligners_right, freqs, phase_scales,
                           delta_z, exact):
        with counter.kernel("[time_encoding kernel]"):
            enc = _TimeEncoding(freqs, phase_scales, scale_logits, phase_logits, aligners_left, aligners_right)
            old = motion_mod.MOTION_KERNELS
            motion_mod.MOTION_KERNELS = False
            try:
                # u_left / u_right only reach the predictors, which return the given outputs
                return motion_mod.AlignedTimeEncoder.forward(enc, t, scale_logits, scale_logits, delta_z, exact)
            finally:
                motion_mod.MOTION_KERNELS = old

    return dict(bias_act_cuda=bias_act_cuda, upfirdn2d_cuda=upfirdn2d_cuda,
                upfirdn2d_bias_act_cuda=upfirdn2d_bias_act_cuda, modulate_weight_cuda=modulate_weight_cuda,
                modulation_coefs_cuda=modulation_coefs_cuda, bias_act_torgb_cuda=bias_act_torgb_cuda,
                token_noise_cuda=token_noise_cuda,
                time_encoding_cuda=time_encoding_cuda)


class _TimeEncoding:
    """AlignedTimeEncoder's state for its forward with the predictors' outputs given (the kernel's inputs)."""

    def __init__(self, freqs, phase_scales, scale_logits, phase_logits, aligners_left, aligners_right):
        self.freqs, self.phase_scales = freqs.reshape(1, -1), phase_scales.reshape(1, -1)
        self.periods_predictor = lambda u: scale_logits
        self.phase_predictor = lambda u: phase_logits
        self._aligners = iter((aligners_left, aligners_right))
        self.aligners_predictor = lambda u: next(self._aligners)

    def parameters(self):
        return iter(())


@contextlib.contextmanager
def gpu_code_path(counter: _Counter):
    """Every custom op resolved to its kernel (as on a GPU), the kernels replaced by counted stand-ins."""
    saved = {name: getattr(cuda_pkg, name) for name in _stand_ins(counter)}
    resolve = _dispatch.resolve
    _dispatch.resolve = lambda name, impl, x: "ref" if impl == "ref" else "cuda"
    for name, fn in _stand_ins(counter).items():
        setattr(cuda_pkg, name, fn)
    try:
        yield
    finally:
        _dispatch.resolve = resolve
        for name, fn in saved.items():
            setattr(cuda_pkg, name, fn)


def count_call(G, n: int, t: int, kernels: bool, torgb: bool | None = None,
               **frames_kwargs) -> tuple[collections.Counter, ...]:
    """Launches of one call for n videos x t frames: (motion encoder, synthesis frames). kernels=False:
    the weight fold and the motion tokens in PyTorch ops (as before the sixth session); torgb (default:
    kernels): toRGB inside the last bias_act of every block (the seventh session's kernel)."""
    ws = G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0)))
    times = torch.arange(t, dtype=torch.float32).repeat(n, 1)
    motion = Motion.coerce(list(range(n)), n)
    syn = G.synthesis
    counter = _Counter()
    old = modconv.FOLD_KERNEL, motion_mod.MOTION_KERNELS, fused.TORGB_EPILOGUE
    modconv.FOLD_KERNEL = motion_mod.MOTION_KERNELS = kernels
    fused.TORGB_EPILOGUE = kernels if torgb is None else torgb
    try:
        with torch.no_grad(), gpu_code_path(counter):
            syn.frames(ws, syn.motion_encoder(times, motion), **frames_kwargs)  # fills the weight-derived caches
            plan = syn.motion_encoder.plan(times)  # on the host: the graphs replay encode() only
            counter.ops.clear()
            with counter:
                motion_v = syn.motion_encoder.encode(plan, motion)
            motion_ops, counter.ops = counter.ops, collections.Counter()
            with counter:
                syn.frames(ws, motion_v, **frames_kwargs)
    finally:
        modconv.FOLD_KERNEL, motion_mod.MOTION_KERNELS, fused.TORGB_EPILOGUE = old
    return motion_ops, counter.ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="256")
    parser.add_argument("--shapes", default="1x32,32x1", help="N videos x T frames per call")
    parser.add_argument("--channels-last", action="store_true", help="the NHWC layout of the GPU's fp16 blocks")
    parser.add_argument("--top", type=int, default=12, help="how many op names to list")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    G = Generator(preset(args.preset)).eval()
    print(f"# launch_count  preset {args.preset}, channels_last={args.channels_last}, float32 on the CPU "
          f"(a GPU's fp16 blocks add a few casts)")
    for shape in args.shapes.split(","):
        n, t = (int(v) for v in shape.split("x"))
        for per_video in ((True, False) if t > 1 else (False,)):
            layout = "per video" if per_video else "shared"
            for label, fold, torgb in (("ops    ", False, False), ("sixth  ", True, False), ("kernels", True, True)):
                motion_ops, ops = count_call(G, n, t, fold, torgb, per_video=per_video,
                                             channels_last=args.channels_last)
                mtop = ", ".join(f"{k} {v}" for k, v in motion_ops.most_common(4))
                big = sum(v for k, v in ops.items() if k.startswith("[") or k in ("convolution", "bmm"))
                top = ", ".join(f"{k} {v}" for k, v in ops.most_common(args.top))
                print(f"{n}x{t} {layout:<9} {label}: synthesis {sum(ops.values()):4d} "
                      f"launches ({big} convolutions / matmuls / custom kernels; {top}); "
                      f"motion encoder {sum(motion_ops.values())} ({mtop})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
