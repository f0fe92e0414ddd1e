"""CUDA ops: dispatch and fallback, reference parity, kernel logic on CPU, GPU parity.

Without a GPU the kernels are still checked: core/ops/cuda/host_emulation.cpp compiles the same
.cu sources as plain C++ (every block with its real thread count, each thread a fiber, barriers real),
host_ops.cpp puts ops.cpp's torch bindings in front of them for CPU tensors, and the autograd wiring
of core.ops.cuda runs on top, so forward, gradient and second-order gradient are compared with the
PyTorch reference through the same code a GPU runs, launch configuration and bindings included.
Those tests skip when g++ or a CUDA toolkit's headers are missing. The `gpu` tests run the real
kernels and skip without CUDA.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import math
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import core.ops.cuda  # noqa: F401  (registers the loaders; must not build anything)
from core.ops import _dispatch, modconv
from core.ops.bias_act import ACTIVATIONS, bias_act, bias_act_ref
from core.ops.fused import upfirdn2d_bias_act
from core.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upfirdn2d_ref, upsample2d

CUDA_DIR = Path(__file__).resolve().parents[1] / "core" / "ops" / "cuda"
FILTER = [1, 3, 3, 1]
# (up, down, padding, flip, filter kind) covering StyleGAN2's uses and the general code path.
UPFIRDN_CASES = [
    ((1, 1), (1, 1), (2, 1, 2, 1), False, "4x4"),
    ((2, 2), (1, 1), (2, 1, 2, 1), False, "4x4"),
    ((1, 1), (2, 2), (1, 1, 1, 1), False, "4x4"),
    ((3, 2), (1, 2), (0, -1, 3, 2), True, "rand"),
    ((1, 1), (1, 1), (1, 0, -1, 2), False, "none"),
    ((2, 2), (1, 1), (4, 3, 4, 3), False, "sep"),
]


def _filter(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    if kind == "4x4":
        return setup_filter(FILTER)
    if kind == "rand":
        return torch.rand(3, 5, generator=gen) + 0.1
    if kind == "sep":
        return setup_filter(torch.rand(8, generator=gen).tolist())  # >= 8 taps: separable [8]
    return torch.ones(1, 1)


# ---------------------------------------------------------------------------------------------
# Dispatch and fallback


@pytest.fixture
def fresh_dispatch(monkeypatch):
    """Isolate _dispatch's module-level caches from other tests."""
    monkeypatch.setattr(_dispatch, "_loaders", dict(_dispatch._loaders))
    monkeypatch.setattr(_dispatch, "_loaded", {})
    monkeypatch.setattr(_dispatch, "_failed", {})
    monkeypatch.setattr(_dispatch, "_warned", set())
    return _dispatch


def _fake_cuda_tensor():
    # resolve() only asks is_cuda and device, so the fallback logic is testable without a GPU.
    return SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))


def test_auto_falls_back_with_one_warning_and_cuda_raises_build_error(fresh_dispatch, caplog):
    calls = []

    def broken_loader():
        calls.append(1)
        raise RuntimeError("nvcc: sm_90 kernel failed to compile (planted)")

    fresh_dispatch.register_loader("planted_op", broken_loader)
    with caplog.at_level(logging.WARNING, logger=_dispatch.__name__):
        for _ in range(3):
            assert fresh_dispatch.resolve("planted_op", "auto", _fake_cuda_tensor()) == "ref"
    warnings = [r for r in caplog.records if "planted_op" in r.getMessage()]
    assert len(warnings) == 1 and "planted" in warnings[0].getMessage()
    assert len(calls) == 1, "a failed build must not be retried on every call"
    with pytest.raises(RuntimeError, match="planted"):
        fresh_dispatch.resolve("planted_op", "cuda", _fake_cuda_tensor())


def test_cuda_raises_the_first_build_error_itself(fresh_dispatch):
    def broken_loader():
        raise RuntimeError("ninja: build stopped (planted)")

    fresh_dispatch.register_loader("planted_op2", broken_loader)
    with pytest.raises(RuntimeError, match="ninja: build stopped"):
        fresh_dispatch.resolve("planted_op2", "cuda", _fake_cuda_tensor())


def test_real_ops_fall_back_when_the_extension_cannot_build(fresh_dispatch, monkeypatch, caplog):
    import core.ops.cuda as cuda_pkg

    def no_toolkit():
        raise cuda_pkg.BuildError("no CUDA toolkit found (planted)")

    for name in ("bias_act", "upfirdn2d"):
        fresh_dispatch.register_loader(name, no_toolkit)
    with caplog.at_level(logging.WARNING, logger=_dispatch.__name__):
        for _ in range(2):
            assert fresh_dispatch.resolve("bias_act", "auto", _fake_cuda_tensor()) == "ref"
            assert fresh_dispatch.resolve("upfirdn2d", "auto", _fake_cuda_tensor()) == "ref"
    assert len([r for r in caplog.records if "planted" in r.getMessage()]) == 2  # one per op
    with pytest.raises(RuntimeError, match="planted"):
        fresh_dispatch.resolve("bias_act", "cuda", _fake_cuda_tensor())


def test_cpu_tensors_take_the_reference_and_reject_cuda(fresh_dispatch):
    def must_not_build():
        raise AssertionError("CPU tensors must never trigger a kernel build")

    fresh_dispatch.register_loader("bias_act", must_not_build)
    fresh_dispatch.register_loader("upfirdn2d", must_not_build)
    x = torch.randn(2, 3, 6, 6)
    b = torch.randn(3)
    f = setup_filter(FILTER)
    for impl in ("auto", "ref"):
        assert torch.equal(bias_act(x, b, act="lrelu", clamp=1.0, impl=impl),
                           bias_act_ref(x, b, act="lrelu", alpha=0.2, gain=math.sqrt(2), clamp=1.0))
        assert torch.equal(upfirdn2d(x, f, up=2, padding=1, impl=impl), upfirdn2d_ref(x, f, up=2, padding=1))
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        bias_act(x, b, impl="cuda")
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        upfirdn2d(x, f, impl="cuda")
    with pytest.raises(ValueError, match="impl"):
        bias_act(x, b, impl="fast")


def test_import_registers_loaders_without_building():
    import core.ops.cuda as cuda_pkg

    assert {"bias_act", "upfirdn2d"} <= set(_dispatch._loaders)
    if not torch.cuda.is_available():
        assert cuda_pkg.load_extension.cache_info().currsize == 0


def test_build_without_gpu_or_arch_is_a_clear_error(monkeypatch):
    from core.ops.cuda import build

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the arch comes from it")
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    build.load_extension.cache_clear()
    with pytest.raises(build.BuildError, match="TORCH_CUDA_ARCH_LIST"):
        build.load_extension()


def test_source_hash_tracks_sources_and_arch(tmp_path, monkeypatch):
    from core.ops.cuda import build

    assert build.source_hash("9.0") == build.source_hash("9.0")
    assert build.source_hash("9.0") != build.source_hash("8.0")
    for name in build.SOURCES + build.HEADERS:
        shutil.copy(CUDA_DIR / name, tmp_path / name)
    monkeypatch.setattr(build, "SOURCE_DIR", tmp_path)
    before = build.source_hash("9.0")
    with open(tmp_path / "bias_act.cu", "a") as fh:
        fh.write("\n// changed\n")
    assert build.source_hash("9.0") != before


# ---------------------------------------------------------------------------------------------
# The references against independent computations


def _np_act(name: str, v: np.ndarray, alpha: float) -> np.ndarray:
    sig = 1 / (1 + np.exp(-v))
    scale, a = 1.0507009873554805, 1.6732632423543772
    return {
        "linear": v, "relu": np.maximum(v, 0), "lrelu": np.where(v > 0, v, alpha * v), "tanh": np.tanh(v),
        "sigmoid": sig, "elu": np.where(v > 0, v, np.expm1(v)),
        "selu": scale * np.where(v > 0, v, a * np.expm1(v)), "softplus": np.log1p(np.exp(v)), "swish": v * sig,
    }[name]


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_ref_matches_numpy(act):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 3, 5)) * 2
    b = rng.normal(size=4)
    for dim, clamp in ((1, -1.0), (1, 1.5)):
        v = x + b.reshape(1, 4, 1, 1)
        want = _np_act(act, v, 0.3) * 1.7
        if clamp >= 0:
            want = np.clip(want, -clamp, clamp)
        got = bias_act_ref(torch.from_numpy(x), torch.from_numpy(b), dim=dim, act=act, alpha=0.3, gain=1.7,
                           clamp=clamp)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def _np_upfirdn2d(x, f, up, down, pad, flip, gain):
    """The definition, literally: zero-insert, pad, convolve (true convolution), subsample."""
    (upx, upy), (dx, dy), (px0, px1, py0, py1) = up, down, pad
    n, c, h, w = x.shape
    f = np.outer(f, f) if f.ndim == 1 else f
    fh, fw = f.shape
    xu = np.zeros((n, c, h * upy, w * upx))
    xu[:, :, ::upy, ::upx] = x
    hp, wp = h * upy + py0 + py1, w * upx + px0 + px1
    out = np.zeros((n, c, (hp - fh) // dy + 1, (wp - fw) // dx + 1))
    for oy in range(out.shape[2]):
        for ox in range(out.shape[3]):
            for ky in range(fh):
                for kx in range(fw):
                    yy, xx = oy * dy + ky - py0, ox * dx + kx - px0  # into xu
                    if 0 <= yy < xu.shape[2] and 0 <= xx < xu.shape[3]:
                        tap = f[ky, kx] if flip else f[fh - 1 - ky, fw - 1 - kx]
                        out[:, :, oy, ox] += tap * xu[:, :, yy, xx]
    return out * gain


@pytest.mark.parametrize("case", UPFIRDN_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[4]}")
def test_upfirdn2d_ref_matches_definition(case):
    up, down, pad, flip, kind = case
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = _filter(kind)
    got = upfirdn2d_ref(x, f, up, down, pad, flip, 1.5)
    want = _np_upfirdn2d(x.numpy(), f.double().numpy(), up, down, pad, flip, 1.5)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)


def test_resampling_keeps_a_constant_image_constant():
    x = torch.full((1, 2, 8, 8), 0.7, dtype=torch.float64)
    f = setup_filter(FILTER)
    up = upsample2d(x, f, impl="ref")
    down = downsample2d(x, f, impl="ref")
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 0.7))


