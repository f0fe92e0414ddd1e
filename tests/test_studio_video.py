"""The Video tab's back end on the tiny model: invert (progress, cancel, nothing saved when cancelled), scrub
any t, render slow motion / past the end / looped / with the photo's content; bad clips get messages."""

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from core.latent import load_latent
from studio import tab_animate, tab_video
from studio.inputs import StudioError
from studio.testing import tiny_backend, write_bad_uploads, write_photo
from studio.uploads import UploadError


@pytest.fixture(scope="module")
def be(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SGV_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield tiny_backend(tmp_path_factory.mktemp("studio"))


@pytest.fixture(scope="module")
def clip_file(be, tmp_path_factory):
    """A clip the tiny model renders itself, as an mp4 at 25 fps."""
    G = be.G
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))).detach()
    with torch.no_grad():
        frames = G.synthesis(ws, torch.arange(8, dtype=torch.float64)[None] * 2, [3])[0]
    from projection.photo import to_uint8

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    imageio.mimwrite(path, [to_uint8(f) for f in frames], fps=25, macro_block_size=1)
    return path


@pytest.fixture(scope="module")
def inverted(be, clip_file):
    outs = list(tab_video.invert(be, str(clip_file), max_frames=8, steps=20, fit=True, tune_steps=6,
                                 session="s1"))
    return outs


def test_invert_streams_progress_then_saves_a_clip_latent(be, inverted):
    assert any("Fitting content and motion" in o["status"] for o in inverted[:-1])
    assert any("Fitting the generator" in o["status"] for o in inverted[:-1])
    last = inverted[-1]
    assert last["status"].startswith("Done: 8 frames") and "moves" in last["status"]
    latent = load_latent(last["latent"])
    assert latent.motion_noise is not None and latent.tuned_weights and latent.clip_duration == pytest.approx(8.0)
    frames = imageio.mimread(last["comparison"])
    assert len(frames) == 8 and frames[0].shape[1] == 2 * frames[0].shape[0]  # clip | reconstruction


def test_scrub_and_render_slow_motion_extension_loop_and_photo_content(be, inverted, tmp_path):
    state = inverted[-1]["state"]
    a, b = tab_video.frame_at(be, state, 3.0), tab_video.frame_at(be, state, 300.0)  # inside and far past the end
    assert a.shape == b.shape and not np.array_equal(a, b)
    out = tab_video.render(be, state, fps=25, slowmo=2, extend=0.4, session="s1")
    frames = imageio.mimread(out["video"])
    assert len(frames) == round((8 / 25 * 2 + 0.4) * 25)  # 2x slow motion of 8 frames + 0.4 s more
    half = frames[0].shape[1] // 2
    assert frames[-1][:, :half].max() < 20  # past the clip's end the clip side is black
    loop = imageio.mimread(tab_video.render(be, state, fps=25, slowmo=1, extend=0.32, loop=True)["video"])
    assert np.abs(loop[8][:, half:].astype(int) - loop[0][:, half:].astype(int)).mean() < 3  # period = the clip
    with pytest.raises(StudioError, match="no projected photo yet"):
        tab_video.render(be, state, use_photo=True, photo_state=None)
    photo = write_photo(tmp_path / "p.png")
    photo_state = list(tab_animate.animate(be, str(photo), False, "W+", 5, "0", 0.2, fit=False))[-1]["state"]
    swapped = imageio.mimread(tab_video.render(be, state, use_photo=True, photo_state=photo_state)["video"])
    assert not np.array_equal(swapped[0][:, half:], frames[0][:, half:])
    with pytest.raises(StudioError, match="invert a clip first"):
        tab_video.frame_at(be, None, 1.0)


def test_cancel_saves_nothing(be, clip_file):
    before = set(be.session_dir("s2").iterdir())
    gen = tab_video.invert(be, str(clip_file), max_frames=8, steps=200, fit=False, session="s2")
    next(gen)  # running
    be.cancel("s2")
    outs = list(gen)
    assert outs[-1]["status"].startswith("Cancelled") and set(be.session_dir("s2").iterdir()) == before


def test_bad_clips_get_messages(be, tmp_path):
    bad = write_bad_uploads(tmp_path)
    (tmp_path / "notes.mp4").write_text("not a video")
    cases = [(bad["text_as_jpg"], "not a readable image"), (bad["empty"], "is empty"),
             (tmp_path / "notes.mp4", "not a video"), (write_photo(tmp_path / "still.png"), "not a clip")]
    for path, message in cases:
        with pytest.raises((UploadError, ValueError), match=message):
            list(tab_video.invert(be, str(path), steps=2))
    with pytest.raises(StudioError, match="frames to invert"):
        list(tab_video.invert(be, str(cases[0][0]), max_frames=1e9))
