"""Video inversion on the tiny model: a clip the generator rendered is recovered with its motion; the
file round-trips and renders at any frame rate, past the clip's end, looped and with another content."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import load_generator, save_checkpoint
from core.generate import main as generate_main
from core.latent import load_latent
from core.motion import Motion
from projection.photo import to_uint8
from projection.testing import TinyLPIPS
from projection.video import Clip, VideoOptions, invert_clip, save_inversion
from projection.video.invert import mean_step_lpips, motion_ratio, tokens_for

FAST = VideoOptions(content_steps=30, steps=300, lr=0.05, motion_lr=0.1, frames_per_step=4)


def _rendered_clip(G, n=12, motion_seed=5, content_seed=3, speed=1.0):
    """A clip the generator itself renders: content seed, motion seed, frames at t = 0, speed, 2 speed..."""
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(content_seed))).detach()
    times = np.arange(n, dtype=np.float64) * speed
    with torch.no_grad():
        frames = G.synthesis(ws, torch.from_numpy(times)[None], [motion_seed])[0]
    return Clip(frames=np.stack([to_uint8(f) for f in frames]), times=times, fps=25.0, name="rendered"), ws


@pytest.fixture(scope="module")
def G_moving():
    """The tiny generator with its motion made strong (a random tiny model barely moves): the 4x4 input
    conv's weights on the motion channels are scaled up."""
    from core.config import preset
    from core.generator import Generator

    torch.manual_seed(0)
    G = Generator(preset("tiny")).eval()
    with torch.no_grad():
        const_ch = G.synthesis.b4.input.input.const.shape[1]
        G.synthesis.b4.conv1.weight[:, const_ch:] *= 6.0
    return G


@pytest.fixture(scope="module")
def inverted(G_moving):
    clip, _ = _rendered_clip(G_moving, speed=2.0)
    lp = TinyLPIPS()
    motion_seed_other = 11  # start from another motion than the clip's: the tokens must be found
    result = invert_clip(G_moving, clip, dataclasses.replace(FAST, motion_seed=motion_seed_other), lpips_model=lp)
    return clip, result, lp


def test_inversion_recovers_a_rendered_clip_and_its_motion(G_moving, inverted):
    clip, result, lp = inverted
    assert result.frames.shape == clip.frames.shape and len(result.frame_lpips) == len(clip.frames)
    real_step = mean_step_lpips(clip.frames, lp)
    # Recovered closely: every frame nearer to its own target than neighbouring real frames are to each other
    assert result.lpips < 0.5 * real_step, (result.lpips, real_step)
    assert 0.6 < result.motion_ratio < 1.5, result.motion_ratio  # it moves as the clip does, not a still frame
    still = np.repeat(result.frames[:1], len(result.frames), axis=0)
    assert motion_ratio(still, clip.frames, lp) == 0.0  # the measure flags a collapse to a still frame
    z_dim = G_moving.synthesis.motion_encoder.cfg.z_dim
    assert result.motion_noise.shape == (1, tokens_for(G_moving, clip.times[-1]), z_dim)
    assert not result.delta and result.G is None  # untuned by default


def test_saved_clip_renders_at_2x_fps_past_the_end_looped_and_with_other_content(G_moving, inverted, tmp_path):
    clip, result, _ = inverted
    ckpt = tmp_path / "G.safetensors"
    save_checkpoint(ckpt, {"G_ema": G_moving}, G_moving.cfg, metadata={"fps": 25.0})
    G = load_generator(ckpt)
    path = save_inversion(tmp_path / "clip.npz", result, G, "G.safetensors")
    latent = load_latent(path)
    assert torch.equal(latent.motion_noise, result.motion_noise) and latent.clip_duration == pytest.approx(24.0)
    # 2x fps: the even output frames are the inverted frames (t = 0, 2, 4, ... model frames here)
    out = tmp_path / "x2.zip"
    assert generate_main(["--checkpoint", str(ckpt), "--latent", str(path), "--fps", "12.5", "--duration", "2",
                          "--out", str(out)]) == 0
    frames = _zip_frames(out)  # 25 frames at 12.5 fps, each 2 model frames apart
    np.testing.assert_array_equal(frames[0:12], result.frames)
    # Past the clip's end the motion goes on: frames keep changing and the seam step is like the others
    assert generate_main(["--checkpoint", str(ckpt), "--latent", str(path), "--fps", "12.5", "--duration", "4",
                          "--out", str(tmp_path / "long.zip")]) == 0
    long = _zip_frames(tmp_path / "long.zip").astype(np.float64)
    steps = np.abs(np.diff(long, axis=0)).mean(axis=(1, 2, 3))
    assert steps[12:].min() > 0 and steps[11] <= 2.0 * np.median(steps)
    # --loop: the clip's length; frame 12 (t = 24) shows frame 0 again
    assert generate_main(["--checkpoint", str(ckpt), "--latent", str(path), "--fps", "12.5", "--duration", "2",
                          "--loop", "--out", str(tmp_path / "loop.zip")]) == 0
    loop = _zip_frames(tmp_path / "loop.zip")
    assert np.abs(loop[12].astype(int) - loop[0].astype(int)).max() <= 1
    # --content-from: another latent's content with this clip's motion
    other = dataclasses.replace(result, ws=G.mapping(torch.randn(1, G.z_dim)).detach())
    other_path = save_inversion(tmp_path / "other.npz", other, G, "G.safetensors")
    assert generate_main(["--checkpoint", str(ckpt), "--latent", str(path), "--content-from", str(other_path),
                          "--fps", "12.5", "--duration", "2", "--out", str(tmp_path / "swap.zip")]) == 0
    swap = _zip_frames(tmp_path / "swap.zip")
    with torch.no_grad():
        want = G.synthesis(other.ws, torch.from_numpy(result.times)[None], result.motion())[0]
    np.testing.assert_array_equal(swap[:12], np.stack([to_uint8(f) for f in want]))
    assert generate_main(["--checkpoint", str(ckpt), "--content-from", str(other_path), "--out",
                          str(tmp_path / "x.zip")]) == 2


