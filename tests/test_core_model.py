import pytest
import torch

from core.config import preset
from core.discriminator import Discriminator
from core.generator import Generator, z_from_seed
from core.motion import Motion, MotionError


def test_generator_shapes_and_range(tiny_G):
    z = torch.randn(3, tiny_G.z_dim)
    ws = tiny_G.mapping(z)
    assert ws.shape == (3, tiny_G.num_ws, tiny_G.w_dim)
    frames = tiny_G.synthesis(ws, torch.tensor([[0.0, 1.5, 7.0]] * 3), [1, 2, 3])
    assert frames.shape == (3, 3, 3, 16, 16) and frames.dtype == torch.float32
    assert torch.isfinite(frames).all()


def test_generator_is_deterministic_for_fixed_seeds(tiny_G):
    a = tiny_G.render(seed=5, t=[0, 2.5, 40])
    b = tiny_G.render(seed=5, t=[0, 2.5, 40])
    c = tiny_G.render(seed=6, t=[0, 2.5, 40])
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_frame_does_not_depend_on_other_requested_times(tiny_G):
    z = z_from_seed(1, tiny_G.z_dim)
    alone = tiny_G(z, [[13.25]], [7])
    together = tiny_G(z, [[0.0, 13.25, 500.0]], [7])
    torch.testing.assert_close(alone[0, 0], together[0, 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("n,num_t", [(1, 1), (1, 4), (3, 2)])
def test_modconv_layouts_give_the_same_frames(tiny_G, n, num_t):
    """Grouped per frame, shared conv and per video (frame-major) are one function, gradients included."""
    ws = tiny_G.mapping(torch.randn(n, tiny_G.z_dim)).detach().requires_grad_(True)
    t = torch.tensor([[0.0, 2.5, 40.0, 41.25][:num_t]] * n, dtype=torch.float64)
    seeds = list(range(10, 10 + n))
    outs = [tiny_G.synthesis(ws, t, seeds, **kw) for kw in
            (dict(fused_modconv=True), dict(fused_modconv=False), dict(per_video=True))]
    grads = [torch.autograd.grad(o.square().sum(), ws)[0] for o in outs]
    assert outs[2].shape == (n, num_t, 3, 16, 16)
    for o, g in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(o, outs[0], atol=2e-5, rtol=0)
        torch.testing.assert_close(g, grads[0], atol=1e-4, rtol=1e-4)


def test_channels_last_changes_nothing_but_the_speed(tiny_G):
    ws = tiny_G.mapping(torch.randn(2, tiny_G.z_dim))
    t = torch.tensor([[0.0, 1.5, 3.0]] * 2)
    nchw = tiny_G.synthesis(ws, t, [1, 2], channels_last=False)
    nhwc = tiny_G.synthesis(ws, t, [1, 2], channels_last=True)
    assert nhwc.is_contiguous()
    torch.testing.assert_close(nhwc, nchw, atol=1e-5, rtol=1e-5)


def test_fused_demodulation_switch_changes_nothing_on_cpu(tiny_G):
    from core.ops import options

    ws = tiny_G.mapping(torch.randn(2, tiny_G.z_dim)).detach().requires_grad_(True)
    t = torch.tensor([[0.0, 5.5]] * 2)
    outs = []
    for fused in (True, False):
        with options.use(fuse_bias_act=fused):
            frames = tiny_G.synthesis(ws, t, [3, 4], fused_modconv=False)
        outs.append((frames, torch.autograd.grad(frames.square().sum(), ws)[0]))
    (frames_a, grad_a), (frames_b, grad_b) = outs  # equal up to fp32 summation order
    torch.testing.assert_close(frames_a, frames_b, atol=1e-5, rtol=1e-5)
    assert not torch.equal(frames_a, frames_b), "the switch must reach the synthesis layers"
    torch.testing.assert_close(grad_a, grad_b, atol=1e-4, rtol=1e-4)


def test_explicit_noise_and_truncation(tiny_G):
    m = tiny_G.cfg.motion
    noise = torch.randn(2, 40, m.z_dim)
    z = torch.randn(2, tiny_G.z_dim)
    out = tiny_G(z, [0.0, 3.0], noise)
    assert out.shape[:2] == (2, 2)
    too_far = (40 - m.tokens_per_code) * m.delta_z + 1.0
    with pytest.raises(MotionError, match="tokens"):
        tiny_G(z, [too_far], noise)
    ws_full = tiny_G.mapping(z)
    ws_zero = tiny_G.mapping(z, truncation_psi=0.0)
    torch.testing.assert_close(ws_zero, tiny_G.mapping.w_avg.expand_as(ws_zero))
    assert not torch.allclose(ws_full, ws_zero)


def test_motion_codes_are_continuous_across_token_boundaries(tiny_G):
    enc = tiny_G.synthesis.motion_encoder
    dz = tiny_G.cfg.motion.delta_z
    t = torch.arange(0, 6 * dz, 0.05, dtype=torch.float64)
    v = enc(t[None], Motion.from_seeds([3]))  # [T, v_dim]
    steps = (v[1:] - v[:-1]).norm(dim=1)
    seg = torch.div(t, dz, rounding_mode="floor")
    boundary = seg[1:] != seg[:-1]  # steps that cross an anchor t = k * delta_z
    assert boundary.sum() >= 5
    # The largest step across an anchor is no larger than the largest step inside a segment.
    assert steps[boundary].max() <= steps[~boundary].max() * 1.05


def test_far_frame_equals_frame_from_local_tokens_only(tiny_G):
    m = tiny_G.cfg.motion
    t = 10**6 + 0.375
    z = z_from_seed(4, tiny_G.z_dim)
    normal = tiny_G(z, [[t]], Motion.from_seeds([11]))
    i = int(t // m.delta_z)
    local = torch.zeros(1, i + m.tokens_per_code + 1, m.z_dim)
    k = torch.arange(i, i + m.tokens_per_code + 1)
    local[0, k] = Motion.from_seeds([11]).tokens(torch.tensor([0]), torch.tensor([i]), len(k), m.z_dim)[0]
    from_local = tiny_G(z, [[t]], Motion.from_noise(local))
    torch.testing.assert_close(normal, from_local, atol=1e-6, rtol=0)
    assert torch.isfinite(normal).all()


def test_far_times_cost_the_same_tokens():
    from core.noise import token_noise

    a = token_noise(torch.tensor(5), torch.tensor([0, 10**9]), 8)
    b = token_noise(torch.tensor(5), torch.tensor([10**9]), 8)
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])


@pytest.mark.parametrize("k", [2, 3, 4])
def test_discriminator_accepts_k_frames_with_gaps(k):
    cfg = preset("tiny").replace(discriminator={"num_frames": k})
    D = Discriminator(cfg)
    img = torch.randn(4, k, 3, 16, 16)
    t = torch.sort(torch.randint(0, 33, (4, k)).float(), dim=1).values
    logits = D(img, t)
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    t2 = t.clone()
    t2[:, -1] += 5
    assert not torch.allclose(D(img, t2), logits), "time gaps must condition D"


def test_one_G_and_D_step_gives_finite_gradients_everywhere(tiny_cfg):
    torch.manual_seed(0)
    G, D = Generator(tiny_cfg).train(), Discriminator(tiny_cfg).train()
    z = torch.randn(2, G.z_dim)
    t = torch.tensor([[0.0, 1.5, 9.0], [2.0, 6.25, 20.0]])
    fake = G(z, t, Motion.random(2))
    loss = torch.nn.functional.softplus(-D(fake, t)).mean() + torch.nn.functional.softplus(
        D(torch.rand(2, 3, 3, 16, 16) * 2 - 1, t)).mean()
    loss.backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
    for name in ["mapping.fc0.weight", "synthesis.motion_encoder.conv.0.weight",
                 "synthesis.b4.input.input.const", "synthesis.b16.torgb.weight"]:
        assert dict(G.named_parameters())[name].grad.abs().sum() > 0, name


def test_256_preset_matches_released_parameter_names_and_count():
    G = Generator(preset("256"))
    sd = G.state_dict()
    assert len(sd) == 115
    assert sum(p.numel() for p in G.parameters()) == 32_105_941
    assert sd["synthesis.b4.conv1.weight"].shape == (512, 1024, 3, 3)
    assert sd["synthesis.b4.conv1.affine.weight"].shape == (1024, 512)
    assert sd["synthesis.motion_encoder.conv.0.weight"].shape == (512, 512, 11)
    assert sd["synthesis.b256.conv0.resample_filter"].shape == (4, 4)
    D = Discriminator(preset("256"))
    assert D.b16.conv0.weight.shape == (512, 768, 3, 3)
    assert D.mapping.embed.weight.shape == (512, 552)
