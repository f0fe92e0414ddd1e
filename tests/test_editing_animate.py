"""Animation of a latent through core.render (motion / content variations, offsets, fps) and the editing CLI."""

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from editing.animate import AnimationError, Timeline, content_variations, motion_variations
from editing.styleclip import style_layers


def _ws(G, seed=0):
    with torch.no_grad():
        return G.mapping(torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float())


def _frames(path):
    with imageio.get_reader(path) as r:
        return np.stack([f[..., :3] for f in r])


def test_motion_variations_keep_content_and_resample_motion(G, tmp_path):
    ws = _ws(G)
    tl = Timeline(t_offset=5.5, duration=0.5, fps=10)
    progress = []
    path = motion_variations(G, ws, [1, 2, 3], tmp_path / "m.gif", timeline=tl,
                             callback=lambda d, t: progress.append((d, t)))
    frames = _frames(path)
    assert frames.shape == (5, 16, 48, 3) and progress[-1] == (5, 5)
    # The first frame is G at t = 5.5 with each motion seed, tile by tile (GIF quantizes colours).
    with torch.no_grad():
        ref = G.synthesis(ws.repeat(3, 1, 1), torch.full([3, 1], 5.5, dtype=torch.float64), [1, 2, 3])[:, 0]
    ref = ((ref.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()  # [3, H, W, 3]
    tiles = frames[0].reshape(16, 3, 16, 3).transpose(1, 0, 2, 3).astype(float)
    assert np.abs(tiles - ref).mean() < 12
    assert np.abs(tiles[0] - tiles[1]).mean() > 0 or np.abs(tiles[1] - tiles[2]).mean() > 0
    with pytest.raises(AnimationError):
        motion_variations(G, ws.repeat(2, 1, 1), [1], tmp_path / "x.gif")


def test_style_offsets_reach_every_frame(G, tmp_path):
    ws = _ws(G)
    name, module = style_layers(G)[0]
    c = module(ws[:1, 0]).shape[-1]
    tl = Timeline(duration=0.2, fps=10)
    plain = _frames(motion_variations(G, ws, [4], tmp_path / "a.mp4", timeline=tl))
    edited = _frames(motion_variations(G, ws, [4], tmp_path / "b.mp4", timeline=tl,
                                       offsets={name: torch.full([c], 1.0)}))
    assert plain.shape == edited.shape == (2, 16, 16, 3)
    assert all(np.abs(plain[i].astype(int) - edited[i].astype(int)).mean() > 1 for i in range(2))


def test_content_variations_keep_motion(G, tmp_path):
    ws = _ws(G)
    path = content_variations(G, 3, [10, 11], tmp_path / "c.mp4", ws=ws, timeline=Timeline(duration=0.3, fps=10))
    frames = _frames(path)
    assert frames.shape == (3, 16, 48, 3)
    # Higher fps samples the same motion more densely: twice the frames for the same duration.
    dense = content_variations(G, 3, [10], tmp_path / "d.gif", timeline=Timeline(duration=0.3, fps=20))
    assert _frames(dense).shape[0] == 6
    with pytest.raises(AnimationError):
        content_variations(G, 3, [], tmp_path / "e.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "d.gif"]  # no temp files left


def test_editing_cli_global_and_video(G, tmp_path, monkeypatch, capsys):
    import editing.clip_weights as cw
    from core.checkpoint import save_checkpoint
    from editing.__main__ import main
    from editing.testing import tiny_clip
    from projection.latent import Latent, load_latent, save_latent

    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, {"G_ema": G}, G.cfg)
    lat = save_latent(tmp_path / "lat.npz", Latent(ws=_ws(G).repeat(1, 1, 1), motion_seed=2, t=1.0,
                                                   checkpoint="tiny.safetensors"))
    monkeypatch.setattr(cw, "load_clip", lambda **kw: tiny_clip())
    out = tmp_path / "edited.npz"
    rc = main([str(lat), "--prompt", "a smiling face", "--checkpoint", str(ckpt), "--method", "global",
               "--alpha", "2", "--beta", "0", "--directions-images", "2", "--out", str(out),
               "--video", str(tmp_path / "v.gif"),
               "--motion-seeds", "1,2", "--seconds", "0.2", "--fps", "10"])
    assert rc == 0, capsys.readouterr().err
    edited = load_latent(out)
    assert edited.style_offsets and edited.motion_seed == 2 and edited.t == 1.0
    assert (tmp_path / "edited.png").is_file() and _frames(tmp_path / "v.gif").shape == (2, 16, 32, 3)
    assert "CLIP similarity" in capsys.readouterr().out
    rc = main([str(lat), "--prompt", "x", "--checkpoint", str(ckpt), "--steps", "2", "--out", str(tmp_path / "o.npz")])
    assert rc == 0 and load_latent(tmp_path / "o.npz").style_offsets == {}
    monkeypatch.setattr(cw, "load_clip", lambda **kw: (_ for _ in ()).throw(cw.ClipWeightsError("needs CLIP")))
    assert main([str(lat), "--prompt", "x", "--checkpoint", str(ckpt)]) == 2
    assert "needs CLIP" in capsys.readouterr().err