# ---------------------------------------------------------------------------------------------
# modconv: the fast formulation against the reference


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
def test_modconv_fast_path_matches_reference(fused, demodulate, up, down):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    styles = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    size = 8 * up // down
    noise = torch.randn(3, 1, size, size, dtype=torch.float64, generator=gen)
    kw = dict(noise=noise, up=up, down=down, padding=1, demodulate=demodulate, fused_modconv=fused,
              resample_filter=setup_filter(FILTER) if up * down > 1 else None)
    outs = []
    for impl in ("auto", "ref"):
        y = modconv.modulated_conv2d(x, weight, styles, impl=impl, **kw)
        grads = torch.autograd.grad((y * y.detach().sin()).sum(), [x, weight, styles], create_graph=True)
        hess = torch.autograd.grad(sum((g * g).sum() for g in grads), [x, styles])  # second order (R1-like)
        outs.append((y, *grads, *hess))
    assert outs[0][0].shape == (3, 5, size, size)
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("impl", ["auto", "ref"])
def test_modconv_videos_equals_per_frame_modconv(demodulate, up, impl):
    """Frame-major `[T, N*I]` with one style row per video == the per-sample op on each of the N*T frames."""
    gen = torch.Generator().manual_seed(6)
    n, num_t = 3, 2
    x = torch.randn(n, num_t, 4, 8, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    styles = torch.randn(n, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    kw = dict(up=up, padding=1, demodulate=demodulate, flip_weight=up == 1, impl=impl,
              resample_filter=setup_filter(FILTER) if up > 1 else None)
    per_frame = modconv.modulated_conv2d(x.flatten(0, 1), weight, styles.repeat_interleave(num_t, 0),
                                         fused_modconv=True, **kw)  # [N*T, O, H', W']
    y = modconv.modulated_conv2d_videos(x.transpose(0, 1).reshape(num_t, n * 4, 8, 8), weight, styles, **kw)
    size = 8 * up
    assert y.shape == (num_t, n * 5, size, size)
    y = y.reshape(num_t, n, 5, size, size).transpose(0, 1).flatten(0, 1)
    torch.testing.assert_close(y, per_frame, rtol=1e-9, atol=1e-9)
    ga = torch.autograd.grad(y.sin().sum(), [x, weight, styles])
    gb = torch.autograd.grad(per_frame.sin().sum(), [x, weight, styles])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("channels_last", [False, True])
def test_modulated_conv1x1_equals_modconv_without_demodulation(channels_last):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 6, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(3, 6, 1, 1, dtype=torch.float64, generator=gen, requires_grad=True)
    styles = torch.randn(3, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = modconv.modulated_conv1x1(xin, weight, styles)
    want = modconv.modulated_conv2d(x, weight, styles, demodulate=False, fused_modconv=False, impl="ref")
    assert y.shape == (3, 3, 5, 4)
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)
    for a, b in zip(torch.autograd.grad(y.sin().sum(), [x, weight, styles], create_graph=True),
                    torch.autograd.grad(want.sin().sum(), [x, weight, styles], create_graph=True)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_modconv_videos_rejects_a_sample_major_input():
    with pytest.raises(AssertionError, match=r"expected \[T, 2\*4"):
        modconv.modulated_conv2d_videos(torch.randn(2, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(2, 4))


def test_modconv_fast_path_switch(monkeypatch):
    calls = []
    monkeypatch.setattr(modconv, "_modconv_ref", lambda *a: calls.append("ref") or a[0])
    monkeypatch.setattr(modconv, "_modconv_fast", lambda *a: calls.append("fast") or a[0])
    x, w, s = torch.randn(1, 2, 4, 4), torch.randn(2, 2, 3, 3), torch.randn(1, 2)
    modconv.modulated_conv2d(x, w, s)
    modconv.modulated_conv2d(x, w, s, impl="ref")
    monkeypatch.setattr(modconv, "FAST_PATH", False)
    modconv.modulated_conv2d(x, w, s)
    assert calls == ["fast", "ref", "ref"]


# ---------------------------------------------------------------------------------------------
# The kernels themselves, compiled for the host (no GPU needed)

@pytest.fixture(scope="module")
def emu_lib():
    """The kernels' host emulation behind ops.cpp's bindings (core/ops/cuda/host_ops.cpp), built once per
    source hash: `.ops` is its torch.ops namespace (CPU tensors), `.c` its library's steering functions."""
    from core.ops.cuda.build import BuildError, cuda_include_dir, load_host_extension

    if shutil.which("g++") is None or cuda_include_dir() is None:
        pytest.skip("host emulation needs g++ and a CUDA toolkit's headers")
    # SGV_EMU_CXXFLAGS: extra compiler and linker flags, e.g. the sanitizers' of .ci/emulation_sanitizers.sh
    try:
        ops, path = load_host_extension(tuple(os.environ.get("SGV_EMU_CXXFLAGS", "").split()))
    except BuildError as exc:
        pytest.fail(f"the CUDA sources do not compile as host C++: {str(exc)[-4000:]}")
    c = ctypes.CDLL(str(path))
    c.sgv_emu_set_schedule.argtypes = [ctypes.c_int, ctypes.c_uint]
    c.sgv_emu_set_grid_cap.argtypes = [ctypes.c_int]
    c.sgv_emu_selftest.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return SimpleNamespace(ops=ops, c=c)


@pytest.fixture
def emu(emu_lib, monkeypatch):
    """core.ops.cuda's autograd Functions running on the host-compiled kernels."""
    from core.ops.cuda import functions

    monkeypatch.setattr(functions, "_ops", lambda: emu_lib.ops)
    return functions


def _layouts(x: torch.Tensor):
    yield "contiguous", x
    yield "channels_last", x.contiguous(memory_format=torch.channels_last)
    flat = torch.empty(x.numel() + 1, dtype=x.dtype)  # offset by one element: the scalar (unaligned) path
    view = flat[1:].view(x.shape)
    view.copy_(x)
    yield "unaligned", view


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_emulated_bias_act_forward(emu, act, dtype):
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 6, 5, 3, generator=gen) * 3).to(dtype)
    b = torch.randn(6, generator=gen).to(dtype)
    tol = 2e-3 if dtype == torch.float16 else 1e-6
    for clamp in (-1.0, 2.5):
        want = bias_act_ref(x.double(), b.double(), 1, act, 0.2, 1.7, clamp)
        for name, xl in _layouts(x):
            got = emu.bias_act_cuda(xl, b, 1, act, 0.2, 1.7, clamp)
            assert got.dtype == dtype and got.shape == x.shape, name
            torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol, msg=f"{act} {name} clamp={clamp}")
    for dim in (0, 2, -1):  # bias along other dims
        bd = torch.randn(x.shape[dim], generator=gen).to(dtype)
        want = bias_act_ref(x.double(), bd.double(), dim % 4, act, 0.2, 1.7, -1.0)
        torch.testing.assert_close(emu.bias_act_cuda(x, bd, dim, act, 0.2, 1.7, -1.0).double(), want,
                                   rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_emulated_bias_act_fuses_per_sample_scales(emu, dtype):
    """scale / out_scale [N, C] (a modulated conv's demodulation, the next one's input modulation) inside
    the kernel == multiplying before / after, in every layout, with and without bias."""
    gen = torch.Generator().manual_seed(8)
    x = (torch.randn(3, 6, 5, 7, generator=gen) * 3).to(dtype)
    b = torch.randn(6, generator=gen).to(dtype)
    scale = (torch.rand(3, 6, generator=gen) + 0.5).to(dtype)
    out_scale = (torch.rand(3, 6, generator=gen) - 0.5).to(dtype)
    tol = 2e-3 if dtype == torch.float16 else 1e-6

    def expect(bias, sc, osc, clamp=2.0, xx=x):
        y = xx.double() * (sc.double()[:, :, None, None] if sc is not None else 1)
        y = bias_act_ref(y, None if bias is None else bias.double(), 1, "lrelu", 0.2, 1.4, clamp)
        return y * (osc.double()[:, :, None, None] if osc is not None else 1)

    for name, xl in _layouts(x):
        for bias, sc, osc in ((b, scale, None), (None, scale, None), (b, None, out_scale), (b, scale, out_scale)):
            want = expect(bias, sc, osc)
            ref = bias_act_ref(x.double(), None if bias is None else bias.double(), 1, "lrelu", 0.2, 1.4, 2.0,
                               scale=None if sc is None else sc.double(),
                               out_scale=None if osc is None else osc.double())
            torch.testing.assert_close(ref, want)
            with torch.no_grad():
                got = emu.bias_act_cuda(xl, bias, 1, "lrelu", 0.2, 1.4, 2.0, scale=sc, out_scale=osc)
            assert got.dtype == dtype and got.shape == x.shape, name
            what = f"{name} bias={bias is not None} scale={sc is not None} out={osc is not None}"
            torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol, msg=what)
    one = x[:1].contiguous()  # a single sample: n never advances
    with torch.no_grad():
        got = emu.bias_act_cuda(one, b, 1, "lrelu", 0.2, 1.4, -1.0, scale=scale[:1], out_scale=out_scale[:1])
    torch.testing.assert_close(got.double(), expect(b, scale[:1], out_scale[:1], -1.0, one), rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ["lrelu", "linear"])
def test_emulated_lean_forward_kernel(emu, monkeypatch, act):
    # The forward-only kernel (the default; SGV_BIAS_ACT_LEAN=0 selects the general one; activation as a
    # template parameter, 4 runs per thread, the partial run at the end on its own) must give what the
    # general kernel gives: NCHW and channels-last, odd sizes (tails), every scale, and
    # each way of loading the per-channel operands: per element (odd sizes), once per run (NCHW with H*W a
    # multiple of the vector), as vectors (channels-last with C a multiple of it: 8 / 16 / 24 channels).
    gen = torch.Generator().manual_seed(43)
    cases = [(3, 5, 7, 9), (2, 16, 4, 4), (1, 3, 1, 1), (2, 8, 3, 5), (3, 24, 2, 3), (2, 3, 4, 8)]
    for shape, dtype in itertools.product(cases, (torch.float32, torch.float16, torch.float64)):
        x = (torch.randn(*shape, generator=gen) * 2).to(dtype)
        n, c = shape[:2]
        b = torch.randn(c, generator=gen).to(dtype)
        sc, osc = ((torch.rand(n, c, generator=gen) + 0.5).to(dtype) for _ in range(2))
        for layout, (s, o), clamp in itertools.product((torch.contiguous_format, torch.channels_last),
                                                       ((None, None), (sc, osc), (sc, None)), (-1.0, 1.1)):
            xl = x.contiguous(memory_format=layout)
            monkeypatch.setenv("SGV_BIAS_ACT_LEAN", "0")  # the general kernel
            want = emu.bias_act_cuda(xl, b, 1, act, 0.2, 1.4, clamp, scale=s, out_scale=o)
            monkeypatch.delenv("SGV_BIAS_ACT_LEAN")  # the default: the forward-only kernel
            got = emu.bias_act_cuda(xl, b, 1, act, 0.2, 1.4, clamp, scale=s, out_scale=o)
            torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{shape} {dtype} {layout} {clamp}")
            ref = bias_act_ref(xl.double(), b.double(), act=act, alpha=0.2, gain=1.4, clamp=clamp,
                               scale=None if s is None else s.double(), out_scale=None if o is None else o.double())
            tol = 4e-3 if dtype == torch.float16 else 1e-6
            torch.testing.assert_close(got.double(), ref, rtol=tol, atol=tol)


def test_emulated_bias_act_scales_keep_gradients(emu):
    """With a gradient wanted, the scales are PyTorch multiplies around the differentiable kernel."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    scale = (torch.rand(2, 4, dtype=torch.float64, generator=gen) + 0.5).requires_grad_(True)
    out_scale = torch.rand(2, 4, dtype=torch.float64, generator=gen).requires_grad_(True)
    b = torch.randn(4, dtype=torch.float64, generator=gen)
    got = emu.bias_act_cuda(x, b, 1, "lrelu", 0.2, 1.4, 1.0, scale=scale, out_scale=out_scale)
    want = bias_act_ref(x, b, 1, "lrelu", 0.2, 1.4, 1.0, scale=scale, out_scale=out_scale)
    torch.testing.assert_close(got, want)
    ga = torch.autograd.grad(got.sin().sum(), [x, scale, out_scale])
    gb = torch.autograd.grad(want.sin().sum(), [x, scale, out_scale])
    for a, c in zip(ga, gb):
        torch.testing.assert_close(a, c)


def _bias_act_derivatives(fn, x, b, r, v):
    """y, dL/dx, dL/db with L = <y, r>, and the second-order grads of <dL/dx, v> w.r.t. x and b."""
    x = x.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    y = fn(x, b)
    gx, gb = torch.autograd.grad((y * r).sum(), [x, b], create_graph=True)
    hx = hb = None
    if gx.requires_grad:  # else dL/dx does not depend on x or b (linear, no clamp)
        hx, hb = torch.autograd.grad((gx * v).sum(), [x, b], allow_unused=True)
    hx = torch.zeros_like(x) if hx is None else hx
    hb = torch.zeros_like(b) if hb is None else hb
    return y, gx, gb, hx, hb


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", [(2, 4, 3, 5), (3, 5, 3, 3)])  # the second: a partial run at the end
def test_emulated_bias_act_first_and_second_order(emu, act, layout, shape):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(*shape, dtype=torch.float64, generator=gen) * 2
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(shape[1], dtype=torch.float64, generator=gen)
    r, v = torch.randn_like(x), torch.randn_like(x)
    for clamp in (-1.0, 1.5):
        args = (1, act, 0.25, 1.3, clamp)
        want = _bias_act_derivatives(lambda x_, b_, a=args: bias_act_ref(x_, b_, *a), x, b, r, v)
        got = _bias_act_derivatives(lambda x_, b_, a=args: emu.bias_act_cuda(x_, b_, *a), x, b, r, v)
        for name, g, w in zip(("y", "dx", "db", "d2x", "d2b"), got, want):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=f"{act} clamp={clamp}: {name}")


@pytest.mark.parametrize("act", ["tanh", "swish", "lrelu"])
def test_emulated_bias_act_gradgradcheck(emu, act):
    gen = torch.Generator().manual_seed(13)
    x = (torch.randn(2, 3, 4, dtype=torch.float64, generator=gen) + 0.05).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)

    def fn(x_, b_):
        return emu.bias_act_cuda(x_, b_, 1, act, 0.2, 1.4, -1.0)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("case", UPFIRDN_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[4]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_emulated_upfirdn2d_forward(emu, case, dtype):
    up, down, pad, flip, kind = case
    x = torch.randn(2, 3, 9, 7, generator=torch.Generator().manual_seed(17)).to(dtype)
    f = _filter(kind)
    want = upfirdn2d_ref(x.double(), f, up, down, pad, flip, 1.5)
    tol = 3e-3 if dtype == torch.float16 else 1e-5
    for name, xl in _layouts(x):
        got = emu.upfirdn2d_cuda(xl, f, up, down, pad, flip, 1.5)
        assert got.dtype == dtype, name
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol, msg=f"{case} {name}")


def test_emulated_upfirdn2d_tiles_large_images_and_many_planes(emu):
    # More than one output tile per plane, and more planes than fit one block.
    f = setup_filter(FILTER)
    for shape, up, down in (((1, 2, 70, 150), 1, 2), ((1, 1, 40, 90), 2, 1), ((3, 700, 4, 4), 1, 1)):
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(19))
        pad = (2, 1, 2, 1)
        want = upfirdn2d_ref(x, f, up, down, pad)
        got = emu.upfirdn2d_cuda(x, f, (up, up), (down, down), pad, False, 1.0)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# The 4x4 filter's kernels: "direct" (the default: the window loaded first, the epilogue's activation
# fixed at compile time), "rowwise" (the direct kernel the fourth session measured, kept to time against),
# "vec2" (opt-in: two channels per thread for 16-bit channels-last tensors with even C; others keep the
# direct kernel) and "tiled" (the general upfirdn2d kernel), chosen at launch by these variables.
_FILTER_KERNEL_ENV = {"rowwise": "SGV_FIR4_ROWWISE", "tiled": "SGV_UPFIRDN2D_TILED", "vec2": "SGV_FIR4_VEC2"}
FILTER_KERNELS = ["direct", "rowwise", "vec2", "tiled"]


def _select_filter_kernel(monkeypatch, kernel: str) -> None:
    for part in kernel.split("+"):
        if part in _FILTER_KERNEL_ENV:
            monkeypatch.setenv(_FILTER_KERNEL_ENV[part], "1")


@pytest.mark.parametrize("kernel", FILTER_KERNELS)
def test_emulated_4x4_filter_kernels(emu, monkeypatch, kernel):
    # The 4x4 filter at up = down = 1 has its own direct kernel (8 rows per thread, channels-last
    # aware); SGV_UPFIRDN2D_TILED=1 sends it to the tiled kernel. Both must agree with the
    # reference for asymmetric and separable taps, either flip, cropping and padding, heights that
    # are not a multiple of 8, and every memory layout.
    _select_filter_kernel(monkeypatch, kernel)
    gen = torch.Generator().manual_seed(29)
    filters = {"asym": torch.rand(4, 4, generator=gen) + 0.1,
               "sep4": setup_filter(torch.rand(4, generator=gen).tolist(), separable=True)}
    assert filters["sep4"].shape == (4,)
    for shape, pad in (((2, 5, 13, 11), (2, 1, 2, 1)), ((1, 3, 8, 9), (0, 0, 0, 0)), ((2, 2, 17, 6), (-1, 3, 4, -2)),
                       ((1, 1, 3, 2), (3, 3, 3, 3)),
                       ((2, 3, 24, 20), (2, 1, 2, 1)),  # windows that end exactly at the last row / column
                       ((2, 6, 13, 11), (2, 1, 2, 1))):  # even C: channel pairs in channels-last
        x = torch.randn(*shape, generator=gen)
        for (fname, f), flip in itertools.product(filters.items(), (False, True)):
            want = upfirdn2d_ref(x.double(), f, 1, 1, pad, flip, 1.3)
            for dtype in (torch.float32, torch.float16):
                tol = 4e-3 if dtype == torch.float16 else 1e-5
                for name, xl in _layouts(x.to(dtype)):
                    got = emu.upfirdn2d_cuda(xl, f, (1, 1), (1, 1), pad, flip, 1.3)
                    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol,
                                               msg=f"{kernel} {shape} {pad} {fname} flip={flip} {dtype} {name}")


@pytest.mark.parametrize("kernel", FILTER_KERNELS)
def test_emulated_filter_with_bias_act_epilogue(emu, monkeypatch, kernel):
    # upfirdn2d_bias_act_cuda == bias_act(upfirdn2d(x)): in the direct kernel's registers, or (tiled)
    # by bias_act in place on the filtered output; every optional operand, NCHW and channels-last.
    _select_filter_kernel(monkeypatch, kernel)
    gen = torch.Generator().manual_seed(31)
    f, pad = setup_filter(FILTER), (2, 1, 2, 1)
    x = torch.randn(3, 4, 10, 9, generator=gen)
    b, scale, out_scale = torch.randn(4, generator=gen), torch.rand(3, 4, generator=gen) + 0.5, \
        torch.rand(3, 4, generator=gen) + 0.5
    uses = ((1, 1, 1), (0, 1, 0), (1, 0, 1))  # which of b, scale, out_scale are given
    for act, clamp, use in itertools.product(("lrelu", "tanh", "linear"), (-1.0, 0.4), uses):
        operands = [t if u else None for t, u in zip((b, scale, out_scale), use)]
        want = bias_act_ref(upfirdn2d_ref(x.double(), f, 1, 1, pad, False, 4.0),
                            *[None if t is None else t.double() for t in operands[:1]], act=act, alpha=0.2,
                            gain=1.4, clamp=clamp, scale=operands[1], out_scale=operands[2])
        for dtype in (torch.float32, torch.float16):
            tol = 5e-3 if dtype == torch.float16 else 1e-5
            for name, xl in list(_layouts(x.to(dtype)))[:2]:
                cast = [None if t is None else t.to(dtype) for t in operands]
                got = emu.upfirdn2d_bias_act_cuda(xl, f, pad, False, 4.0, cast[0], act, 0.2, 1.4, clamp, *cast[1:])
                assert got.dtype == dtype
                torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol,
                                           msg=f"{kernel} {act} clamp={clamp} {use} {dtype} {name}")
    with pytest.raises(AssertionError, match="forward-only"):
        emu.upfirdn2d_bias_act_cuda(x.requires_grad_(True), f, pad, False, 4.0, b, "lrelu", 0.2, 1.4, -1.0)


@pytest.mark.parametrize("layout", ["shared", "per_video", "grouped"])
def test_emulated_kernels_render_the_reference_frames(tiny_G, emu, monkeypatch, layout):
    # The whole synthesis network on the host-compiled kernels, as a GPU runs it at inference (the
    # direct 4x4 filter with its bias_act epilogue, bias_act's fused scales, toRGB inside the last
    # bias_act of every block), against the reference ops.
    import core.ops.cuda as cuda_pkg

    kw = dict(shared=dict(fused_modconv=False), per_video=dict(per_video=True), grouped=dict(fused_modconv=True))
    gen = torch.Generator().manual_seed(37)
    ws = tiny_G.mapping(torch.randn(2, tiny_G.z_dim, generator=gen))
    ws = ws + 0.5 * torch.randn(ws.shape, generator=gen)  # a different w per layer (style mixing), as edits make
    t = torch.tensor([[0.0, 2.5, 9.0]] * 2)
    fused_calls, fold_calls, coef_calls, rgb_calls = [], [], [], []
    real, real_fold, real_coefs, real_rgb = (cuda_pkg.upfirdn2d_bias_act_cuda, cuda_pkg.modulate_weight_cuda,
                                             cuda_pkg.modulation_coefs_cuda, cuda_pkg.bias_act_torgb_cuda)
    monkeypatch.setattr(cuda_pkg, "upfirdn2d_bias_act_cuda", lambda *a, **k: fused_calls.append(1) or real(*a, **k))
    monkeypatch.setattr(cuda_pkg, "bias_act_torgb_cuda", lambda *a, **k: rgb_calls.append(1) or real_rgb(*a, **k))
    scaling_passes, real_scale = [], modconv._scale_input
    monkeypatch.setattr(modconv, "_scale_input", lambda x, s: scaling_passes.append(s is not None) or real_scale(x, s))
    monkeypatch.setattr(cuda_pkg, "modulate_weight_cuda", lambda *a, **k: fold_calls.append(1) or real_fold(*a, **k))
    monkeypatch.setattr(cuda_pkg, "modulation_coefs_cuda", lambda *a, **k: coef_calls.append(1) or real_coefs(*a, **k))
    with torch.no_grad():
        want = tiny_G.synthesis(ws, t, [3, 4], **kw[layout])
        monkeypatch.setattr(_dispatch, "resolve", lambda name, impl, x: "ref" if impl == "ref" else "cuda")
        scaling_passes.clear()
        got = tiny_G.synthesis(ws, t, [3, 4], **kw[layout])
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    ups = sum(1 for res in tiny_G.synthesis.block_resolutions if res > 4)
    assert len(fused_calls) == ups, "the upsampling layers take the fused kernel"
    layers = [m for m in tiny_G.synthesis.modules() if hasattr(m, "affine") and hasattr(m, "weight")]
    convs = sum(1 for m in layers if m.weight.shape[-1] == 3)
    # every block's toRGB rides in its last bias_act; per video / grouped: every conv's weights folded by
    # the kernel; shared: the convs' coefficients (demodulation; conv1's input scale rides in conv0's bias_act)
    assert len(rgb_calls) == len(tiny_G.synthesis.block_resolutions) == len(layers) - convs
    assert len(fold_calls) == (0 if layout == "shared" else convs)
    # shared: each conv's demodulation, conv1's input scale (in conv0's pass) and the next conv0's input scale
    # (in the previous block's last pass: only the 4x4 block's conv1 scales its input in a pass of its own)
    assert len(coef_calls) == (0 if layout != "shared" else convs + 2 * ups)
    assert sum(scaling_passes) == (1 if layout == "shared" else 0), scaling_passes


@contextlib.contextmanager
def _steered(emu_lib, schedule: tuple[int, int] = (0, 0), grid_cap: int = 0):
    """The emulation with an order for blocks and threads (mode, seed) and a grid cap; defaults after."""
    emu_lib.c.sgv_emu_set_schedule(*schedule)
    emu_lib.c.sgv_emu_set_grid_cap(grid_cap)
    try:
        yield
    finally:
        emu_lib.c.sgv_emu_set_schedule(0, 0)
        emu_lib.c.sgv_emu_set_grid_cap(0)


def test_host_emulation_runs_blocks_with_their_threads_and_checks_launches(emu_lib):
    # The emulator itself, on kernels of known behaviour: a block-wide reduction gives the sum of
    # 0..255 in every block; a read of a neighbour's shared-memory slot without a barrier gives
    # different values in thread order (the uninitialized NaN bytes) and reversed (the neighbour's
    # index); a barrier some threads skip, and launches beyond the hardware's limits, are errors.
    def run(which, schedule=0):
        out = np.zeros(256, np.float32)
        with _steered(emu_lib, schedule=(schedule, 0)):
            return emu_lib.c.sgv_emu_selftest(which, out.ctypes.data), out

    err, out = run(0, schedule=1)
    assert err == 0 and out[:2].tolist() == [255 * 256 / 2] * 2
    (err0, fwd), (err1, rev) = run(1, 0), run(1, 1)
    assert err0 == err1 == 0 and np.isnan(fwd[:255]).all() and rev[:255].tolist() == list(range(1, 256))
    for which in (2, 3, 4, 5, 6):  # divergent barrier; 2048 threads; 64 KiB shared; grid.y 70000; empty grid
        assert run(which)[0] != 0, which


def _kernel_battery(emu) -> list[torch.Tensor]:
    """One call of each kernel variant the model uses, with shapes over one block of threads."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 16, 9, 11, generator=gen) * 2
    b, s = torch.randn(16, generator=gen), torch.rand(2, 16, generator=gen) + 0.5
    f = setup_filter(FILTER)
    outs = []
    nhwc = torch.channels_last
    for xl in (x, x.contiguous(memory_format=nhwc), x.half().contiguous(memory_format=nhwc)):
        bl, sl = b.to(xl.dtype), s.to(xl.dtype)
        outs.append(emu.bias_act_cuda(xl, bl, 1, "lrelu", 0.2, 1.4, 1.0, scale=sl, out_scale=sl))  # the lean kernel
        outs.append(emu.bias_act_cuda(xl, bl, 1, "tanh", 0.0, 1.4, -1.0))  # the general one
        for up, down, pad in (((2, 2), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1)),
                              ((1, 1), (1, 1), (2, 1, 2, 1))):  # tiled up, tiled down, direct 4x4
            outs.append(emu.upfirdn2d_cuda(xl, f, up, down, pad, False, 1.5))
        outs.append(emu.upfirdn2d_bias_act_cuda(xl, f, (2, 1, 2, 1), False, 4.0, bl, "lrelu", 0.2, 1.4, 1.0, sl, sl))
    big = torch.randn(1, 2, 40, 70, generator=gen)  # the tiled kernel's several tiles per plane (15 at 2x up)
    outs += [emu.upfirdn2d_cuda(big, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),
             emu.upfirdn2d_cuda(big.half(), f, (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0)]
    for _, xt, kw in _torgb_cases(3, "cpu"):
        for xl in (xt, xt.half().contiguous(memory_format=torch.channels_last)):
            cast = {k: kw[k].to(xl.dtype) if kw[k] is not None else None for k in ("b", "scale", "out_scale")}
            outs.extend(emu.bias_act_torgb_cuda(
                xl, cast["b"], kw["act"], ACTIVATIONS[kw["act"]].def_alpha, kw["gain"],
                -1.0 if kw["clamp"] is None else kw["clamp"], cast["scale"], cast["out_scale"], kw["rgb_weight"],
                kw["rgb_styles"], kw["rgb_bias"], -1.0 if kw["rgb_clamp"] is None else kw["rgb_clamp"], kw["skip"]))
    weight, styles = torch.randn(6, 300, 3, 3, generator=gen), torch.randn(3, 300, generator=gen) * 3 + 1
    wsq = weight.square().sum(dim=[2, 3])
    for fmt in (torch.contiguous_format, torch.channels_last):
        outs.append(emu.modulate_weight_cuda(weight.contiguous(memory_format=fmt), wsq, styles, True, torch.float16))
        outs.append(emu.modulate_weight_cuda(weight.contiguous(memory_format=fmt), wsq, styles, False, torch.float32))
    outs.extend(emu.modulation_coefs_cuda(styles, wsq.t().contiguous(), True, torch.float16, True))
    return outs


def test_emulated_kernels_do_not_depend_on_the_thread_order(emu, emu_lib):
    # A race (a missing barrier, two threads or blocks writing one address) makes a kernel's output depend
    # on the order in which its blocks, and its threads between barriers, run: every kernel the model uses,
    # in index order, reversed and shuffled, must give the same bits.
    runs = []
    for schedule in ((0, 0), (1, 0), (2, 1), (2, 2)):
        with _steered(emu_lib, schedule=schedule), torch.no_grad():
            runs.append(_kernel_battery(emu))
    assert len(runs[0]) == 50
    for mode, run in enumerate(runs[1:], 1):
        for i, (a, b) in enumerate(zip(runs[0], run)):
            assert torch.equal(a, b), f"output {i} differs between thread orders 0 and {mode}"


def test_emulated_grid_stride_loops_give_the_same_bits(emu, emu_lib):
    # On a GPU at the model's shapes (2^20 filters, 65,536 blocks of bias_act) the grid-stride kernels
    # take several turns per block, and the barriers that end a turn matter; small test tensors never
    # get there. With the grids capped at 2 blocks every loop turns many times: same bits.
    with torch.no_grad():
        want = _kernel_battery(emu)
        with _steered(emu_lib, grid_cap=2):
            got = _kernel_battery(emu)
    assert len(got) == len(want) == 50
    for i, (a, b) in enumerate(zip(want, got)):
        assert torch.equal(a, b), f"output {i} differs with the grids capped"


@pytest.mark.slow
@pytest.mark.parametrize("name,fp16", [("256", False), ("small", True)], ids=["256-fp32", "small-fp16"])
def test_emulated_kernels_render_the_presets_at_their_real_shapes(emu, monkeypatch, name, fp16):
    # The tiny model's 16-64 channels never reach the launch configurations of the real ones (512 channels:
    # torgb's 12 KiB of shared memory, 2^18 threads folding a layer's weights, fp16 16-byte packs over 64-512
    # channels). The `256` preset in float32 and the `small` one with its fp16 blocks (forced on the CPU),
    # 2 videos x 2 frames, in the three layouts: the kernels' path against the reference ops. ~3 min.
    from core import synthesis as syn
    from core.config import preset
    from core.generator import Generator

    torch.manual_seed(0)
    G = Generator(preset(name)).eval()
    if fp16:
        monkeypatch.setattr(syn.SynthesisBlock, "dtype", lambda self, ws, force_fp32=False:
                            torch.float16 if self.use_fp16 and not force_fp32 else torch.float32)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim, generator=gen))
    t = torch.tensor([[0.0, 3.5]] * 2)
    reference = _dispatch.resolve
    for layout, kw in (("shared", dict(fused_modconv=False)), ("per_video", dict(per_video=True)),
                       ("grouped", dict(fused_modconv=True))):
        with torch.no_grad():
            monkeypatch.setattr(_dispatch, "resolve", reference)
            want = G.synthesis(ws, t, [3, 4], **kw)
            monkeypatch.setattr(_dispatch, "resolve", lambda op, impl, x: "ref" if impl == "ref" else "cuda")
            got = G.synthesis(ws, t, [3, 4], **kw)
        scale = want.abs().max().item()
        tol = 1e-2 * scale if fp16 else 1e-5 * scale  # measured: 0.14% (fp16), 2.3e-6 (fp32) of the scale
        assert got.shape == want.shape == (2, 2, 3, G.img_resolution, G.img_resolution), layout
        torch.testing.assert_close(got, want, rtol=0, atol=tol, msg=layout)


