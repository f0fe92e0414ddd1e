"""CUDA ops: dispatch and fallback, reference parity, kernel logic on CPU, GPU parity.

Without a GPU the kernels are still checked: tests/cuda_host/host_emulation.cpp compiles the same
.cu sources as plain C++ (one thread per block), and the autograd wiring of core.ops.cuda runs on
top of it, so forward, gradient and second-order gradient are compared with the PyTorch reference.
Those tests skip when g++ or a CUDA toolkit's headers are missing. The `gpu` tests run the real
kernels and skip without CUDA.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.ops import _dispatch, modconv, options
from core.ops.bias_act import ACTIVATIONS, bias_act, bias_act_ref
from core.ops.cuda.build import BuildError
from core.ops.cuda.functions import KERNEL_ACTS
from core.ops.fused import upfirdn2d_bias_act
from core.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upfirdn2d_ref, upsample2d

CUDA_DIR = Path(__file__).resolve().parents[1] / "core" / "ops" / "cuda"
EMULATION = Path(__file__).resolve().parent / "cuda_host" / "host_emulation.cpp"
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
def broken_build(monkeypatch):
    """The extension's build replaced by one that fails (counting its calls), with a fresh build cache."""
    calls = []

    def no_toolkit(*args, **kwargs):
        calls.append(1)
        raise BuildError("no CUDA toolkit found (planted)")

    monkeypatch.setattr(_dispatch, "load_extension", no_toolkit)
    _dispatch._build.cache_clear()
    _dispatch._warn_fallback.cache_clear()
    yield calls
    _dispatch._build.cache_clear()
    _dispatch._warn_fallback.cache_clear()


def _fake_cuda_tensor():
    # resolve() only asks is_cuda and device, so the fallback logic is testable without a GPU.
    return SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))


def test_auto_falls_back_with_one_warning_and_cuda_raises_the_build_error(broken_build, caplog):
    with caplog.at_level(logging.WARNING, logger=_dispatch.__name__):
        for _ in range(3):
            assert _dispatch.resolve("bias_act", "auto", _fake_cuda_tensor()) == "ref"
            assert _dispatch.resolve("upfirdn2d", None, _fake_cuda_tensor()) == "ref"
    warnings = [r for r in caplog.records if "planted" in r.getMessage()]
    assert len(warnings) == 1, "one warning, not one per call"
    assert len(broken_build) == 1, "a failed build must not be retried on every call"
    with pytest.raises(RuntimeError, match="planted"):
        _dispatch.resolve("bias_act", "cuda", _fake_cuda_tensor())
    with options.use(impl="cuda"), pytest.raises(RuntimeError, match="planted"):
        _dispatch.resolve("bias_act", None, _fake_cuda_tensor())


def test_cpu_tensors_take_the_reference_and_reject_cuda(broken_build):
    x = torch.randn(2, 3, 6, 6)
    b = torch.randn(3)
    f = setup_filter(FILTER)
    for impl in ("auto", "ref", None):
        assert torch.equal(bias_act(x, b, act="lrelu", clamp=1.0, impl=impl),
                           bias_act_ref(x, b, act="lrelu", alpha=0.2, gain=math.sqrt(2), clamp=1.0))
        assert torch.equal(upfirdn2d(x, f, up=2, padding=1, impl=impl), upfirdn2d_ref(x, f, up=2, padding=1))
    assert not broken_build, "CPU tensors must never trigger a kernel build"
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        bias_act(x, b, impl="cuda")
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        upfirdn2d(x, f, impl="cuda")
    with options.use(impl="cuda"), pytest.raises(RuntimeError, match="CUDA tensor"):
        bias_act(x, b)
    with pytest.raises(ValueError, match="impl"):
        bias_act(x, b, impl="fast")
    with pytest.raises(ValueError, match="impl"):
        options.OpsOptions(impl="fast")


def test_importing_the_ops_builds_nothing():
    import core.ops.cuda.build as build

    if not torch.cuda.is_available():
        assert build.load_extension.cache_info().currsize == 0


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


