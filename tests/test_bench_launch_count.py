"""bench/launch_count.py: the GPU code path counted on the CPU (tiny preset): what each kernel replaces."""

import importlib.util
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "launch_count.py"
spec = importlib.util.spec_from_file_location("launch_count", SCRIPT)
launch_count = importlib.util.module_from_spec(spec)
sys.modules["launch_count"] = launch_count
spec.loader.exec_module(launch_count)


def test_kernels_replace_the_modulation_and_token_ops(tiny_G):
    layers = [m for m in tiny_G.synthesis.modules() if hasattr(m, "affine") and hasattr(m, "weight")]
    motion_ops, ops = launch_count.count_call(tiny_G, 1, 4, False, per_video=True)
    motion_k, kernels = launch_count.count_call(tiny_G, 1, 4, True, per_video=True)
    convs = sum(1 for m in layers if m.weight.shape[-1] == 3)
    blocks = len(tiny_G.synthesis.block_resolutions)
    # every conv's weights folded by one kernel; toRGB's ride in the last bias_act of each block
    assert kernels["[modulate_weight kernel]"] == convs and "[modulate_weight kernel]" not in ops
    assert kernels["[bias_act + toRGB kernel]"] == blocks == len(layers) - convs
    _, sixth = launch_count.count_call(tiny_G, 1, 4, True, torgb=False, per_video=True)
    assert sixth["[modulate_weight kernel]"] == len(layers) and "[bias_act + toRGB kernel]" not in sixth
    assert sum(kernels.values()) <= sum(sixth.values()) - 3 * blocks
    assert motion_k["[token_noise kernel]"] == 1 and "[token_noise kernel]" not in motion_ops
    assert motion_ops["__rshift__"] > 0 and "__rshift__" not in motion_k, "the hash is inside the kernel"
    assert sum(kernels.values()) < sum(ops.values()) - len(layers)
    assert sum(motion_k.values()) < sum(motion_ops.values())
    # the stand-ins compute what the kernels would: the count does not change the frames
    with torch.no_grad(), launch_count.gpu_code_path(launch_count._Counter()):
        ws = tiny_G.mapping(torch.randn(1, tiny_G.z_dim, generator=torch.Generator().manual_seed(0)))
        got = tiny_G.synthesis(ws, torch.arange(4.0)[None], [0], per_video=True)
    with torch.no_grad():
        want = tiny_G.synthesis(ws, torch.arange(4.0)[None], [0], per_video=True)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_shared_layout_counts_the_coefficient_kernel(tiny_G):
    _, ops = launch_count.count_call(tiny_G, 2, 1, True, per_video=False)
    convs = [m for m in tiny_G.synthesis.modules() if hasattr(m, "affine") and getattr(m, "weight", None) is not None
             and m.weight.shape[-1] == 3]
    assert ops["[modulation_coefs kernel]"] >= len(convs)
    assert ops["rsqrt"] == 0, "the demodulation's rsqrt is inside the kernel"