@pytest.mark.parametrize("layout", ["shared", "per_video"])
def test_emulated_torgb_epilogue_keeps_style_offsets(tiny_G, emu, monkeypatch, layout):
    # StyleSpace edits hook the affine layers' outputs: the toRGB weights the fused pass reads must carry
    # them (an offset on the last toRGB's styles changes the frames exactly as in the unfused layers).
    last_rgb = getattr(tiny_G.synthesis, f"b{tiny_G.synthesis.block_resolutions[-1]}").torgb
    off = torch.linspace(-0.7, 0.7, last_rgb.weight.shape[1])
    ws = tiny_G.mapping(torch.randn(2, tiny_G.z_dim, generator=torch.Generator().manual_seed(5)))
    t = torch.tensor([[0.0, 1.5]] * 2)
    kw = dict(per_video=layout == "per_video")
    handle = last_rgb.affine.register_forward_hook(lambda mod, args, out: out + off)
    try:
        with torch.no_grad():
            want = tiny_G.synthesis(ws, t, [1, 2], **kw)
            monkeypatch.setattr(_dispatch, "resolve", lambda name, impl, x: "ref" if impl == "ref" else "cuda")
            got = tiny_G.synthesis(ws, t, [1, 2], **kw)
    finally:
        handle.remove()
    with torch.no_grad():
        plain = tiny_G.synthesis(ws, t, [1, 2], **kw)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    assert (got - plain).abs().max() > 1e-2


