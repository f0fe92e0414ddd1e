"""StyleCLIP edits (latent optimization, global directions), style-offset hooks, CLIP resolver, CLI."""

import numpy as np
import pytest
import torch

import editing.clip_weights as cw
from editing.styleclip import (
    EditError,
    GlobalDirections,
    StyleError,
    compute_global_directions,
    global_edit,
    latent_edit,
    style_layers,
    style_offsets,
    synthesize,
)
from editing.testing import tiny_clip

PROMPT = "a smiling face"




@pytest.fixture(scope="module")
def clip():
    return tiny_clip(seed=0)


def _ws(G, seed=0):
    with torch.no_grad():
        return G.mapping(torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float())


def test_style_offsets_hooks(G):
    layers = style_layers(G)
    assert layers and not any(n.endswith("torgb") for n, _ in layers)
    assert any(n.endswith("torgb") for n, _ in style_layers(G, include_torgb=True))
    ws = _ws(G).repeat(2, 1, 1)
    base = synthesize(G, ws)
    name, module = layers[1]
    c = module(ws[:1, 0]).shape[-1]
    with torch.no_grad():
        same = synthesize(G, ws, offsets={name: torch.zeros(c)})
        moved = synthesize(G, ws, offsets={name: torch.full([c], 0.5)})
        per_sample = synthesize(G, ws, offsets={name: torch.stack([torch.zeros(c), torch.full([c], 0.5)])})
        # [N, C] offsets follow their sample across several frames (synthesis batches N * T frames).
        frames = G.synthesis(ws, torch.tensor([[0.0, 3.0], [0.0, 3.0]]), [0, 0])
        with style_offsets(G, {name: torch.stack([torch.zeros(c), torch.full([c], 0.5)])}):
            frames_off = G.synthesis(ws, torch.tensor([[0.0, 3.0], [0.0, 3.0]]), [0, 0])
    assert torch.equal(same, base) and not torch.allclose(moved, base)
    assert torch.equal(per_sample[0], base[0]) and torch.allclose(per_sample[1], moved[1])
    assert torch.equal(frames_off[0], frames[0]) and not torch.allclose(frames_off[1, 1], frames[1, 1])
    assert torch.equal(synthesize(G, ws), base)  # hooks are gone after the block
    with pytest.raises(StyleError, match="unknown style layers"):
        synthesize(G, ws, offsets={"b99.conv0": torch.zeros(3)})


def test_style_offsets_shift_the_affine_output_before_torgbs_gain(G):
    # s = affine(w) + offset, then toRGB's modulation gain (as the reference's ToRGBLayer): an offset acts
    # exactly like the same shift of the affine layer's bias, for toRGB layers as for convs.
    ws = _ws(G)
    for name, module in style_layers(G, include_torgb=True)[-2:]:  # the last conv and the last toRGB
        off = torch.linspace(-0.5, 0.5, module.weight.shape[0])
        with torch.no_grad():
            shifted = synthesize(G, ws, offsets={name: off})
            module.bias += off / module.bias_gain
            try:
                moved_bias = synthesize(G, ws)
            finally:
                module.bias -= off / module.bias_gain
        torch.testing.assert_close(shifted, moved_bias, atol=1e-5, rtol=1e-5, msg=name)
        assert not torch.allclose(shifted, synthesize(G, ws)), name


def test_latent_optimization_moves_toward_the_prompt(G, clip):
    ws = _ws(G)
    seen = []
    r = latent_edit(G, ws, PROMPT, clip, steps=20, callback=lambda s, loss, img: seen.append((s, img is not None)))
    assert r.similarity_after > r.similarity_before + 0.05, (r.similarity_before, r.similarity_after)
    assert np.mean(r.losses[-5:]) < np.mean(r.losses[:5])
    assert r.ws.shape == ws.shape and not torch.equal(r.ws, ws) and r.style_offsets == {}
    assert [s for s, _ in seen] == list(range(20)) and seen[0][1] and seen[-1][1]
    assert r.image.shape == (16, 16, 3) and r.image.dtype == np.uint8
    assert all(p.requires_grad for p in G.parameters())  # frozen only during the edit
    # The L2 term keeps the latent near the start: a larger weight moves it less.
    tight = latent_edit(G, ws, PROMPT, clip, steps=20, l2_lambda=1.0)
    assert (tight.ws - ws).norm() < (r.ws - ws).norm()
    with pytest.raises(EditError, match="lpips_model"):
        latent_edit(G, ws, PROMPT, clip, lpips_lambda=1.0)


