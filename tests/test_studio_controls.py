"""Content controls: SeFa directions (cached == fresh), direction by example, direction files (studio and
core.generate --direction), style mixing and truncation cutoff; each one moves the scrubbed frame."""

import numpy as np
import pytest
import torch

from core import directions as D
from core.generate import main as generate_main
from editing.sefa import factorize, sefa_directions
from studio import tab_generate
from studio.controls import Controls, parse
from studio.controls import save as save_direction
from studio.inputs import StudioError
from studio.testing import tiny_backend


@pytest.fixture(scope="module")
def be(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SGV_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield tiny_backend(tmp_path_factory.mktemp("studio"))


def _frame(be, controls=None, seed=0):
    return tab_generate.scrub(be, seed, 0, 0.7, 0.5, 0, 1, controls).astype(np.float64)


def test_sefa_directions_are_eigenvectors_and_the_cache_equals_a_fresh_computation(be, monkeypatch, tmp_path):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path))
    G = be.G
    vectors, values = factorize(G, "all", 4)
    assert np.all(np.diff(values) <= 0) and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert abs(vectors[0] @ vectors[1]) < 1e-6  # orthogonal
    fresh, _ = sefa_directions(G, "coarse", 4, use_cache=False)
    first, _ = sefa_directions(G, "coarse", 4)  # computes and writes the cache
    assert list((tmp_path / "sefa").glob("*.npz"))
    cached, _ = sefa_directions(G, "coarse", 4)  # reads it
    for a, b, c in zip(fresh, first, cached):
        assert torch.equal(a.delta, b.delta) and torch.equal(a.delta, c.delta)
    coarse = D.group_indices(G, "coarse")
    rows = fresh[0].delta.abs().sum(1).nonzero().flatten().tolist()
    assert rows == coarse and coarse == [i for i, r in enumerate(D.ws_layers(G)) if r <= 8]


def test_every_control_moves_the_frame(be):
    base = _frame(be)
    n = be.G.num_ws
    cases = {
        "sefa": parse("all", (3.0, 0, 0, 0), num_ws=n),
        "sefa coarse": parse("coarse", (0, 3.0, 0, 0), num_ws=n),
        "example": parse(ex_a=5, ex_b=0, ex_strength=1.0, num_ws=n),
        "mixing": parse(mix_seed=7, mix_group="coarse", num_ws=n),
        "cutoff": parse(cutoff=1, num_ws=n),
    }
    for name, controls in cases.items():
        assert controls.active, name
        assert np.abs(_frame(be, controls) - base).mean() > 0.5, name
    assert np.array_equal(_frame(be, parse(num_ws=n)), base)  # all neutral: the plain frame


def test_a_direction_changes_the_frame_more_with_more_strength(be):
    n = be.G.num_ws
    base = _frame(be)
    change = [np.abs(_frame(be, parse("all", (a, 0, 0, 0), num_ws=n)) - base).mean() for a in (0.5, 1.5, 3.0)]
    assert change[0] < change[1] < change[2]


def test_example_at_strength_one_turns_b_into_a(be):
    n = be.G.num_ws
    ws = tab_generate.controlled_ws(be, 3, 1.0, parse(ex_a=5, ex_b=3, ex_strength=1.0, num_ws=n))
    assert torch.allclose(ws, be.ws_for(5, 1.0), atol=1e-5)


def test_saved_direction_applies_in_the_studio_and_from_the_cli(be, tmp_path):
    n = be.G.num_ws
    controls = parse("all", (0, 0, 0, 0), num_ws=n)
    path = save_direction(be, "SeFa #1", controls, "smile")
    d = D.load_direction(path)
    assert d.name == "smile" and torch.equal(d.delta, be.directions("all", 4)[1].delta)
    loaded = parse(files=((str(path), 2.0),), num_ws=n)
    by_slider = parse("all", (0, 2.0, 0, 0), num_ws=n)
    assert np.array_equal(_frame(be, loaded), _frame(be, by_slider))
    # the CLI: the same edit on seed 0 renders the same first frame as the studio's ws
    ckpt = be.info.source
    out = tmp_path / "d.zip"
    assert generate_main(["--checkpoint", ckpt, "--seeds", "0", "--motion-seeds", "0", "--truncation", "0.7",
                          "--direction", f"{path}:2", "--duration", "0.04", "--out", str(out)]) == 0
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(out) as z:
        first = np.asarray(Image.open(z.open(sorted(z.namelist())[0])).convert("RGB"))
    ws = tab_generate.controlled_ws(be, 0, 0.7, by_slider)
    np.testing.assert_array_equal(first, be.frame(0, 0, 0.7, 0.0, ws=ws))
    assert generate_main(["--checkpoint", ckpt, "--direction", str(tmp_path / "missing.npz"), "--out",
                          str(tmp_path / "x.zip")]) == 2
    with pytest.raises(StudioError, match="example strength"):
        save_direction(be, "example", Controls(), "x")
    with pytest.raises(StudioError, match="layer group"):
        parse("sideways", num_ws=n)