def _check_modulate_weight(kernel, device, dtype, fmt, seed: int, n, shapes, fp32_tol: float):
    """modulate_weight (`kernel`) against the PyTorch fold for (O, I, k) shapes, sample counts n and both
    demodulation settings; returns the last weight and styles."""
    gen = torch.Generator().manual_seed(seed)
    tol = {torch.float32: fp32_tol, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    for (c_out, c_in, k), num, demodulate in itertools.product(shapes, n, [True, False]):
        weight = torch.randn(c_out, c_in, k, k, generator=gen).to(device)
        styles = (torch.randn(num, c_in, generator=gen) * 3 + 1).to(device)
        norm = dtype == torch.float16 and demodulate
        w = modconv._prenormalized_weight(weight) if norm else weight
        wsq = w.square().sum(dim=[2, 3]) if demodulate else None
        got = kernel(w.contiguous(memory_format=fmt), wsq, styles, norm, dtype)
        want = modconv._folded_weight_ops(weight, styles, demodulate, dtype, fmt)
        label = f"{dtype} {fmt} {c_out}x{c_in}x{k} n={num} demod={demodulate}"
        assert got.shape == want.shape and got.dtype == dtype and got.is_contiguous(memory_format=fmt), label
        torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol * want.abs().max().item(),
                                   msg=label)
        if demodulate:  # eq. 3: every output filter of every sample has unit norm
            norms = got.float().reshape(num * c_out, -1).norm(dim=1)
            torch.testing.assert_close(norms, torch.ones_like(norms), rtol=2 * tol, atol=0)
    return weight, styles


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_emulated_modulate_weight_matches_the_pytorch_fold(emu, dtype, fmt):
    weight, styles = _check_modulate_weight(emu.modulate_weight_cuda, "cpu", dtype, fmt, seed=11, n=(1, 3),
                                            shapes=[(5, 7, 3), (3, 6, 1), (4, 300, 3)], fp32_tol=1e-6)
    with pytest.raises(AssertionError, match="forward-only"):
        emu.modulate_weight_cuda(weight, None, styles.requires_grad_(True), False, torch.float32)
    with pytest.raises(TypeError, match="float16 or bfloat16"):
        emu.modulate_weight_cuda(weight, None, styles.detach(), False, torch.float64)


