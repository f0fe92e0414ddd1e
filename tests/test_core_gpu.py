"""GPU checks of the core model (skipped without CUDA): fp16 blocks and conv clamping on the device."""

import pytest
import torch

from core.config import preset
from core.discriminator import Discriminator
from core.generator import Generator, z_from_seed

pytestmark = pytest.mark.gpu


def test_fp16_generator_matches_fp32_on_gpu():
    torch.manual_seed(0)
    G = Generator(preset("small")).eval().cuda()
    z = z_from_seed([0, 1], G.z_dim, "cuda")
    t = torch.tensor([[0.0, 7.5, 90000.25]] * 2, device="cuda")
    with torch.no_grad():
        mixed = G(z, t, [3, 4])
        full = G(z, t, [3, 4], force_fp32=True)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    assert (mixed - full).abs().max() < 0.05


def test_gpu_matches_cpu_in_fp32():
    torch.manual_seed(0)
    G = Generator(preset("tiny")).eval()
    z = z_from_seed([5], G.z_dim)
    cpu = G(z, [[0.0, 123.5]], [9])
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # fp32 on both sides (TF32 convs differ by ~2e-3)
    try:
        gpu = G.cuda()(z.cuda(), [[0.0, 123.5]], [9]).cpu()
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert (cpu - gpu).abs().max() < 1e-3


def test_discriminator_mixed_precision_backward_on_gpu():
    D = Discriminator(preset("small")).cuda()
    img = torch.randn(4, 3, 3, 64, 64, device="cuda", requires_grad=True)
    t = torch.tensor([[0.0, 4, 9]] * 4, device="cuda")
    logits = D(img, t)
    (grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)  # R1 needs the second order
    grad.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)


@pytest.mark.parametrize("n,num_t", [(1, 8), (4, 3)])
def test_modconv_layouts_agree_in_mixed_precision_on_gpu(n, num_t):
    torch.manual_seed(0)
    G = Generator(preset("small")).eval().cuda()
    ws = G.mapping(torch.randn(n, G.z_dim, device="cuda"))
    t = torch.arange(num_t, device="cuda", dtype=torch.float64)[None].expand(n, -1) * 1.5
    with torch.no_grad():
        outs = [G.synthesis(ws, t, list(range(n)), **kw) for kw in
                (dict(fused_modconv=True), dict(fused_modconv=False), dict(per_video=True))]
    for o in outs[1:]:
        assert o.shape == outs[0].shape and (o - outs[0]).abs().max() < 0.02


def test_channels_last_fp16_blocks_match_on_gpu():
    torch.manual_seed(0)
    G = Generator(preset("small")).eval().cuda()
    ws = G.mapping(torch.randn(3, G.z_dim, device="cuda"))
    t = torch.tensor([[0.0, 2.5]] * 3, device="cuda", dtype=torch.float64)
    with torch.no_grad():
        nchw = G.synthesis(ws, t, [1, 2, 3])
        nhwc = G.synthesis(ws, t, [1, 2, 3], channels_last=True)
        nhwc_pv = G.synthesis(ws, t, [1, 2, 3], channels_last=True, per_video=True)
    assert nhwc.is_contiguous() and (nhwc - nchw).abs().max() < 0.02 and (nhwc_pv - nchw).abs().max() < 0.02


@pytest.mark.parametrize("kw", [{}, {"per_video": True}, {"per_video": True, "channels_last": True}])
def test_cuda_graph_replay_matches_eager(kw):
    from core.cuda_graph import GraphedSynthesis

    torch.manual_seed(0)
    G = Generator(preset("small")).eval().cuda()
    graphed = GraphedSynthesis(G.synthesis, **kw)
    ws = G.mapping(torch.randn(2, G.z_dim, device="cuda"))
    t1 = torch.tensor([[0.0, 1.5, 9.0]] * 2, device="cuda", dtype=torch.float64)
    with torch.no_grad():
        first = graphed(ws, t1, [4, 5])
        kept = first.clone()
        second = graphed(ws.flip(0), t1 + 100, [6, 7])  # same shapes: a replay with new inputs
        assert len(graphed._graphs) == 1
        torch.testing.assert_close(first, kept)  # returned frames are not overwritten by replays
        torch.testing.assert_close(first, G.synthesis(ws, t1, [4, 5], **kw), atol=2e-3, rtol=0)
        torch.testing.assert_close(second, G.synthesis(ws.flip(0), t1 + 100, [6, 7], **kw), atol=2e-3, rtol=0)
        for param in G.synthesis.parameters():  # an in-place update (EMA, optimizer) is seen by replays
            param.mul_(1.05)
        torch.testing.assert_close(graphed(ws, t1, [4, 5]), G.synthesis(ws, t1, [4, 5], **kw), atol=2e-3, rtol=0)


def test_fused_demodulation_matches_the_separate_multiply_on_gpu():
    from core.ops import options

    torch.manual_seed(0)
    G = Generator(preset("small")).eval().cuda()
    ws = G.mapping(torch.randn(4, G.z_dim, device="cuda"))
    t = torch.tensor([[0.0, 3.5]] * 4, device="cuda", dtype=torch.float64)
    with torch.no_grad():
        fused = G.synthesis(ws, t, [1, 2, 3, 4], fused_modconv=False)
        with options.use(fuse_bias_act=False):
            separate = G.synthesis(ws, t, [1, 2, 3, 4], fused_modconv=False)
    assert (fused - separate).abs().max() < 0.02
