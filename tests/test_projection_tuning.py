"""Pivotal tuning on the tiny generator with the tiny LPIPS stand-in: the loss goes down, the loaded model
is untouched, the saved delta reproduces the tuned generator bit for bit through every renderer (latent
file, core.generate, the studio back end), and tuned weights are refused for another model."""

import zipfile
from dataclasses import replace

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from core.checkpoint import save_checkpoint, weights_sha256
from core.generate import main as generate_main
from core.latent import Latent, LatentFileError, latent_generator, load_latent, save_latent
from core.motion import Motion
from core.tuned import TunedWeightsError, apply_delta, load_delta, save_delta
from projection.photo import to_tensor, to_uint8
from projection.projector import ProjectionError
from projection.testing import TinyLPIPS
from projection.tuning import TuneOptions, tune

FAST = TuneOptions(steps=40, lr=3e-2, regularize_every=2, min_resolution=8)


def _photo(size: int) -> np.ndarray:
    """A smooth colourful photo the random generator cannot produce."""
    y, x = np.mgrid[0:size, 0:size] / size
    return (np.stack([x, y, 1 - x * y], -1) * 255).astype(np.uint8)


def _frame(G, ws, t=0.0, motion_seed=0):
    with torch.no_grad():
        return G.synthesis(ws, torch.full((1, 1), float(t), dtype=torch.float64), [motion_seed])[:, 0]


@pytest.fixture()
def tuned(G):
    torch.manual_seed(1)
    ws = G.mapping(torch.randn(1, G.z_dim)).detach()
    photo = _photo(G.img_resolution)
    state = {k: v.clone() for k, v in G.state_dict().items()}
    result = tune(G, ws, photo, options=FAST, lpips_model=TinyLPIPS())
    assert all(torch.equal(v, state[k]) for k, v in G.state_dict().items()), "tuning wrote into the loaded model"
    return ws, photo, result


def test_tuning_lowers_the_reconstruction_loss(G, tuned):
    ws, photo, result = tuned
    lp = TinyLPIPS()
    target = to_tensor(photo)
    before = float(lp(_frame(G, ws), target))
    assert result.lpips < 0.7 * before, (before, result.lpips)
    assert result.lpips == pytest.approx(float(lp(_frame(result.G, ws), target)), rel=1e-5)
    assert result.steps == FAST.steps and len(result.losses) == FAST.steps
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    assert np.array_equal(result.reconstruction, to_uint8(_frame(result.G, ws)))


def test_only_the_synthesis_blocks_from_min_resolution_change(G, tuned):
    _, _, result = tuned
    changed = set(result.delta)
    tuned_blocks = tuple(f"synthesis.b{r}." for r in G.synthesis.block_resolutions if r >= FAST.min_resolution)
    assert tuned_blocks == ("synthesis.b8.", "synthesis.b16.")
    assert {n.split(".")[1] for n in changed} == {"b8", "b16"}, sorted(changed)
    for name, p in result.G.named_parameters():  # frozen: mapping, motion mapping, coarse blocks
        if name not in changed:
            assert torch.equal(p, dict(G.named_parameters())[name]), name
    assert all(d.dtype == torch.float16 for d in result.delta.values())