def _torgb_cases(seed: int, device):
    """Inputs of bias_act_torgb: planes below one warp, over one block, odd sizes; 1 and 2 groups; the toRGB
    styles one per sample or one for the batch; every optional operand present or absent; three activations."""
    gen = torch.Generator().manual_seed(seed)
    cases = [  # (batch, groups, channels, rgb channels, h, w, weights shared, act, all operands)
        (2, 1, 16, 3, 4, 4, False, "lrelu", True), (3, 2, 12, 3, 17, 19, True, "lrelu", True),
        (1, 1, 24, 3, 9, 7, False, "lrelu", False), (2, 2, 8, 4, 5, 6, False, "linear", True),
        (2, 1, 9, 1, 3, 5, True, "tanh", True), (1, 1, 64, 3, 16, 16, False, "lrelu", True)]
    for batch, groups, c, rgb_c, h, w, shared, act, full in cases:
        x = torch.randn(batch, groups * c, h, w, generator=gen) * 2
        ops = dict(
            b=torch.randn(groups * c, generator=gen) if full else None,
            scale=torch.rand(batch, groups * c, generator=gen) + 0.5 if full else None,
            out_scale=torch.rand(batch, groups * c, generator=gen) + 0.5 if full and act != "tanh" else None,
            rgb_weight=torch.randn(rgb_c, c, generator=gen) / c**0.5,
            rgb_styles=torch.randn(1 if shared else batch, groups, c, generator=gen) + 1,
            rgb_bias=torch.randn(rgb_c, generator=gen) if full else None,
            skip=torch.randn(batch, groups * rgb_c, h, w, generator=gen) if full or shared else None)
        kw = dict(act=act, gain=1.4, clamp=1.7 if full else None, rgb_clamp=0.8 if full else None)
        yield f"{batch}x{groups}x{c}x{h}x{w} rgb={rgb_c} shared={shared} {act} full={full}", x.to(device), \
            {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in ops.items()} | kw


