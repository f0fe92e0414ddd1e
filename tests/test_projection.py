"""Projector on the tiny generator with a tiny LPIPS stand-in: recovery of a generated frame, W / W+, CLI."""

import numpy as np
import pytest
import torch

from core.latent import Latent, LatentFileError, check_compatible, load_latent, save_latent
from projection.photo import to_uint8
from projection.projector import (
    ProjectionError,
    lr_schedule,
    noise_scale,
    project,
    psnr_uint8,
    w_statistics,
)
from projection.testing import TinyLPIPS


def _target(G, seed=1, motion_seed=7):
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float())
        img = G.synthesis(ws, torch.zeros(1, 1), [motion_seed])[:, 0]  # [1, C, H, W]
    return ws, img


def _baseline_psnr(G, img, motion_seed=7):
    w_avg, _ = w_statistics(G, 500)
    with torch.no_grad():
        base = G.synthesis(w_avg.view(1, 1, -1).repeat(1, G.num_ws, 1), torch.zeros(1, 1), [motion_seed])[:, 0]
    return psnr_uint8(to_uint8(base), to_uint8(img))


def _block_means(losses, blocks=5):
    return [float(np.mean(b)) for b in np.array_split(np.asarray(losses), blocks)]


def test_schedules_match_stylegan2_ada():
    assert lr_schedule(0, 100, 0.1) == 0.0  # linear ramp-up starts at zero
    assert lr_schedule(50, 100, 0.1) == pytest.approx(0.1)
    assert lr_schedule(99, 100, 0.1) < 0.01  # cosine ramp-down over the last 25%
    assert noise_scale(0, 100, 2.0) == pytest.approx(2.0 * 0.05)
    assert noise_scale(75, 100, 2.0) == 0.0 and noise_scale(90, 100, 2.0) == 0.0
    assert noise_scale(30, 100, 2.0) == pytest.approx(2.0 * 0.05 * (1 - 0.3 / 0.75) ** 2)


def test_projection_w_recovers_a_generated_frame(G):
    ws_true, img = _target(G)
    steps_seen, previews = [], []

    def cb(s):
        steps_seen.append(s.step)
        if s.preview is not None:
            previews.append(s.preview)

    r = project(G, img, steps=150, mode="w", lr=0.3, mse_weight=1.0, w_avg_samples=500, motion_seed=7,
                lpips_model=TinyLPIPS(), callback=cb)
    means = _block_means(r.losses)
    assert all(b < a for a, b in zip(means, means[1:])), means  # steadily lower
    assert means[-1] < 0.2 * means[0]
    assert r.psnr > _baseline_psnr(G, img) + 12.0, r.psnr  # from ~10 dB at w_avg (~48 dB when written)
    assert r.ws.shape == (1, G.num_ws, G.w_dim)
    assert torch.allclose(r.ws[0, 0], r.ws[0, -1])  # W mode: one w for every layer
    assert steps_seen == list(range(150)) and len(previews) == 16
    assert previews[-1].shape == (16, 16, 3) and previews[-1].dtype == np.uint8
    assert r.reconstruction.shape == r.target.shape == (16, 16, 3)
    # The reconstruction really is G at the returned ws, t = 0, the fixed motion seed.
    with torch.no_grad():
        again = G.synthesis(r.ws, torch.zeros(1, 1), [7])[:, 0]
    assert np.abs(to_uint8(again).astype(int) - r.reconstruction.astype(int)).max() <= 1


def test_projection_wplus_optimizes_per_layer(G):
    _, img = _target(G, seed=3)
    r = project(G, img, steps=60, mode="w+", lr=0.5, mse_weight=1.0, w_avg_samples=500, motion_seed=7,
                lpips_model=TinyLPIPS())
    assert r.mode == "w+" and r.ws.shape == (1, G.num_ws, G.w_dim)
    assert not torch.allclose(r.ws[0, 0], r.ws[0, -1])
    means = _block_means(r.losses, 3)
    assert means[2] < means[1] < means[0]
    assert r.psnr > _baseline_psnr(G, img) + 6.0


def test_projection_is_deterministic_and_leaves_G_alone(G):
    _, img = _target(G)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    kw = dict(steps=8, w_avg_samples=200, lpips_model=TinyLPIPS(), seed=3)
    a, b = project(G, img, **kw), project(G, img, **kw)
    assert torch.equal(a.ws, b.ws) and a.losses == b.losses
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert all(p.requires_grad for p in G.parameters())