def test_keyframes_pass_through_each_keyframe_and_rerender_identically_from_the_cli(be, tmp_path):
    import imageio.v2 as imageio

    from studio import keyframes as kf_ui

    n = be.G.num_ws
    k = kf_ui.add(be, None, 0.0, 0, 0.7, None, easing="ease-in-out")
    k = kf_ui.add(be, k, 1.0, 4, 0.7, parse("all", (2.0, 0, 0, 0), num_ws=n), easing="linear")
    assert kf_ui.rows(k) == [[0.0, "ease-in-out"], [1.0, "linear"]]
    k = kf_ui.configure(be, k, 3, 10, 1.2, 1, 0)
    # at each keyframe's second the frame is exactly that keyframe's content
    for second, seed, controls in ((0.0, 0, None), (1.0, 4, parse("all", (2.0, 0, 0, 0), num_ws=n))):
        want = tab_generate.scrub(be, seed, 3, 0.7, second, 0, 1, controls)
        assert np.array_equal(kf_ui.frame(be, k, second, 3, 0, 1), want)
    middle = kf_ui.frame(be, k, 0.5, 3, 0, 1)
    assert not np.array_equal(middle, kf_ui.frame(be, k, 0.0, 3, 0, 1))
    # ease-in-out: halfway in time is halfway in W (smoothstep(0.5) = 0.5), a quarter is less than a quarter
    w0, w1, wq = k.ws[0], k.ws[1], k.ws_at(np.array([0.25]))[0]
    assert torch.allclose(k.ws_at(np.array([0.5]))[0], (w0 + w1) / 2, atol=1e-6)
    assert ((wq - w0).norm() / (w1 - w0).norm()) == pytest.approx(0.15625, abs=1e-4)  # smoothstep(0.25)
    studio_video = kf_ui.render(be, k, "mp4")
    project = kf_ui.save(be, k)
    cli_video = tmp_path / "cli.mp4"
    assert generate_main(["--checkpoint", be.info.source, "--keyframes", str(project), "--out", str(cli_video)]) == 0
    a, b = imageio.mimread(studio_video), imageio.mimread(cli_video)
    assert len(a) == len(b) == 12 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert kf_ui.load(be, project).seconds == [0.0, 1.0]
    with pytest.raises(StudioError, match="add a keyframe first"):
        kf_ui.configure(be, None, 0, 25, 1, 1, 0)
    # a project of another model (other ws shape) is refused by both, with one message
    from dataclasses import replace as dc_replace

    from core.keyframes import save_keyframes

    other = save_keyframes(tmp_path / "other.npz", dc_replace(k, ws=[w[:, :-1] for w in k.ws]))
    with pytest.raises(StudioError, match="made with another model"):
        kf_ui.load(be, other)
    assert generate_main(["--checkpoint", be.info.source, "--keyframes", str(other), "--out",
                          str(tmp_path / "x.mp4")]) == 2
    assert not (tmp_path / "x.mp4").exists()


def test_rendered_loop_is_seamless(be):
    """The loop's first frame is the free motion's frame one step after the loop's last: the seam is an
    ordinary step of the motion (the motion's own frames are kept outside the blend)."""
    import zipfile

    from PIL import Image

    def frames(loop, seconds):
        _, files = tab_generate.render(be, 0, 2, 0.7, 0, 25, 1, seconds, ["png"], loop=loop)
        with zipfile.ZipFile(files[0]) as z:
            return np.stack([np.asarray(Image.open(z.open(n)).convert("RGB")) for n in sorted(z.namelist())])

    looped, free = frames(True, 2.0), frames(False, 2.04)
    assert len(looped) == 50 and len(free) == 51
    assert np.array_equal(looped[0], free[50])  # frame 0 shows t = P: where the last frame leads
    assert np.array_equal(looped[20:], free[20:50])  # after the blend (8 frames here) the motion's own frames
    assert not np.array_equal(looped[0], free[0])