def test_modconv_formulations_agree_and_the_options_pick_them():
    # fast_modconv=False and impl="ref" run the reference's order (per-sample weights materialised):
    # the same values to rounding, and not the same bits (so the switch reaches the code).
    gen = torch.Generator().manual_seed(5)
    x, w = torch.randn(3, 8, 6, 6, generator=gen), torch.randn(8, 8, 3, 3, generator=gen)
    s = torch.rand(3, 8, generator=gen)
    fast = modconv.modulated_conv2d(x, w, s, padding=1, fused_modconv=True)
    with options.use(fast_modconv=False):
        ref = modconv.modulated_conv2d(x, w, s, padding=1, fused_modconv=True)
    explicit = modconv.modulated_conv2d(x, w, s, padding=1, fused_modconv=True, impl="ref")
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(ref, explicit) and not torch.equal(fast, ref)
    assert options.current().fast_modconv, "the block restores the options"


# ---------------------------------------------------------------------------------------------
# The kernels themselves, compiled for the host (no GPU needed)

_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}


def _cuda_include_dir() -> Path | None:
    from core.ops.cuda.build import find_cuda_home

    home = find_cuda_home()
    if home and (Path(home) / "include" / "crt" / "host_config.h").exists():
        return Path(home) / "include"
    return None


@pytest.fixture(scope="module")
def emu_lib(tmp_path_factory):
    include = _cuda_include_dir()
    if shutil.which("g++") is None or include is None:
        pytest.skip("host emulation needs g++ and a CUDA toolkit's headers")
    out = tmp_path_factory.mktemp("emu") / "sgv_emu.so"
    cmd = ["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-Wno-attributes", f"-I{include}",
           f"-I{CUDA_DIR}", str(EMULATION), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"the CUDA sources do not compile as host C++:\n{res.stderr[-4000:]}"
    lib = ctypes.CDLL(str(out))
    lib.sgv_emu_bias_act.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3 + \
        [ctypes.c_int, ctypes.c_int, ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_void_p,
         ctypes.c_void_p, ctypes.c_int64]
    lib.sgv_emu_upfirdn2d.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 3 + \
        [ctypes.POINTER(ctypes.c_int64)] * 2 + [ctypes.POINTER(ctypes.c_int)] * 2 + [ctypes.c_double, ctypes.c_int] + \
        [ctypes.c_void_p] * 3 + [ctypes.c_double] * 3
    return lib


class _EmuOps:
    """The torch.ops namespace of ops.cpp, re-created over the host-compiled kernels."""

    def __init__(self, lib):
        self.lib = lib

    @staticmethod
    def _ptr(t):
        return None if t is None else t.data_ptr()

    def bias_act(self, x, b, yref, mode, dim, act, alpha, gain, clamp, scale=None, out_scale=None):
        assert x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        assert act in (1, 3) and mode in (0, 1)  # the checks of ops.cpp
        for ref in (yref,):
            assert ref is None or (ref.shape == x.shape and ref.dtype == x.dtype and all(
                s == 1 or ref.stride(i) == x.stride(i) for i, s in enumerate(x.shape))), "layout mismatch"
        for sc in (scale, out_scale):  # the checks of ops.cpp
            if sc is not None:
                assert mode == 0 and dim > 0 and sc.shape == (x.shape[0], x.shape[dim]) and sc.is_contiguous()
                assert x.shape[0] == 1 or x.stride(0) * x.shape[0] == x.numel()
        y = torch.empty_like(x)
        has_channel = b is not None or scale is not None or out_scale is not None
        step, size = (x.stride(dim) if x.shape[dim] > 1 else 1, x.shape[dim]) if has_channel else (1, 1)
        step_n = x.stride(0) if x.shape[0] > 1 else x.numel()
        err = self.lib.sgv_emu_bias_act(_CODES[x.dtype], x.data_ptr(), self._ptr(b), self._ptr(yref), y.data_ptr(),
                                        x.numel(), step, size, act, mode, alpha, gain, clamp, self._ptr(scale),
                                        self._ptr(out_scale), step_n)
        assert err == 0
        return y

    def upfirdn2d(self, x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain, b=None, scale=None,
                  out_scale=None, act=0, alpha=0.0, act_gain=1.0, clamp=-1.0):
        for t, shape in ((b, (x.shape[1],)), (scale, x.shape[:2]), (out_scale, x.shape[:2])):  # ops.cpp's checks
            assert t is None or (act > 0 and t.shape == shape and t.dtype == x.dtype and t.is_contiguous())
        fh, fw = f.shape[0], f.shape[-1]
        oh = (x.shape[2] * upy + py0 + py1 - fh + downy) // downy
        ow = (x.shape[3] * upx + px0 + px1 - fw + downx) // downx
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        y = torch.empty(x.shape[0], x.shape[1], oh, ow, dtype=x.dtype,
                        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        sx, sy = (ctypes.c_int64 * 4)(*x.stride()), (ctypes.c_int64 * 4)(*y.stride())
        dims = (ctypes.c_int * 6)(*x.shape, oh, ow)
        cfg = (ctypes.c_int * 10)(upx, upy, downx, downy, px0, py0, fh, fw, int(f.ndim == 1), int(flip))
        err = self.lib.sgv_emu_upfirdn2d(_CODES[x.dtype], x.data_ptr(), f.data_ptr(), y.data_ptr(), sx, sy,
                                         dims, cfg, gain, act, self._ptr(b), self._ptr(scale),
                                         self._ptr(out_scale), alpha, act_gain, clamp)
        assert err == 0
        return y


@pytest.fixture
def emu(emu_lib, monkeypatch):
    """core.ops.cuda's autograd Functions running on the host-compiled kernels."""
    from core.ops.cuda import functions

    ops = _EmuOps(emu_lib)
    monkeypatch.setattr(functions, "_ops", lambda: ops)
    return functions


def _layouts(x: torch.Tensor):
    yield "contiguous", x
    yield "channels_last", x.contiguous(memory_format=torch.channels_last)
    flat = torch.empty(x.numel() + 1, dtype=x.dtype)  # offset by one element: the scalar (unaligned) path
    view = flat[1:].view(x.shape)
    view.copy_(x)
    yield "unaligned", view


@pytest.mark.parametrize("act", sorted(KERNEL_ACTS))
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


@pytest.mark.parametrize("act", sorted(KERNEL_ACTS))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_emulated_bias_act_first_and_second_order(emu, act, layout):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64, generator=gen) * 2
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(4, dtype=torch.float64, generator=gen)
    r, v = torch.randn_like(x), torch.randn_like(x)
    for clamp in (-1.0, 1.5):
        args = (1, act, 0.25, 1.3, clamp)
        want = _bias_act_derivatives(lambda x_, b_, a=args: bias_act_ref(x_, b_, *a), x, b, r, v)
        got = _bias_act_derivatives(lambda x_, b_, a=args: emu.bias_act_cuda(x_, b_, *a), x, b, r, v)
        for name, g, w in zip(("y", "dx", "db", "d2x", "d2b"), got, want):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=f"{act} clamp={clamp}: {name}")


