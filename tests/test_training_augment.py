"""ADA "bgc" augmentation: one transform per clip shared by its frames; adaptive p."""

import pytest
import torch

from training.augment import AdaController, AugmentConfig, AugmentPipe


def _clips(n=6, t=3, res=16):
    g = torch.Generator().manual_seed(0)
    frame = torch.rand([n, 1, 3, res, res], generator=g) * 2 - 1
    return frame.repeat(1, t, 1, 1, 1)  # identical frames within each clip


def test_identity_at_p0_and_changes_at_p1():
    x = _clips()
    assert torch.equal(AugmentPipe("bgc", p=0.0)(x), x)
    torch.manual_seed(1)
    y = AugmentPipe("bgc", p=1.0)(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert (y - x).abs().amax(dim=(1, 2, 3, 4)).min() > 1e-3  # every clip transformed


def test_same_transform_for_every_frame_of_a_clip():
    x = _clips()
    for seed in range(3):
        torch.manual_seed(seed)
        y = AugmentPipe("bgc", p=1.0)(x)
        for k in range(1, x.shape[1]):
            torch.testing.assert_close(y[:, k], y[:, 0], atol=1e-5, rtol=0)
        # ... while different clips get different transforms: augment copies of one clip
        same = x[:1].repeat(6, 1, 1, 1, 1)
        z = AugmentPipe("bgc", p=1.0)(same)
        assert (z[1:] - z[:1]).abs().amax(dim=(1, 2, 3, 4)).min() > 1e-3


def test_moving_frames_keep_their_relation_under_geometry():
    # A clip whose frame 1 is frame 0 shifted by one pixel stays (away from the borders) a shift of
    # the augmented frame 0 under integer-only transforms (flips, 90-degree rotations, int shifts).
    # "Away from the borders" = beyond the reach of the 12-tap wavelet filters (8 px here).
    torch.manual_seed(3)
    f0 = torch.rand([4, 3, 32, 32]) * 2 - 1
    x = torch.stack([f0, f0.roll(1, dims=3), f0.roll(2, dims=3)], dim=1)
    y = AugmentPipe("blit", p=1.0)(x)
    for i in range(4):
        errs = [(y[i, 1] - y[i, 0].roll(s, dims=d))[..., 8:-8, 8:-8].abs().max()
                for d in (1, 2) for s in (1, -1)]
        assert min(errs) < 1e-5


def test_wavelet_resampling_is_exact_for_identity_and_integer_shifts():
    # ADA's geometric path (reflect pad, 2x sym6 upsample, bilinear, sym6 downsample) is an orthogonal
    # wavelet's synthesis/analysis pair: with no transform it must give back the frame itself.
    pipe = AugmentPipe("bgc", p=0.0)
    x = torch.rand([2, 3, 24, 24]) * 2 - 1
    eye = torch.eye(3).repeat(2, 1, 1)
    torch.testing.assert_close(pipe._resample(x, eye), x, atol=1e-5, rtol=0)
    shift = eye.clone()
    shift[:, 0, 2] = 3 * 2 / 24  # read 3 pixels to the right (normalised coordinates)
    y = pipe._resample(x, shift)
    torch.testing.assert_close(y[..., :-3], x[..., 3:], atol=1e-5, rtol=0)


def test_anti_aliased_rotation_keeps_a_smooth_frame_smooth():
    # A 0.02 rad rotation moves a smooth frame by ~its gradient times the displacement (~0.02 here):
    # it must change the frame, and the 2x wavelet resampling must add no ringing beyond that.
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    x = torch.sin(2 * xx + yy).expand(1, 3, 32, 32).contiguous()
    theta = torch.tensor(0.02)
    rot = torch.eye(3)[None].clone()
    rot[0, :2, :2] = torch.tensor([[theta.cos(), -theta.sin()], [theta.sin(), theta.cos()]])
    y = AugmentPipe("bgc", p=0.0)._resample(x, rot)
    err = (y - x)[..., 8:-8, 8:-8].abs().max()
    assert 1e-4 < err < 0.05


def test_second_order_gradient_through_augmentation():
    # Lazy R1 differentiates D's input gradient w.r.t. D's weights through the augmentation.
    torch.manual_seed(0)
    x = (torch.rand([2, 3, 3, 16, 16]) * 2 - 1).requires_grad_(True)
    w = torch.randn([4, 3, 3, 3], requires_grad=True)
    y = AugmentPipe("bgc", p=1.0)(x)
    score = torch.nn.functional.conv2d(y.flatten(0, 1), w).square().sum()
    (grad,) = torch.autograd.grad(score, [x], create_graph=True)
    grad.square().sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_adaptive_p_moves_toward_target():
    pipe = AugmentPipe("bgc", p=0.0)
    ada = AdaController(pipe, target=0.6, interval=2, ada_kimg=0.1)  # fast, for the test
    for _ in range(8):  # D confident on reals (all signs +1 > 0.6): p must rise
        ada.accumulate(torch.ones(16))
        ada.update(batch_clips=16)
    p_up = float(pipe.p)
    assert p_up > 0.5 and ada.last_rt == 1.0
    for _ in range(40):  # signs mostly negative (< 0.6): p must fall, and never below 0
        ada.accumulate(torch.tensor([1.0] * 4 + [-1.0] * 12))
        ada.update(batch_clips=16)
    assert float(pipe.p) == 0.0


def test_rotations_turn_the_way_ada_does():
    # ADA (and the reference) compose rotate2d_inv(-pi/2 * i): clip j turns by +90 * i[j] degrees as
    # torch.rot90 counts (bench/augment_parity.py checks the whole pipe against the reference). With a
    # smooth frame, the 12-tap wavelet's slight asymmetry costs little away from the borders.
    n = 8
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    x = torch.stack([torch.sin(2 * xx + 3 * yy * yy), torch.cos(3 * xx * yy), xx * yy])
    x = x.expand(n, 1, 3, 32, 32).contiguous()
    torch.manual_seed(5)
    i = torch.floor(torch.rand([n]) * 4).long()  # the pipe's first draw: the number of quarter turns
    torch.manual_seed(5)
    y = AugmentPipe(AugmentConfig(rotate90=1), p=1.0)(x)
    assert len(set(i.tolist())) > 1
    for j in range(n):
        ada = torch.rot90(x[j, 0], k=int(i[j]), dims=(1, 2))
        assert (y[j, 0] - ada)[:, 8:-8, 8:-8].abs().max() < 0.05
        if i[j] % 2:  # a turn the other way differs
            other = torch.rot90(x[j, 0], k=-int(i[j]), dims=(1, 2))
            assert (y[j, 0] - other)[:, 8:-8, 8:-8].abs().max() > 0.3


def test_grid_sample_with_a_known_double_backward_matches_torch():
    # training.grid_sample exists because CUDA's grid_sample has no double backward; on the CPU torch
    # has one, so the two must agree to the last bit in value, gradient and R1-style second order.
    import torch.nn.functional as F

    from training.grid_sample import grid_sample

    torch.manual_seed(0)
    theta = torch.tensor([[[0.9, 0.2, 0.05], [-0.15, 1.1, 0.1]]], dtype=torch.float64).repeat(2, 1, 1)
    grid = F.affine_grid(theta, [2, 3, 7, 7], align_corners=False)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a: grid_sample(a, grid), (x,))
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    grads = []
    for sample in (grid_sample, lambda a, g: F.grid_sample(a, g, align_corners=False)):
        out = F.conv2d(sample(x, grid), w).square().sum()
        (gx,) = torch.autograd.grad(out, [x], create_graph=True)
        (gw,) = torch.autograd.grad(gx.square().sum(), [w])
        grads.append((out.detach(), gx.detach(), gw))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_r1_through_the_augmentation_on_gpu():
    # The failure this guards against: CUDA grid_sample has no double backward in torch 2.11.
    x = (torch.rand([2, 3, 3, 32, 32], device="cuda") * 2 - 1).requires_grad_(True)
    w = torch.randn([4, 3, 3, 3], device="cuda", requires_grad=True)
    y = AugmentPipe("bgc", p=1.0).cuda()(x)
    (grad,) = torch.autograd.grad(torch.nn.functional.conv2d(y.flatten(0, 1), w).square().sum(), [x],
                                  create_graph=True)
    grad.square().sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