def test_motion_variations_share_content_and_differ_in_motion(be):
    import imageio.v2 as imageio

    n = be.G.num_ws
    path = tab_generate.variations(be, 0, 0.7, "0,5", 0, 25, 1, 0.4, parse("all", (2.0, 0, 0, 0), num_ws=n))
    frames = imageio.mimread(path)
    res = be.G.img_resolution
    assert len(frames) == 10 and frames[0].shape[1] == 2 * res
    left, right = (np.stack([f[:, k * res:(k + 1) * res] for f in frames]).astype(int) for k in (0, 1))
    assert np.abs(left - right).mean() > 1  # two motions ...
    ws = tab_generate.controlled_ws(be, 0, 0.7, parse("all", (2.0, 0, 0, 0), num_ws=n))
    want = be.frame(0, 0, 0.7, 0.0, ws=ws)
    assert np.abs(left[0] - want.astype(int)).mean() < 15  # ... of the controlled content (H.264 loss)


def test_controls_start_from_the_projected_photo_and_its_fitted_generator(be, tmp_path):
    from studio import keyframes as kf_ui
    from studio import tab_animate
    from studio.testing import write_photo

    n = be.G.num_ws
    photo = write_photo(tmp_path / "p.png")
    state = list(tab_animate.animate(be, str(photo), False, "W+", 4, "0", 0.2, fit=True, tune_steps=4))[-1]["state"]
    on_photo = parse(num_ws=n, photo=True)
    ws = torch.as_tensor(state["ws"])
    want = be.frame(0, 0, 1.0, 12.5, ws=ws, G=be.generator_for(state))  # the fitted generator, not the base
    got = tab_generate.scrub(be, 0, 0, 0.7, 0.5, 0, 1, on_photo, state)
    assert np.array_equal(got, tab_generate.display(want))
    assert not np.array_equal(got, tab_generate.display(be.frame(0, 0, 1.0, 12.5, ws=ws)))
    moved = tab_generate.scrub(be, 0, 0, 0.7, 0.5, 0, 1, parse("all", (3.0, 0, 0, 0), num_ws=n, photo=True), state)
    assert np.abs(moved.astype(int) - got.astype(int)).mean() > 0.5
    with pytest.raises(StudioError, match="no projected photo"):
        tab_generate.scrub(be, 0, 0, 0.7, 0.5, 0, 1, on_photo, None)
    with pytest.raises(StudioError, match="fitted generator of its own"):
        kf_ui.add(be, None, 0.0, 0, 0.7, on_photo, state)
    # the exported latent references the fitted weights, so it re-renders with them
    from core.latent import latent_generator, load_latent

    _, files = tab_generate.render(be, 0, 0, 0.7, 0, 10, 1, 0.2, ["npz"], "s1", controls=on_photo, photo_state=state)
    latent = load_latent(files[0])
    assert latent.tuned_weights and np.array_equal(
        be.frame(0, 0, 1.0, 12.5, ws=latent.ws, G=latent_generator(latent, be.G)), want)


def test_direction_by_example_from_the_photo_minus_a_seed(be, tmp_path):
    from studio import tab_animate
    from studio.testing import write_photo

    n = be.G.num_ws
    state = list(tab_animate.animate(be, str(write_photo(tmp_path / "q.png")), False, "W+", 3, "0", 0.2,
                                     fit=False))[-1]["state"]
    controls = parse(ex_b=3, ex_strength=1.0, num_ws=n, example_photo=True)
    ws = tab_generate.controlled_ws(be, 3, 1.0, controls, state)  # seed 3 + (photo - seed 3) = the photo
    assert torch.allclose(ws, torch.as_tensor(state["ws"]), atol=1e-5)
    path = save_direction(be, "example", controls, "towards-photo", photo_state=state)
    assert D.load_direction(path).source == "ws(the photo) - ws(seed 3)"
