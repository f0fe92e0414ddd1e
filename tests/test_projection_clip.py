"""Reading real clips for inversion: every format with its frame times, and a clear refusal for bad input."""

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from projection.video import ClipError, read_clip
from projection.video.clip import MAX_SECONDS


def _frames(n, res=24, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (res, res, 3), dtype=np.uint8) for _ in range(n)]


def test_mp4_frames_and_times_at_the_models_rate(tmp_path):
    path = tmp_path / "c.mp4"
    imageio.mimwrite(path, _frames(10, res=32), fps=50, macro_block_size=1)
    clip = read_clip(path, 16, max_frames=6, native_fps=25.0)
    assert clip.frames.shape == (6, 16, 16, 3) and clip.fps == pytest.approx(50)
    np.testing.assert_allclose(clip.times, np.arange(6) * 0.5, atol=1e-6)  # 50 fps clip, 25 fps model
    assert any("reduced from 32x32" in n for n in clip.notes)


def test_strip_folder_and_gif(tmp_path):
    frames = _frames(5, res=16)
    Image.fromarray(np.concatenate(frames, axis=1)).save(tmp_path / "strip.png")
    strip = read_clip(tmp_path / "strip.png", 16, max_frames=None)
    assert strip.frames.shape == (5, 16, 16, 3) and np.array_equal(strip.frames[3], frames[3])
    np.testing.assert_array_equal(strip.times, np.arange(5))
    (tmp_path / "f").mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "f" / f"{i:03d}.png")
    folder = read_clip(tmp_path / "f", 16, max_frames=4, strip_fps=12.5)
    assert np.array_equal(folder.frames, strip.frames[:4]) and list(folder.times) == [0, 2, 4, 6]
    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(tmp_path / "v.gif", save_all=True, append_images=imgs[1:], duration=[40, 40, 120, 40, 40])
    gif = read_clip(tmp_path / "v.gif", 16, max_frames=None)
    np.testing.assert_allclose(gif.times, [0, 1, 2, 5, 6])  # the long frame keeps its time
    assert any("variable frame rate" in n for n in gif.notes)


def test_bad_clips_are_refused_with_their_reason(tmp_path):
    (tmp_path / "fake.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ClipError, match="not a video"):
        read_clip(tmp_path / "fake.mp4", 16)
    Image.fromarray(_frames(1)[0]).save(tmp_path / "photo.png")
    with pytest.raises(ClipError, match="single 24x24 image, not a clip"):
        read_clip(tmp_path / "photo.png", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipError, match="no image frames"):
        read_clip(tmp_path / "empty", 16)
    with pytest.raises(ClipError, match="no such file"):
        read_clip(tmp_path / "missing.mp4", 16)
    long = tmp_path / "long.mp4"
    seconds = MAX_SECONDS + 5
    imageio.mimwrite(long, [np.zeros((16, 16, 3), np.uint8)] * int(seconds * 2), fps=2, macro_block_size=1)
    with pytest.raises(ClipError, match=f"the cap is {MAX_SECONDS:.0f} s"):
        read_clip(long, 16)
    one = tmp_path / "one.mp4"
    imageio.mimwrite(one, _frames(1, res=16), fps=25, macro_block_size=1)
    with pytest.raises(ClipError, match="at least 2"):
        read_clip(one, 16)
    frames = _frames(3, res=16)
    Image.fromarray(np.concatenate(frames, axis=1)).save(tmp_path / "strip.png")
    for bad in (-5.0, 0.0, float("nan"), float("inf")):
        with pytest.raises(ClipError, match="must be > 0"):
            read_clip(tmp_path / "strip.png", 16, strip_fps=bad)
