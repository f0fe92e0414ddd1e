"""Animation of a latent through core.render (motion / content variations, offsets, fps) and the editing CLI.

Videos are written as zips of PNG frames where exact pixels matter and compared with G called directly:
each tile must be the latent it promises, with the motion seed it promises, at the timeline's times.
"""

import re
import zipfile
from contextlib import contextmanager

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from core.generator import z_from_seed
from editing.animate import AnimationError, Timeline, content_variations, motion_variations
from editing.styleclip import style_layers

MOVES = 2.0  # mean |change| (of 255 levels) between consecutive frames that counts as motion; rounding is <= 1


def _ws(G, seed=0):
    with torch.no_grad():
        return G.mapping(torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float())


def _frames(path):
    """uint8 [T, H, W, 3] of an mp4 / GIF / zip of PNG frames."""
    if str(path).endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            return np.stack([imageio.imread(z.read(n))[..., :3] for n in sorted(z.namelist())])
    with imageio.get_reader(path) as r:
        return np.stack([f[..., :3] for f in r])


@contextmanager
def _biases_shifted(G, offsets):
    """Style offsets applied the independent way: the same shift of each affine layer's bias."""
    modules = dict(style_layers(G, include_torgb=True))
    with torch.no_grad():
        for name, off in (offsets or {}).items():
            modules[name].bias += off / modules[name].bias_gain
    try:
        yield
    finally:
        with torch.no_grad():
            for name, off in (offsets or {}).items():
                modules[name].bias -= off / modules[name].bias_gain


def _expected(G, ws, motion_seeds, times, offsets=None):
    """What the video must show, from G.synthesis itself: uint8 [T, H, N * W, 3], tiles side by side."""
    with torch.no_grad(), _biases_shifted(G, offsets):
        t = torch.as_tensor(np.asarray(times), dtype=torch.float64)[None].expand(ws.shape[0], -1)
        x = G.synthesis(ws, t, list(motion_seeds))  # [N, T, C, H, W]
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 3, 0, 4, 2)  # [T, H, N, W, C]
    T, H, N, W, C = x.shape
    return x.reshape(T, H, N * W, C).numpy()