@pytest.mark.parametrize("act", sorted(KERNEL_ACTS))
def test_emulated_bias_act_gradgradcheck(emu, act):
    gen = torch.Generator().manual_seed(13)
    x = (torch.randn(2, 3, 4, dtype=torch.float64, generator=gen) + 0.05).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)

    def fn(x_, b_):
        return emu.bias_act_cuda(x_, b_, 1, act, 0.2, 1.4, -1.0)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_activations_without_a_kernel_run_the_reference(emu, monkeypatch):
    # The kernels implement the model's two activations; bias_act sends the others to the reference even
    # where the kernels run, and the kernel itself refuses them.
    monkeypatch.setattr(_dispatch, "resolve", lambda name, impl, x: "ref" if impl == "ref" else "cuda")
    x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
    for act in sorted(set(ACTIVATIONS) - set(KERNEL_ACTS)):
        assert torch.equal(bias_act(x, b, act=act), bias_act(x, b, act=act, impl="ref")), act
        with pytest.raises(ValueError, match="implements"):
            emu.bias_act_cuda(x, b, 1, act)


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


def test_emulated_4x4_filter_kernel(emu):
    # The 4x4 filter at up = down = 1 has its own direct kernel (8 rows per thread, channels-last
    # aware). It must agree with the reference for asymmetric and separable taps, either flip,
    # cropping and padding, heights that are not a multiple of 8, and every memory layout.
    kernel = "direct"
    gen = torch.Generator().manual_seed(29)
    filters = {"asym": torch.rand(4, 4, generator=gen) + 0.1,
               "sep4": setup_filter(torch.rand(4, generator=gen).tolist(), separable=True)}
    assert filters["sep4"].shape == (4,)
    for shape, pad in (((2, 5, 13, 11), (2, 1, 2, 1)), ((1, 3, 8, 9), (0, 0, 0, 0)), ((2, 2, 17, 6), (-1, 3, 4, -2)),
                       ((1, 1, 3, 2), (3, 3, 3, 3))):
        x = torch.randn(*shape, generator=gen)
        for (fname, f), flip in itertools.product(filters.items(), (False, True)):
            want = upfirdn2d_ref(x.double(), f, 1, 1, pad, flip, 1.3)
            for dtype in (torch.float32, torch.float16):
                tol = 4e-3 if dtype == torch.float16 else 1e-5
                for name, xl in _layouts(x.to(dtype)):
                    got = emu.upfirdn2d_cuda(xl, f, (1, 1), (1, 1), pad, flip, 1.3)
                    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol,
                                               msg=f"{kernel} {shape} {pad} {fname} flip={flip} {dtype} {name}")