def test_callback_can_stop_and_bad_arguments(G):
    _, img = _target(G)
    r = project(G, img, steps=50, w_avg_samples=200, lpips_model=TinyLPIPS(), callback=lambda s: s.step < 3)
    assert r.steps == 4
    with pytest.raises(ProjectionError, match="mode"):
        project(G, img, mode="z", lpips_model=TinyLPIPS())
    with pytest.raises(ProjectionError, match="target tensor"):
        project(G, torch.zeros(1, 3, 8, 8), steps=1, lpips_model=TinyLPIPS())


def test_projection_accepts_a_photo_file(G, tmp_path):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (30, 50, 3), dtype=np.uint8)).save(path)
    r = project(G, path, steps=3, w_avg_samples=200, lpips_model=TinyLPIPS())
    assert r.target.shape == (16, 16, 3) and np.isfinite(r.lpips) and np.isfinite(r.psnr)


def test_latent_file_round_trip(G, tmp_path):
    ws = torch.randn(1, G.num_ws, G.w_dim)
    lat = Latent(ws=ws, motion_seed=5, t=2.5, checkpoint="tiny.safetensors", mode="w",
                 style_offsets={"b8.conv0": torch.arange(4.0)})
    back = load_latent(save_latent(tmp_path / "x.npz", lat))
    assert torch.equal(back.ws, ws) and back.motion_seed == 5 and back.t == 2.5
    assert back.checkpoint == "tiny.safetensors" and back.mode == "w"
    assert torch.equal(back.style_offsets["b8.conv0"], torch.arange(4.0))
    check_compatible(back, G)
    with pytest.raises(LatentFileError, match="does not fit"):
        check_compatible(Latent(ws=torch.zeros(1, 3, 7)), G)
    (tmp_path / "bad.npz").write_text("nope")
    with pytest.raises(LatentFileError):
        load_latent(tmp_path / "bad.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "x.npz"]  # no temp files left


def test_cli_writes_latent(G, tmp_path, monkeypatch, capsys):
    from PIL import Image

    import projection.lpips_weights as lw
    from core.checkpoint import save_checkpoint
    from projection.__main__ import main

    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, {"G_ema": G}, G.cfg)
    photo = tmp_path / "p.jpg"
    Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(photo)
    monkeypatch.setattr(lw, "load_lpips", lambda *a, **k: TinyLPIPS())
    out = tmp_path / "lat.npz"
    assert main([str(photo), "--checkpoint", str(ckpt), "--out", str(out), "--steps", "3", "--mode", "w"]) == 0
    lat = load_latent(out)
    assert lat.ws.shape == (1, G.num_ws, G.w_dim) and lat.checkpoint == "tiny.safetensors" and lat.mode == "w"
    assert "PSNR" in capsys.readouterr().out
    # --tune: the tuned weights land next to the latent, which references them with the base model's hash
    from core.checkpoint import load_generator, weights_sha256
    from core.latent import latent_generator

    tuned = tmp_path / "tuned" / "lat.npz"
    assert main([str(photo), "--checkpoint", str(ckpt), "--out", str(tuned), "--steps", "2", "--tune",
                 "--tune-steps", "3"]) == 0
    assert "tuned: LPIPS" in capsys.readouterr().out
    lat = load_latent(tuned)
    assert lat.tuned_weights == str((tmp_path / "tuned" / "lat.tuned.safetensors").resolve())
    assert lat.base_hash == weights_sha256(load_generator(ckpt))
    G_tuned = latent_generator(lat, load_generator(ckpt))
    assert any(not torch.equal(a, b) for a, b in zip(G_tuned.parameters(), load_generator(ckpt).parameters()))
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert main([str(tmp_path / "empty.jpg"), "--checkpoint", str(ckpt), "--steps", "1"]) == 2
    assert "empty" in capsys.readouterr().err
    # --offline with no LPIPS backbone anywhere: the real resolver's message, exit code 2, no download tried
    monkeypatch.undo()
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SGV_LPIPS_WEIGHTS", raising=False)
    assert main([str(photo), "--checkpoint", str(ckpt), "--steps", "1", "--offline"]) == 2
    err = capsys.readouterr().err
    assert "LPIPS needs ImageNet vgg backbone weights" in err and "downloads disabled" in err