def test_latent_optimization_with_lpips_preservation(G, clip):
    from projection.testing import TinyLPIPS

    r = latent_edit(G, _ws(G), PROMPT, clip, steps=5, lpips_lambda=0.5, lpips_model=TinyLPIPS())
    assert len(r.losses) == 5 and np.isfinite(r.losses).all()


def test_global_directions_cached_and_reused(G, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path))
    progress = []
    d = compute_global_directions(G, clip, num_images=2, callback=lambda done, total: progress.append((done, total)))
    total = sum(d.channels)
    assert d.directions.shape == (total, clip.embed_dim) and d.style_std.shape == (total,)
    assert torch.allclose(d.directions.norm(dim=1), torch.ones(total), atol=1e-5)
    assert progress[-1] == (total, total) and all(a[0] < b[0] for a, b in zip(progress, progress[1:]))
    (cached,) = list((tmp_path / "styleclip").glob("*.safetensors"))
    assert torch.equal(GlobalDirections.load(cached).directions, d.directions)
    # Mark the cache entry: a second call returns the file's content (loaded, not recomputed) and measures
    # no channel.
    marked = GlobalDirections(d.layers, d.channels, -d.directions, d.style_std, d.meta)
    marked.save(cached)
    progress.clear()
    again = compute_global_directions(G, clip, num_images=2, callback=lambda done, total: progress.append(done))
    assert torch.equal(again.directions, -d.directions) and again.layers == d.layers and progress == []
    # Another model (or other settings) is another cache entry: measured afresh, the marked entry untouched.
    with torch.no_grad():
        G.synthesis.b16.conv1.affine.bias.add_(0.1)
    other = compute_global_directions(G, clip, num_images=2, callback=lambda done, total: progress.append(done))
    assert progress and progress[-1] == total and not torch.equal(other.directions, -d.directions)
    assert len(list((tmp_path / "styleclip").glob("*.safetensors"))) == 2
    assert torch.equal(GlobalDirections.load(cached).directions, -d.directions)
    other_settings = compute_global_directions(G, clip, num_images=3)
    assert len(list((tmp_path / "styleclip").glob("*.safetensors"))) == 3
    assert not torch.equal(other_settings.directions, other.directions)


def test_global_edit_moves_toward_the_prompt(G, clip, tmp_path):
    d = compute_global_directions(G, clip, num_images=2, cache=tmp_path / "gd.safetensors")
    assert isinstance(GlobalDirections.load(tmp_path / "gd.safetensors"), GlobalDirections)
    ws = _ws(G, seed=4)
    r = global_edit(G, ws, PROMPT, clip, d, alpha=2.0, beta=0.0)
    assert r.similarity_after > r.similarity_before, (r.similarity_before, r.similarity_after)
    assert r.style_offsets and torch.equal(r.ws, ws)
    stronger = global_edit(G, ws, PROMPT, clip, d, alpha=4.0, beta=0.0)
    assert sum(float(v.abs().sum()) for v in stronger.style_offsets.values()) > \
        sum(float(v.abs().sum()) for v in r.style_offsets.values())
    # beta is a threshold on |relevance|: a high one keeps fewer channels, above the maximum none.
    sparse = global_edit(G, ws, PROMPT, clip, d, alpha=2.0, beta=0.2)
    count = lambda res: sum(int((v != 0).sum()) for v in res.style_offsets.values())  # noqa: E731
    assert count(sparse) < count(r)
    none = global_edit(G, ws, PROMPT, clip, d, alpha=2.0, beta=1.01)
    assert none.style_offsets == {} and none.similarity_after == pytest.approx(none.similarity_before)