def _check_bias_act_torgb(run, device, dtype, seed: int) -> None:
    """`run(x, **kw)` (the kernel through its entry point) against the ops one after the other in float64
    (tolerances: the rounding of x and of the activations to dtype; the kernel sums the rgb in float32)."""
    from core.ops.fused import bias_act_torgb

    tol = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
    for label, x, kw in _torgb_cases(seed, device):
        for fmt in (torch.contiguous_format, torch.channels_last):
            xd = x.to(dtype).contiguous(memory_format=fmt)
            ops = {k: (v.to(dtype) if k in ("b", "scale", "out_scale") and v is not None else v) for k, v in kw.items()}
            y, img = run(xd, **ops)
            ops64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in ops.items()}
            want_y, want_img = bias_act_torgb(xd.double(), **ops64, impl="ref")
            want_img = want_img.double()
            name = f"{label} {dtype} {fmt}"
            assert y.dtype == dtype and y.shape == x.shape and y.is_contiguous(memory_format=fmt), name
            assert img.dtype == torch.float32 and img.shape == want_img.shape and img.is_contiguous(), name
            torch.testing.assert_close(y.double(), want_y, rtol=tol, atol=tol * want_y.abs().max().item(), msg=name)
            torch.testing.assert_close(img.double(), want_img, rtol=tol, atol=tol * want_img.abs().max().item(),
                                       msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_emulated_bias_act_torgb_matches_the_ops(emu, dtype):
    def run(x, act, gain, clamp, rgb_clamp, **ops):
        spec = ACTIVATIONS[act]
        return emu.bias_act_torgb_cuda(x, ops["b"], act, spec.def_alpha, gain, -1.0 if clamp is None else clamp,
                                       ops["scale"], ops["out_scale"], ops["rgb_weight"], ops["rgb_styles"],
                                       ops["rgb_bias"], -1.0 if rgb_clamp is None else rgb_clamp, ops["skip"])
    _check_bias_act_torgb(run, "cpu", dtype, seed=21)
    x = torch.randn(1, 4, 2, 2, requires_grad=True)
    with pytest.raises(AssertionError, match="forward-only"):
        emu.bias_act_torgb_cuda(x, None, "lrelu", 0.2, 1.0, -1.0, None, None, torch.randn(3, 4),
                                torch.randn(1, 1, 4), None, -1.0, None)
    with pytest.raises(TypeError, match="bfloat16"):
        emu.bias_act_torgb_cuda(x.detach().double(), None, "lrelu", 0.2, 1.0, -1.0, None, None,
                                torch.randn(3, 4), torch.randn(1, 1, 4), None, -1.0, None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_emulated_modulation_coefs_match_the_pytorch_ops(emu, dtype):
    gen = torch.Generator().manual_seed(13)
    tol = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    for c_out, c_in, k, n in ((5, 7, 3, 3), (300, 260, 3, 2), (3, 16, 1, 1)):
        weight = torch.randn(c_out, c_in, k, k, generator=gen)
        styles = torch.randn(n, c_in, generator=gen) * 3 + 1
        w, s = modconv._prenormalize(dtype, weight, styles, True)
        want_d, want_s = modconv._demod_coefs(w, s), s
        with torch.no_grad():
            got_d, got_s = modconv._coefs_kernel(weight, styles, dtype, want_styles=True)
            only_d, none_s = modconv._coefs_kernel(weight, styles, dtype, want_styles=False)
            none_d, only_s = modconv._coefs_kernel(weight, styles, dtype, want_styles=True, demod=False)
        assert none_s is None and none_d is None
        for got, want in ((got_d, want_d), (only_d, want_d), (got_s, want_s), (only_s, want_s)):
            assert got.dtype == dtype and got.shape == want.shape
            torch.testing.assert_close(got.float(), want.to(dtype).float(), rtol=tol, atol=0)


def test_emulated_token_noise_is_the_pytorch_hash_bit_for_bit(emu):
    from core.noise import token_noise

    seeds = torch.tensor([0, 1, 2**62 + 12345, 987654321, 2**63 - 1])
    for dim, length in ((6, 4), (7, 3), (1, 5), (512, 2)):
        sample = torch.tensor([4, 0, 2, 2, 3, 1])
        start = torch.tensor([0, 5, 2**40, 17, 3, 1000000])
        got = emu.token_noise_cuda(seeds, sample, start, length, dim)
        want = token_noise(seeds[sample].unsqueeze(1), start.unsqueeze(1) + torch.arange(length), dim)
        assert got.shape == want.shape == (6, length, dim) and got.dtype == torch.float32
        # the same integer hash; float64 Box-Muller through libm instead of PyTorch's vectorized math
        assert (got != want).float().mean() < 1e-3, f"dim {dim}"
        torch.testing.assert_close(got, want, rtol=2e-7, atol=2e-7)
    no_sample = emu.token_noise_cuda(seeds, None, torch.arange(5), 3, 8)
    torch.testing.assert_close(no_sample, token_noise(seeds.unsqueeze(1), torch.arange(5).unsqueeze(1) +
                                                      torch.arange(3), 8), rtol=2e-7, atol=2e-7)
    bad = emu.token_noise_cuda(seeds, torch.tensor([1, 5, -1]), torch.zeros(3, dtype=torch.int64), 2, 4)
    assert bad[0].isfinite().all() and bad[1:].isnan().all(), "an out-of-range video index gives NaN tokens"


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("t_dtype", [torch.float64, torch.float32])
def test_emulated_time_encoding_matches_the_time_encoder(tiny_G, emu, monkeypatch, exact, t_dtype):
    import copy

    from core import motion as motion_mod

    enc = tiny_G.synthesis.motion_encoder.time_encoder
    dz = tiny_G.synthesis.motion_encoder.cfg.delta_z
    gen = torch.Generator().manual_seed(21)
    u_dim = enc.periods_predictor.weight.shape[1]
    # scale = tanh(.) + 1 is float32: one ulp of libm's tanh against PyTorch's moves a far frame's wave by
    # freq * t * 1e-7. So: far times with the periods predictor zeroed (tanh(0) = 0 on any libm), and
    # random predictors at near times.
    flat = copy.deepcopy(enc)
    with torch.no_grad():
        flat.periods_predictor.weight.zero_()
    far = torch.tensor([0.0, 0.5, dz - 1e-3, dz, 2.5 * dz, 90000.0, 1e7 + 0.25, 3e11 + 0.5]
                       + (torch.rand(24, generator=gen) * 5000).tolist(), dtype=torch.float64)
    near = torch.rand(32, generator=gen) * 200
    calls = []
    real = emu.time_encoding_cuda
    for module, t, atol in ((flat, far, 2e-6), (enc, near, 2e-5)):
        t = t.to(t_dtype)
        u_left, u_right = (torch.randn(len(t), u_dim, generator=gen) for _ in range(2))
        with torch.no_grad(), monkeypatch.context() as m:
            want = module(t, u_left, u_right, dz, exact=exact)
            m.setattr(core.ops.cuda, "time_encoding_cuda", lambda *a: calls.append(1) or real(*a))
            m.setattr(_dispatch, "resolve", lambda name, impl, x: "cuda")
            got = module(t, u_left, u_right, dz, exact=exact)
            m.setattr(motion_mod, "MOTION_KERNELS", False)
            assert torch.equal(module(t, u_left, u_right, dz, exact=exact), want), "MOTION_KERNELS = False: the ops"
        assert got.shape == want.shape and got.dtype == torch.float32
        if not exact and module is flat:  # float32 waves of far frames: both sides are rounding noise there
            got, want = got[t < 1000], want[t < 1000]
        # the same operations in the same order (no FMA contraction); libm's sin / cos / tanh against PyTorch's:
        # a last-bit difference of scale moves wave f of frame t by up to 3 waves x freq_f x t x 2^-23
        tt = t[:, None].double() if exact or module is not flat else t[t < 1000][:, None].double()
        slack = 3 * enc.freqs.double().repeat(1, 2) * tt * 2.0**-23 if module is enc else 0
        err = (got.double() - want.double()).abs()
        assert (err <= (atol if exact else 20 * atol) + slack).all(), f"max error {err.max().item():.2e}"
    assert calls == [1, 1]


def test_time_encoder_keeps_its_gradients_off_the_kernel(tiny_G, emu, monkeypatch):
    enc = tiny_G.synthesis.motion_encoder.time_encoder
    monkeypatch.setattr(_dispatch, "resolve", lambda name, impl, x: "cuda")
    monkeypatch.setattr(core.ops.cuda, "time_encoding_cuda", lambda *a: pytest.fail("the kernel has no backward"))
    u = torch.randn(3, enc.periods_predictor.weight.shape[1])
    v = enc(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), u, u, 4)  # the predictors' weights need a gradient
    v.sum().backward()
    assert enc.periods_predictor.weight.grad is not None


def test_motion_tokens_take_the_kernel_on_the_gpu_path(emu, monkeypatch):
    from core import motion as motion_mod

    motion = motion_mod.Motion.from_seeds([7, 2**50, 3])
    sample, start = torch.tensor([2, 0, 1, 1]), torch.tensor([0, 9, 4, 100])
    want = motion.tokens(sample, start, 5, 16)  # CPU tensors: the PyTorch ops
    calls = []
    real = emu.token_noise_cuda  # core.ops.cuda's, over the host-compiled kernel
    monkeypatch.setattr(core.ops.cuda, "token_noise_cuda", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(_dispatch, "resolve", lambda name, impl, x: "cuda")
    got = motion.tokens(sample, start, 5, 16)
    assert calls == [1]
    torch.testing.assert_close(got, want, rtol=2e-7, atol=2e-7)
    monkeypatch.setattr(motion_mod, "MOTION_KERNELS", False)
    motion.tokens(sample, start, 5, 16)
    assert calls == [1], "MOTION_KERNELS = False keeps the PyTorch ops"


def test_modulate_weight_kernel_is_for_inference_on_the_gpu(fresh_dispatch, monkeypatch):
    weight, styles = torch.randn(4, 3, 3, 3), torch.randn(2, 3)
    apply = modconv._modulation_kernels_apply
    assert not apply(weight, styles, "auto", torch.float16)  # a CPU tensor: the PyTorch fold
    monkeypatch.setattr(_dispatch, "resolve", lambda name, impl, x: "cuda")
    assert apply(weight, styles, "auto", torch.float16) and apply(weight, styles, "auto", torch.float32)
    assert not apply(weight, styles, "ref", torch.float16)
    assert not apply(weight.double(), styles, "auto", torch.float32)  # float64 parameters: the PyTorch ops
    assert not apply(weight, styles, "auto", torch.float64)  # float64 activations (parity runs): the ops
    assert not apply(weight.requires_grad_(True), styles, "auto", torch.float16)  # training
    with torch.no_grad():
        assert apply(weight, styles, "auto", torch.float16)
    monkeypatch.setattr(modconv, "FOLD_KERNEL", False)
    assert not apply(weight.detach(), styles, "auto", torch.float16)


@pytest.mark.parametrize("case", UPFIRDN_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[4]}")
def test_emulated_upfirdn2d_gradients(emu, case):
    up, down, pad, flip, kind = case
    f = _filter(kind)
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(23))
    x.requires_grad_(True)

    def fn(x_):
        return emu.upfirdn2d_cuda(x_, f, up, down, pad, flip, 1.5)

    assert torch.autograd.gradcheck(fn, (x,))
    # second order through a nonlinearity, against the reference
    outs = []
    for op in (fn, lambda x_: upfirdn2d_ref(x_, f, up, down, pad, flip, 1.5)):
        y = op(x)
        (g,) = torch.autograd.grad((y.square() * y.detach().cos()).sum(), [x], create_graph=True)
        (h,) = torch.autograd.grad((g * g.detach().sin()).sum(), [x])
        outs.append((y, g, h))
    for a, b in zip(*outs):  # not 1e-12: the reference rounds f * gain (and separable products) to float32
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5)


