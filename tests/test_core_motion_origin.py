"""Motion origin: several motions of one latent that all pass through one frame (a projected photo's)."""

import pytest
import torch

from core.motion import Motion, MotionError


def _frames(G, ws, times, motion):
    with torch.no_grad():
        return G.synthesis(ws.expand(len(motion), -1, -1), torch.as_tensor(times, dtype=torch.float64), motion)


def test_every_motion_passes_through_the_origin_frame(G):
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(2))).detach()
    t0 = 7.25
    photo = _frames(G, ws, [[t0]], Motion.from_seeds([5]))[0, 0]  # seed 5's frame at t0
    free = _frames(G, ws, [[t0, t0 + 20.0]], Motion.from_seeds([1, 2, 3]))
    anchored = _frames(G, ws, [[t0, t0 + 20.0]], Motion.from_seeds([1, 2, 3], origin=(5, t0)))
    assert anchored.shape == free.shape == (3, 2, G.img_channels, G.img_resolution, G.img_resolution)
    for k in range(3):
        assert torch.allclose(anchored[k, 0], photo, atol=1e-5)  # all start at the photo's frame ...
        assert (free[k, 0] - photo).abs().max() > 1e-2  # ... where their own poses differ
    # ... and then move as different motions: the three seeds differ 20 frames later
    assert min((anchored[i, 1] - anchored[j, 1]).abs().max() for i, j in ((0, 1), (0, 2), (1, 2))) > 1e-3
    assert (anchored[0, 1] - anchored[0, 0]).abs().max() > 1e-3
    # the origin's own seed is unchanged by its origin
    same = _frames(G, ws, [[t0, t0 + 20.0]], Motion.from_seeds([5], origin=(5, t0)))
    assert torch.allclose(same, _frames(G, ws, [[t0, t0 + 20.0]], Motion.from_seeds([5])), atol=1e-5)


def test_anchored_motion_is_continuous_in_t(G):
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3))).detach()
    motion = Motion.from_seeds([1], origin=(4, 0.0))
    times = [[30.0, 30.001, 30.5]]
    f = _frames(G, ws, times, motion)[0]
    assert (f[1] - f[0]).abs().max() < 0.02 * max((f[2] - f[0]).abs().max(), 1e-3) + 1e-4
    # repeat() (one latent -> several videos) keeps the origin
    assert Motion.from_seeds([1], origin=(4, 0.0)).repeat(3).origin == (4, 0.0)


def test_bad_origins_are_refused():
    for bad in ((-1, 0.0), (1, -2.0), (1, float("nan"))):
        with pytest.raises(MotionError):
            Motion.from_seeds([1], origin=bad)


def test_motion_variations_start_at_the_latents_frame(G, tmp_path):
    import imageio.v2 as imageio

    from core.render import Timeline
    from editing.animate import motion_variations

    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(4))).detach()
    path = motion_variations(G, ws, [1, 2], tmp_path / "v.gif", timeline=Timeline(duration=0.2, fps=10),
                             origin=(9, 0.0))
    first = imageio.mimread(path)[0][..., :3].astype(int)
    photo = _frames(G, ws, [[0.0]], Motion.from_seeds([9]))[0, 0]
    expected = ((photo.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy().astype(int)
    r = G.img_resolution
    assert abs(first[:, :r] - expected).max() <= 2 and abs(first[:, r:2 * r] - expected).max() <= 2