def test_emulated_filter_with_bias_act_epilogue(emu):
    # upfirdn2d_bias_act_cuda == bias_act(upfirdn2d(x)) in the direct kernel's registers; every optional
    # operand, NCHW and channels-last.
    kernel = "direct"
    gen = torch.Generator().manual_seed(31)
    f, pad = setup_filter(FILTER), (2, 1, 2, 1)
    x = torch.randn(3, 4, 10, 9, generator=gen)
    b, scale, out_scale = torch.randn(4, generator=gen), torch.rand(3, 4, generator=gen) + 0.5, \
        torch.rand(3, 4, generator=gen) + 0.5
    uses = ((1, 1, 1), (0, 1, 0), (1, 0, 1))  # which of b, scale, out_scale are given
    for act, clamp, use in itertools.product(("lrelu", "linear"), (-1.0, 0.4), uses):
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
    # direct 4x4 filter with its bias_act epilogue, bias_act's fused scales), against the reference ops.
    from core.ops import fused

    kw = dict(shared=dict(fused_modconv=False), per_video=dict(per_video=True), grouped=dict(fused_modconv=True))
    ws = tiny_G.mapping(torch.randn(2, tiny_G.z_dim, generator=torch.Generator().manual_seed(37)))
    t = torch.tensor([[0.0, 2.5, 9.0]] * 2)
    fused_calls = []
    real = fused.upfirdn2d_bias_act_cuda
    monkeypatch.setattr(fused, "upfirdn2d_bias_act_cuda", lambda *a, **k: fused_calls.append(1) or real(*a, **k))
    with torch.no_grad():
        want = tiny_G.synthesis(ws, t, [3, 4], **kw[layout])
        monkeypatch.setattr(_dispatch, "resolve", lambda name, impl, x: "ref" if impl == "ref" else "cuda")
        got = tiny_G.synthesis(ws, t, [3, 4], **kw[layout])
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    ups = sum(1 for res in tiny_G.synthesis.block_resolutions if res > 4)
    assert len(fused_calls) == (0 if layout == "grouped" else ups), "the upsampling layers take the fused kernel"


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
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_gpu_bias_act_parity(act, dtype):  # the activations without a kernel take the reference
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
def test_gpu_4x4_filter_and_its_bias_act_epilogue(dtype):
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
    """bench/ops_gpu.py runs every section on CPU with the tiny preset (a few seconds)."""
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "ops_gpu.py"
    res = subprocess.run([sys.executable, str(script), "--cpu-smoke"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for section in ("== build", "== parity", "== ops", "== gen: matmul rate", "== gen: G frames/s", "== train"):
        assert section in res.stdout
    assert "PARITY: all within tolerance" in res.stdout