def test_tuning_on_the_frames_lowers_the_error_and_is_saved(G_moving, tmp_path):
    clip, _ = _rendered_clip(G_moving, n=6, speed=3.0)
    rng = np.random.default_rng(0)
    noisy = dataclasses.replace(clip, frames=np.clip(clip.frames + rng.normal(0, 25, clip.frames.shape), 0, 255)
                                .astype(np.uint8))  # detail the generator cannot render: tuning must fit it
    opts = dataclasses.replace(FAST, steps=40, tune=True, tune_options=dataclasses.replace(
        FAST.tune_options, steps=40, lr=3e-2, regularize_every=2))
    result = invert_clip(G_moving, noisy, opts, lpips_model=TinyLPIPS())
    assert result.delta and result.lpips < 0.8 * result.untuned_lpips
    path = save_inversion(tmp_path / "t.npz", result, G_moving)
    latent = load_latent(path)
    assert latent.tuned_weights.endswith("t.tuned.safetensors")
    from core.latent import latent_generator

    G2 = latent_generator(latent, G_moving)
    with torch.no_grad():
        again = G2.synthesis(latent.ws, torch.from_numpy(result.times)[None], latent.motion())[0]
    np.testing.assert_array_equal(np.stack([to_uint8(f) for f in again]), result.frames)


def test_cancel_stops_the_inversion(G_moving):
    clip, _ = _rendered_clip(G_moving, n=4)
    seen = []

    def cancel_in_motion(step):
        seen.append(step.stage)
        return step.stage != "motion"

    result = invert_clip(G_moving, clip, dataclasses.replace(FAST, tune=True), lpips_model=TinyLPIPS(),
                         callback=cancel_in_motion)
    assert result.cancelled and seen.count("motion") == 1 and "tune" not in seen


def _zip_frames(path):
    import zipfile

    with zipfile.ZipFile(path) as z:
        return np.stack([np.asarray(Image.open(z.open(n)).convert("RGB")) for n in sorted(z.namelist())])


def test_motion_of_an_inversion_continues_with_its_seed(inverted):
    _, result, _ = inverted
    m = result.motion()
    assert isinstance(m, Motion) and m.seeds.tolist() == [result.motion_seed] and m.noise is result.motion_noise


def test_cli_inverts_a_clip_and_writes_nothing_for_bad_input(G_moving, tmp_path, monkeypatch, capsys):
    import imageio.v2 as imageio

    import projection.lpips_weights as lw
    from projection.video.__main__ import main

    monkeypatch.setattr(lw, "load_lpips", lambda *a, **k: TinyLPIPS())
    ckpt = tmp_path / "G.safetensors"
    save_checkpoint(ckpt, {"G_ema": G_moving}, G_moving.cfg, metadata={"fps": 25.0})
    clip, _ = _rendered_clip(G_moving, n=6)
    video = tmp_path / "clip.mp4"
    imageio.mimwrite(video, list(clip.frames), fps=25, macro_block_size=1)
    out = tmp_path / "out" / "clip.npz"
    out.parent.mkdir()
    assert main([str(video), "--checkpoint", str(ckpt), "--out", str(out), "--steps", "5", "--max-frames", "4",
                 "--tune", "--tune-steps", "2"]) == 0
    text = capsys.readouterr().out
    assert "4 frames, per-frame LPIPS" in text and "motion" in text
    latent = load_latent(out)
    assert latent.motion_noise is not None and latent.tuned_weights and latent.clip_duration == pytest.approx(4.0)
    (tmp_path / "bad.mp4").write_text("not a video")
    bad_out = tmp_path / "bad-out"
    bad_out.mkdir()
    assert main([str(tmp_path / "bad.mp4"), "--checkpoint", str(ckpt), "--out", str(bad_out / "x.npz")]) == 2
    assert "not a video" in capsys.readouterr().err and not list(bad_out.iterdir())
