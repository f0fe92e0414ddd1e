"""Motion for inverted clips and loops: explicit tokens continued by a seed, and seamless periodic motion."""

import pytest
import torch

from core.motion import Motion, MotionError
from core.noise import token_noise


def _codes(G, times, motion):
    with torch.no_grad():
        return G.synthesis.motion_encoder(torch.as_tensor(times, dtype=torch.float64), motion)


def test_explicit_tokens_continue_with_the_seed(G):
    cfg = G.synthesis.motion_encoder.cfg
    L = cfg.tokens_per_code + 2  # enough for the first ~2 codes
    noise = token_noise(torch.tensor(9), torch.arange(L), cfg.z_dim)[None]  # [1, L, z_dim]: seed 9's own
    times = [[0.0, 3.5, 40.0, 200.0]]  # inside the explicit tokens, then far past them
    hybrid = _codes(G, times, Motion.from_noise(noise, continue_seeds=[9]))
    assert torch.equal(hybrid, _codes(G, times, Motion.from_seeds([9])))  # the join is invisible
    other = _codes(G, times, Motion.from_noise(noise + 1.0, continue_seeds=[9]))
    assert not torch.allclose(other[:1], hybrid[:1])  # early codes come from the explicit tokens
    assert torch.equal(other[-1], hybrid[-1])  # ... late codes from the seed alone
    with pytest.raises(MotionError, match="explicit motion noise has"):
        _codes(G, [[200.0]], Motion.from_noise(noise))  # no seed: the tokens end
    assert len(Motion.from_noise(noise, continue_seeds=[9]).repeat(3)) == 3


def test_loop_is_periodic_seamless_and_keeps_its_own_motion(G):
    period, blend = 40.0, 12.0
    loop = Motion.from_seeds([3], loop=(period, blend))
    free = Motion.from_seeds([3])
    t = torch.arange(0, 2 * period, 0.5, dtype=torch.float64)[None]
    v = _codes(G, t, loop)
    half = t.shape[1] // 2
    assert torch.allclose(v[:half], v[half:], atol=1e-5)  # period P
    own = t[0] >= blend
    assert torch.allclose(v[:half][own[:half]], _codes(G, t[:, :half], free)[own[:half]], atol=1e-5)
    # The seam: the step from the period's last sample to frame P is like any other step.
    steps = (v[1:half + 1] - v[:half]).norm(dim=1)
    assert steps[half - 1] <= 1.5 * steps.median()
    # Frames are periodic too (through the synthesis network).
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0))).detach()
    with torch.no_grad():
        f = G.synthesis(ws, torch.tensor([[1.0, 1.0 + period]], dtype=torch.float64), loop)[0]
    assert torch.allclose(f[0], f[1], atol=1e-5)
    with pytest.raises(MotionError, match="a loop is"):
        Motion.from_seeds([3], loop=(10.0, 20.0))