def test_saved_delta_round_trips_bit_for_bit(G, tuned, tmp_path):
    ws, _, result = tuned
    path = save_delta(tmp_path / "p.tuned.safetensors", result.delta, weights_sha256(G))
    delta, base_hash = load_delta(path)
    assert base_hash == weights_sha256(G) and set(delta) == set(result.delta)
    G2 = apply_delta(G, delta, base_hash)
    times = torch.tensor([[0.0, 3.5, 40.25]], dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(G2.synthesis(ws, times, [4]), result.G.synthesis(ws, times, [4]))
    assert not torch.equal(_frame(G2, ws), _frame(G, ws))


def test_a_tuned_latent_renders_the_same_through_the_cli_and_the_studio(G, tuned, tmp_path):
    from studio.testing import tiny_backend

    ws, _, result = tuned
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", {"G_ema": G}, G.cfg)
    base_hash = weights_sha256(G)
    weights = save_delta(tmp_path / "photo.tuned.safetensors", result.delta, base_hash)
    save_latent(tmp_path / "photo.npz", Latent(ws=ws, motion_seed=3, tuned_weights=str(weights),
                                               base_hash=base_hash))
    latent = load_latent(tmp_path / "photo.npz")
    assert latent.tuned_weights == str(weights.resolve()) and latent.base_hash == base_hash
    expected = to_uint8(_frame(result.G, ws, 0.0, 3))
    assert generate_main(["--checkpoint", str(ckpt), "--latent", str(tmp_path / "photo.npz"), "--duration",
                          "0.1", "--fps", "10", "--out", str(tmp_path / "a.zip")]) == 0
    cli = imageio.imread(zipfile.ZipFile(tmp_path / "a.zip").read("000000.png"))
    assert np.array_equal(cli, expected)
    be = tiny_backend(tmp_path / "studio", checkpoint=ckpt)
    studio = be.frame(0, 3, 1.0, 0.0, ws=latent.ws, G=be.generator_for({"tuned": latent.tuned_weights}))
    assert np.array_equal(studio, expected)
    assert not np.array_equal(be.frame(0, 3, 1.0, 0.0, ws=latent.ws), expected)  # the untuned model differs


def test_tuned_weights_of_another_model_are_refused(G, tuned, tmp_path, capsys):
    from core.generator import Generator
    from studio.inputs import StudioError
    from studio.testing import tiny_backend

    ws, _, result = tuned
    torch.manual_seed(99)
    other = Generator(G.cfg).eval()
    weights = save_delta(tmp_path / "p.tuned.safetensors", result.delta, weights_sha256(G))
    save_latent(tmp_path / "p.npz", Latent(ws=ws, tuned_weights=str(weights), base_hash=weights_sha256(G)))
    with pytest.raises(LatentFileError, match="made for another model"):
        latent_generator(load_latent(tmp_path / "p.npz"), other)
    with pytest.raises(TunedWeightsError, match="made for another model"):
        apply_delta(other, *load_delta(weights))
    other_ckpt = save_checkpoint(tmp_path / "other.safetensors", {"G_ema": other}, other.cfg)
    out = tmp_path / "x.mp4"
    assert generate_main(["--checkpoint", str(other_ckpt), "--latent", str(tmp_path / "p.npz"),
                          "--out", str(out)]) == 2
    assert "made for another model" in capsys.readouterr().err and not out.exists()
    be = tiny_backend(tmp_path / "studio", checkpoint=other_ckpt)
    with pytest.raises(StudioError, match="made for another model"):
        be.generator_for({"tuned": str(weights)})
    # a missing or foreign delta file: a message, not a traceback
    weights.unlink()
    with pytest.raises(LatentFileError, match="not found"):
        latent_generator(load_latent(tmp_path / "p.npz"), G)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(TunedWeightsError, match="not a tuned-weights file"):
        load_delta(tmp_path / "junk.safetensors")


def test_bad_tuning_arguments_are_refused(G):
    ws = G.mapping(torch.randn(1, G.z_dim)).detach()
    photo = _photo(G.img_resolution)
    for bad in (TuneOptions(steps=0), TuneOptions(lr=-1.0), TuneOptions(locality_weight=float("nan")),
                TuneOptions(min_resolution=1000), TuneOptions(locality_frames=0), TuneOptions(temporal_every=0)):
        with pytest.raises(ProjectionError):
            tune(G, ws, photo, options=bad, lpips_model=TinyLPIPS())
    with pytest.raises(ProjectionError, match="ws must be"):
        tune(G, ws[:, :1], photo, options=FAST, lpips_model=TinyLPIPS())


def test_callback_previews_and_stops(G):
    ws = G.mapping(torch.randn(1, G.z_dim)).detach()
    seen = []

    def callback(step):
        seen.append((step.step, step.preview is not None))
        return step.step < 4

    result = tune(G, ws, _photo(G.img_resolution), options=FAST, lpips_model=TinyLPIPS(), callback=callback,
                  preview_every=2)
    assert result.steps == 5 and [s for s, _ in seen] == [0, 1, 2, 3, 4]
    assert [p for _, p in seen] == [True, False, True, False, True]


def _transfer_error(G0, G1, ws, photo) -> float:
    """Mean squared distance of G1's frames, under motions through the photo's frame (as the studio animates
    a photo), from the photo plus G0's own change since t = 0."""
    ts = torch.tensor([[0.0, 6.0, 17.0, 30.0]], dtype=torch.float64)
    errors = []
    with torch.no_grad():
        for seed in (1, 2, 3):
            motion = Motion.from_seeds([seed], origin=(0, 0.0))
            base, tuned = G0.synthesis(ws, ts, motion)[0], G1.synthesis(ws, ts, motion)[0]  # [T, C, H, W]
            errors.append(float((tuned[1:] - (to_tensor(photo) + base[1:] - base[:1])).square().mean()))
    return float(np.mean(errors))


def test_temporal_term_keeps_the_moving_frames_near_the_photo(G, tuned):
    ws, photo, _ = tuned
    options = replace(FAST, steps=100, temporal_every=1)  # the tiny model moves a lot: more steps than FAST
    without = tune(G, ws, photo, options=replace(options, temporal_weight=0.0), lpips_model=TinyLPIPS())
    with_term = tune(G, ws, photo, options=replace(options, temporal_weight=1.0), lpips_model=TinyLPIPS())
    before = float(TinyLPIPS()(_frame(G, ws), to_tensor(photo)))
    assert with_term.lpips < 0.7 * before  # still fits the photo at t = 0
    assert _transfer_error(G, with_term.G, ws, photo) < 0.7 * _transfer_error(G, without.G, ws, photo)