def test_clip_resolver_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path))
    monkeypatch.delenv("SGV_CLIP_WEIGHTS", raising=False)
    checks = []
    with pytest.raises(cw.ClipWeightsError) as info:
        cw.load_clip(network_check=lambda: checks.append(1) or False)
    msg = str(info.value)
    assert checks == [1]
    for needle in ("Text editing needs CLIP weights", "SGV_CLIP_WEIGHTS", "--clip-weights", "no network",
                   str(cw.cached_clip_path())):
        assert needle in msg, needle
    with pytest.raises(cw.ClipWeightsError, match="no file at"):
        cw.load_clip(weights=tmp_path / "missing.pt", network_check=lambda: False)


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory):
    """An open_clip model config of editing.testing.tiny_clip's architecture, registered through open_clip's
    public add_model_config, so the resolver builds real (tiny) models by name."""
    import json

    import open_clip

    cfg = {"embed_dim": 32, "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 8,
                                           "image_size": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path_factory.mktemp("clip-config") / "sgv-tiny-test.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return "sgv-tiny-test"


def test_clip_resolver_order(tmp_path, monkeypatch, tiny_clip_name):
    from safetensors.torch import save_file

    monkeypatch.setenv("SGV_CACHE", str(tmp_path))
    monkeypatch.delenv("SGV_CLIP_WEIGHTS", raising=False)
    name, tag = tiny_clip_name, "test"
    tiny_a, tiny_b, tiny_c = tiny_clip(seed=1), tiny_clip(seed=2), tiny_clip(seed=3)
    state = lambda m: {k: v.contiguous() for k, v in m.model.state_dict().items()}  # noqa: E731
    cached = cw.cached_clip_path(name, tag)
    assert cached == tmp_path / "clip" / f"{name}__{tag}.safetensors"
    cached.parent.mkdir(parents=True)
    save_file(state(tiny_a), str(cached))
    from_env_file, explicit = tmp_path / "env.safetensors", tmp_path / "mine.safetensors"
    save_file(state(tiny_b), str(from_env_file))
    save_file(state(tiny_c), str(explicit))
    text = ["a photo of a cat"]

    def no_network():
        raise AssertionError("network checked although weights were available")

    # cache < $SGV_CLIP_WEIGHTS < explicit argument; none of them looks at the network
    from_cache = cw.load_clip(name, tag, network_check=no_network)
    assert torch.allclose(from_cache.encode_text(text), tiny_a.encode_text(text))
    monkeypatch.setenv("SGV_CLIP_WEIGHTS", str(from_env_file))
    from_env = cw.load_clip(name, tag, network_check=no_network)
    assert torch.allclose(from_env.encode_text(text), tiny_b.encode_text(text))
    from_arg = cw.load_clip(name, tag, weights=explicit, network_check=no_network)
    assert torch.allclose(from_arg.encode_text(text), tiny_c.encode_text(text))
    img = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(from_arg.encode_image(img), tiny_c.encode_image(img), atol=1e-6)
    bad = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(1)}, str(bad))
    with pytest.raises(cw.ClipWeightsError, match="does not hold"):
        cw.load_clip(name, tag, weights=bad)
    # offline (allow_download=False) with the cache gone: the instructions, and no network check either
    monkeypatch.delenv("SGV_CLIP_WEIGHTS")
    cached.unlink()
    with pytest.raises(cw.ClipWeightsError, match="downloads disabled"):
        cw.load_clip(name, tag, allow_download=False, network_check=no_network)


def test_clip_preprocess_is_differentiable_for_any_size(clip):
    for size in (16, 64):
        x = torch.zeros(2, 3, size, size, requires_grad=True)
        emb = clip.encode_image(x)
        assert emb.shape == (2, clip.embed_dim)
        emb.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
