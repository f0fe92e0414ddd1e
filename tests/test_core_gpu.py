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