def _tiles(frames, n):
    """[T, H, n * W, 3] -> float [n, T, H, W, 3]."""
    T, H, NW, C = frames.shape
    return frames.reshape(T, H, n, NW // n, C).transpose(2, 0, 1, 3, 4).astype(float)


def _max_err(a, b):
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def _assert_moves(tiles):
    for i, tile in enumerate(tiles):
        steps = np.abs(np.diff(tile, axis=0)).mean(axis=(1, 2, 3))
        assert (steps > MOVES).all(), f"tile {i} does not move: consecutive-frame changes {steps}"


def test_motion_variations_keep_content_and_resample_motion(G, tmp_path):
    ws = _ws(G)
    tl = Timeline(t_offset=5.5, duration=0.5, fps=10)  # model times 5.5, 8.0, 10.5, 13.0, 15.5
    progress = []
    path = motion_variations(G, ws, [1, 2, 3], tmp_path / "m.zip", timeline=tl,
                             callback=lambda d, t: progress.append((d, t)))
    frames = _frames(path)
    assert progress == [(i, 5) for i in range(1, 6)]
    # Every tile of every frame: this latent (content kept), its own motion seed, at the timeline's times.
    expected = _expected(G, ws.repeat(3, 1, 1), [1, 2, 3], tl.times())
    assert frames.shape == expected.shape == (5, 16, 48, 3)
    assert _max_err(frames, expected) <= 1
    tiles = _tiles(frames, 3)
    _assert_moves(tiles)  # an animation, not a still
    for a, b in ((0, 1), (0, 2), (1, 2)):  # the motion is resampled: each seed moves differently
        assert np.abs(tiles[a] - tiles[b]).mean() > 10, (a, b)
    # The same animation as a GIF (colour quantization only).
    gif = _frames(motion_variations(G, ws, [1, 2, 3], tmp_path / "m.gif", timeline=tl))
    assert gif.shape == frames.shape and np.abs(gif.astype(float) - frames).mean() < 12
    with pytest.raises(AnimationError):
        motion_variations(G, ws.repeat(2, 1, 1), [1], tmp_path / "x.gif")
    with pytest.raises(AnimationError):
        motion_variations(G, ws, [], tmp_path / "x.gif")


def test_style_offsets_reach_every_frame(G, tmp_path):
    ws = _ws(G)
    name, module = style_layers(G)[0]
    offsets = {name: torch.full([module(ws[:1, 0]).shape[-1]], 1.0)}
    tl = Timeline(duration=0.5, fps=10)
    edited = _frames(motion_variations(G, ws, [4], tmp_path / "b.zip", timeline=tl, offsets=offsets))
    plain = _frames(motion_variations(G, ws, [4], tmp_path / "a.zip", timeline=tl))
    assert edited.shape == plain.shape == (5, 16, 16, 3)
    # Each frame is the edited model's frame; rendered afterwards without offsets, the plain model's (the
    # hooks are gone after the render).
    assert _max_err(edited, _expected(G, ws, [4], tl.times(), offsets)) <= 1
    assert _max_err(plain, _expected(G, ws, [4], tl.times())) <= 1
    per_frame = np.abs(edited.astype(float) - plain).mean(axis=(1, 2, 3))
    assert (per_frame > 5).all(), per_frame  # the edit is visible in every frame, not only the first
    _assert_moves(_tiles(edited, 1))


def test_content_variations_keep_motion(G, tmp_path):
    ws = _ws(G)
    tl = Timeline(duration=0.3, fps=10)  # model times 0, 2.5, 5
    frames = _frames(content_variations(G, 3, [10, 11], tmp_path / "c.zip", ws=ws, timeline=tl))
    # Tile 0 is the given latent, then the content seeds (truncation 0.7); all three move with motion seed 3.
    with torch.no_grad():
        seeds_ws = G.mapping(z_from_seed([10, 11], G.z_dim), None, truncation_psi=0.7)
    expected = _expected(G, torch.cat([ws, seeds_ws]), [3, 3, 3], tl.times())
    assert frames.shape == expected.shape == (3, 16, 48, 3)
    assert _max_err(frames, expected) <= 1
    tiles = _tiles(frames, 3)
    _assert_moves(tiles)
    for a, b in ((0, 1), (0, 2), (1, 2)):  # the content is resampled
        assert np.abs(tiles[a] - tiles[b]).mean() > 20, (a, b)
    # Higher fps samples the same motion more densely: twice the frames, every other one the same as before.
    dense = _frames(content_variations(G, 3, [10, 11], tmp_path / "d.zip", ws=ws,
                                       timeline=Timeline(duration=0.3, fps=20)))
    assert dense.shape == (6, 16, 48, 3) and _max_err(dense[::2], frames) <= 1
    assert (np.abs(np.diff(dense.astype(float), axis=0)).mean(axis=(1, 2, 3)) > 0).all()  # new in-between frames
    mp4 = _frames(content_variations(G, 3, [10, 11], tmp_path / "c.mp4", ws=ws, timeline=tl))
    assert mp4.shape == frames.shape and np.abs(mp4.astype(float) - frames).mean() < 12
    with pytest.raises(AnimationError):
        content_variations(G, 3, [], tmp_path / "e.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "c.zip", "d.zip"]  # no temp files left


def test_editing_cli_global_and_video(G, tmp_path, monkeypatch, capsys):
    import editing.clip_weights as cw
    from core.checkpoint import save_checkpoint
    from core.latent import Latent, load_latent, save_latent
    from editing.__main__ import main
    from editing.testing import tiny_clip

    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SGV_CLIP_WEIGHTS", raising=False)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, {"G_ema": G}, G.cfg)
    ws = _ws(G)
    lat = save_latent(tmp_path / "lat.npz", Latent(ws=ws, motion_seed=2, t=1.0, checkpoint="tiny.safetensors"))
    monkeypatch.setattr(cw, "load_clip", lambda **kw: tiny_clip())  # the public resolver, stood in for
    out = tmp_path / "edited.npz"
    rc = main([str(lat), "--prompt", "a smiling face", "--checkpoint", str(ckpt), "--method", "global",
               "--alpha", "2", "--beta", "0", "--directions-images", "2", "--out", str(out),
               "--video", str(tmp_path / "v.gif"),
               "--motion-seeds", "1,2", "--seconds", "0.2", "--fps", "10"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    m = re.search(r"CLIP similarity to the prompt (-?[\d.]+) -> (-?[\d.]+)", printed)
    assert m and f"wrote {out}" in printed, printed
    # A global edit keeps the latent and adds style offsets, which the saved latent carries.
    edited = load_latent(out)
    assert torch.equal(edited.ws, ws) and edited.motion_seed == 2 and edited.t == 1.0
    assert edited.style_offsets and any(float(v.abs().max()) > 0 for v in edited.style_offsets.values())
    # The PNG is the edited frame (motion seed 2, t = 1.0), visibly not the unedited one.
    png = imageio.imread(tmp_path / "edited.png")[..., :3]
    edited_frame = _expected(G, ws, [2], [1.0], edited.style_offsets)[0]
    assert _max_err(png, edited_frame) <= 1
    assert np.abs(png.astype(float) - _expected(G, ws, [2], [1.0])[0]).mean() > 2
    # The video animates the edited latent with motion seeds 1 and 2 from t = 1.0: nearer the edited
    # frames than the unedited ones by a clear margin (GIF colours are quantized).
    video = _frames(tmp_path / "v.gif").astype(float)
    times = Timeline(t_offset=1.0, duration=0.2, fps=10).times()
    with_edit = np.abs(video - _expected(G, ws.repeat(2, 1, 1), [1, 2], times, edited.style_offsets)).mean()
    without = np.abs(video - _expected(G, ws.repeat(2, 1, 1), [1, 2], times)).mean()
    assert video.shape == (2, 16, 32, 3) and with_edit < 12 and without > with_edit + 10, (with_edit, without)
    # Latent optimization moves the latent itself and adds no offsets.
    rc = main([str(lat), "--prompt", "x", "--checkpoint", str(ckpt), "--steps", "2", "--out", str(tmp_path / "o.npz")])
    assert rc == 0
    optimized = load_latent(tmp_path / "o.npz")
    assert optimized.style_offsets == {} and (optimized.ws - ws).abs().max() > 1e-4
    capsys.readouterr()
    # --offline with no CLIP weights anywhere: the real resolver's message, exit code 2, no download.
    monkeypatch.undo()
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SGV_CLIP_WEIGHTS", raising=False)
    assert main([str(lat), "--prompt", "x", "--checkpoint", str(ckpt), "--offline"]) == 2
    err = capsys.readouterr().err
    assert "Text editing needs CLIP weights" in err and "downloads disabled" in err
