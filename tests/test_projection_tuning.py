"""Pivotal tuning on the tiny generator with the tiny LPIPS stand-in: the loss goes down, the loaded model
is untouched, the saved delta reproduces the tuned generator bit for bit through every renderer (latent
file, core.generate, the studio back end), and tuned weights are refused for another model."""

import zipfile

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from core.checkpoint import save_checkpoint, weights_sha256
from core.generate import main as generate_main
from core.latent import Latent, LatentFileError, latent_generator, load_latent, save_latent
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
                TuneOptions(min_resolution=1000)):
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