# ---------------------------------------------------------------------------------------------
# The real kernels on a GPU

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU_DEVICE = "cuda"  # a module constant so the GPU tests' own logic can be dry-run elsewhere


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _check_gpu_parity(label, names, got, ref, ref64, dtype):
    """Kernel vs reference in the same dtype, allowing 3x the reference's own error vs float64."""
    limit = 1e-5 if dtype == torch.float32 else 1e-2
    for name, g, w, w64 in zip(names, got, ref, ref64):
        assert g.dtype == w.dtype and g.shape == w.shape, f"{label} {name}"
        err = _rel(g, w) if w.norm() > 0 else g.double().norm().item()
        assert err <= max(limit, 3 * _rel(w, w64)), f"{label} {dtype} {name}: {err:.2e}"


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gpu_modulation_coefs_match_the_pytorch_ops(dtype):
    gen = torch.Generator().manual_seed(6)
    for c_out, c_in, n in ((512, 512, 32), (3, 64, 1), (300, 257, 5)):
        weight = torch.randn(c_out, c_in, 3, 3, generator=gen).to(GPU_DEVICE)
        styles = (torch.randn(n, c_in, generator=gen) * 3 + 1).to(GPU_DEVICE)
        w, s = modconv._prenormalize(dtype, weight, styles, True)
        with torch.no_grad():
            got_d, got_s = modconv._coefs_kernel(weight, styles, dtype, want_styles=True)
        tol = 1e-5 if dtype == torch.float32 else 1e-3
        torch.testing.assert_close(got_d.float(), modconv._demod_coefs(w, s).to(dtype).float(), rtol=tol, atol=0)
        torch.testing.assert_close(got_s.float(), s.to(dtype).float(), rtol=tol, atol=0)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_bias_act_torgb_matches_the_ops(dtype):
    from core.ops.cuda import bias_act_torgb_cuda

    def run(x, act, gain, clamp, rgb_clamp, **ops):
        with torch.no_grad():
            return bias_act_torgb_cuda(x, ops["b"], act, ACTIVATIONS[act].def_alpha, gain,
                                       -1.0 if clamp is None else clamp, ops["scale"], ops["out_scale"],
                                       ops["rgb_weight"], ops["rgb_styles"], ops["rgb_bias"],
                                       -1.0 if rgb_clamp is None else rgb_clamp, ops["skip"])
    _check_bias_act_torgb(run, GPU_DEVICE, dtype, seed=22)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("exact", [True, False])
def test_gpu_time_encoding_matches_the_time_encoder(tiny_G, exact, monkeypatch):
    from core import motion as motion_mod

    enc = tiny_G.synthesis.motion_encoder.time_encoder.to(GPU_DEVICE)
    dz = tiny_G.synthesis.motion_encoder.cfg.delta_z
    gen = torch.Generator().manual_seed(4)
    t = torch.cat([torch.tensor([0.0, 0.5, 90000.25, 3e11 + 0.5], dtype=torch.float64),
                   torch.rand(60, generator=gen, dtype=torch.float64) * 1000]).to(GPU_DEVICE)
    u_left, u_right = (torch.randn(len(t), enc.periods_predictor.weight.shape[1], generator=gen).to(GPU_DEVICE)
                       for _ in range(2))
    with torch.no_grad():
        got = enc(t, u_left, u_right, dz, exact=exact)
        monkeypatch.setattr(motion_mod, "MOTION_KERNELS", False)
        want = enc(t, u_left, u_right, dz, exact=exact)
    # the same libdevice functions and operation order as PyTorch's CUDA ops (no FMA contraction)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6 if exact else 1e-4)


@pytest.mark.gpu
@gpu
def test_gpu_token_noise_matches_the_pytorch_hash():
    from core.noise import token_noise
    from core.ops.cuda import token_noise_cuda

    gen = torch.Generator().manual_seed(9)
    seeds = torch.randint(0, 2**62, (16,), generator=gen)
    sample, start = torch.randint(0, 16, (40,), generator=gen), torch.randint(0, 2**40, (40,), generator=gen)
    for dim, length in ((512, 7), (33, 2)):
        got = token_noise_cuda(seeds.to(GPU_DEVICE), sample.to(GPU_DEVICE), start.to(GPU_DEVICE), length, dim)
        k = start.unsqueeze(1) + torch.arange(length)
        on_gpu = token_noise(seeds[sample].unsqueeze(1).to(GPU_DEVICE), k.to(GPU_DEVICE), dim)
        on_cpu = token_noise(seeds[sample].unsqueeze(1), k, dim)
        torch.testing.assert_close(got, on_gpu, rtol=2e-7, atol=2e-7)
        torch.testing.assert_close(got.cpu(), on_cpu, rtol=2e-7, atol=2e-7)  # the same noise on any device


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_gpu_modulate_weight_matches_the_pytorch_fold(dtype, fmt):
    from core.ops.cuda import modulate_weight_cuda

    _check_modulate_weight(modulate_weight_cuda, GPU_DEVICE, dtype, fmt, seed=5, n=(1, 4),
                           shapes=[(512, 512, 3), (3, 64, 1), (7, 300, 3)], fp32_tol=1e-5)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_gpu_bias_act_parity(act, dtype):
    gen = torch.Generator(device=GPU_DEVICE).manual_seed(29)
    x = torch.randn(4, 32, 16, 16, device=GPU_DEVICE, generator=gen)
    b = torch.randn(32, device=GPU_DEVICE, generator=gen)
    r, v = torch.randn_like(x), torch.randn_like(x)
    for clamp in (None, 1.0):
        results = []
        for impl, dt in (("cuda", dtype), ("ref", dtype), ("ref", torch.float64)):
            def fn(x_, b_, impl=impl, clamp=clamp):
                return bias_act(x_, b_, act=act, clamp=clamp, impl=impl)
            results.append(_bias_act_derivatives(fn, x.to(dt), b.to(dt), r.to(dt), v.to(dt)))
        _check_gpu_parity(f"bias_act {act} clamp={clamp}", ("y", "dx", "db", "d2x", "d2b"), *results, dtype)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_bias_act_fused_scale(dtype, channels_last):
    gen = torch.Generator(device=GPU_DEVICE).manual_seed(30)
    x = torch.randn(4, 32, 16, 16, device=GPU_DEVICE, generator=gen).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(32, device=GPU_DEVICE, generator=gen).to(dtype)
    scale = (torch.rand(4, 32, device=GPU_DEVICE, generator=gen) + 0.5).to(dtype)
    out_scale = torch.randn(4, 32, device=GPU_DEVICE, generator=gen).to(dtype)
    with torch.no_grad():
        got = bias_act(x, b, act="lrelu", clamp=1.0, scale=scale, out_scale=out_scale, impl="cuda")
    want = bias_act(x.double() * scale.double()[:, :, None, None], b.double(), act="lrelu", clamp=1.0, impl="ref")
    want = want * out_scale.double()[:, :, None, None]
    tol = 2e-3 if dtype == torch.float16 else 1e-5
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", UPFIRDN_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[4]}")
def test_gpu_upfirdn2d_parity(case, dtype):
    up, down, pad, flip, kind = case
    f = _filter(kind).to(GPU_DEVICE)
    x0 = torch.randn(4, 8, 20, 18, device=GPU_DEVICE, generator=torch.Generator(device=GPU_DEVICE).manual_seed(31))
    outs = []
    for impl, dt in (("cuda", dtype), ("ref", dtype), ("ref", torch.float64)):
        x = x0.to(dt).requires_grad_(True)
        y = upfirdn2d(x, f, up, down, pad, flip, 1.5, impl=impl)
        (g,) = torch.autograd.grad((y.float().square()).sum(), [x], create_graph=True)
        (h,) = torch.autograd.grad((g.float() * g.detach().float().sin()).sum(), [x])
        outs.append((y, g, h))
    _check_gpu_parity(f"upfirdn2d {case}", ("y", "dx", "d2x"), *outs, dtype)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(17, 15), (16, 16)])  # per-element / per-run (NCHW) operand loads
def test_gpu_lean_bias_act_forward_matches_the_general_kernel(dtype, channels_last, size, monkeypatch):
    gen = torch.Generator(device=GPU_DEVICE).manual_seed(33)
    x = torch.randn(4, 32, *size, device=GPU_DEVICE, generator=gen).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    b = torch.randn(32, device=GPU_DEVICE, generator=gen).to(dtype)
    scale, out_scale = ((torch.rand(4, 32, device=GPU_DEVICE, generator=gen) + 0.5).to(dtype) for _ in range(2))
    tol = 2e-3 if dtype == torch.float16 else 1e-6
    with torch.no_grad():
        for act, kw in itertools.product(("lrelu", "linear"), ({}, dict(scale=scale, out_scale=out_scale))):
            monkeypatch.setenv("SGV_BIAS_ACT_LEAN", "0")
            want = bias_act(x, b, act=act, clamp=1.0, impl="cuda", **kw)
            monkeypatch.setenv("SGV_BIAS_ACT_LEAN", "1")
            got = bias_act(x, b, act=act, clamp=1.0, impl="cuda", **kw)
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kernel", FILTER_KERNELS)
def test_gpu_4x4_filter_and_its_bias_act_epilogue(dtype, kernel, monkeypatch):
    _select_filter_kernel(monkeypatch, kernel)
    gen = torch.Generator(device=GPU_DEVICE).manual_seed(32)
    f, pad = setup_filter(FILTER).to(GPU_DEVICE), (2, 1, 2, 1)
    x0 = torch.randn(4, 24, 37, 21, device=GPU_DEVICE, generator=gen)
    b = torch.randn(24, device=GPU_DEVICE, generator=gen)
    scale, out_scale = (torch.rand(4, 24, device=GPU_DEVICE, generator=gen) + 0.5 for _ in range(2))
    tol = 4e-3 if dtype == torch.float16 else 1e-5
    for layout in (torch.contiguous_format, torch.channels_last):
        x = x0.to(dtype).contiguous(memory_format=layout)
        filtered = upfirdn2d_ref(x0.double(), f, 1, 1, pad, False, 4.0)
        torch.testing.assert_close(upfirdn2d(x, f, 1, 1, pad, False, 4.0, impl="cuda").double(), filtered,
                                   rtol=tol, atol=tol)
        want = bias_act_ref(filtered, b.double(), act="lrelu", alpha=0.2, gain=1.4, clamp=0.8,
                            scale=scale.double(), out_scale=out_scale.double())
        with torch.no_grad():
            got = upfirdn2d_bias_act(x, f, pad, gain=4.0, b=b.to(dtype), act="lrelu", act_gain=1.4, clamp=0.8,
                                     scale=scale.to(dtype), out_scale=out_scale.to(dtype), impl="cuda")
        assert got.dtype == dtype and got.is_contiguous(memory_format=layout)
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


@pytest.mark.slow
def test_bench_ops_gpu_cpu_smoke():
    """bench/ops_gpu.py runs every section on CPU with the tiny preset (about a minute)."""
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "ops_gpu.py"
    res = subprocess.run([sys.executable, str(script), "--cpu-smoke"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for section in ("== 2. parity", "== 3. op timings", "== 4b. generator FLOPs", "== 5b. one training"):
        assert section in res.stdout
    assert "PARITY: all within tolerance" in res.stdout
