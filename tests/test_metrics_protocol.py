"""The paper's FVD / FID protocol: real-clip selection, fake times, compute_metrics plumbing, caching."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from training.metrics import compute_metrics
from training.metrics.frechet import MetricsError
from training.metrics.i3d import I3DConfig, InceptionI3d
from training.metrics.protocol import fake_seeds, fake_times, get_spec, render_fake_videos, select_real_clips


def test_real_clips_drop_short_videos_then_take_the_first_n():
    lengths = [20, 10, 16, 40, 15, 100, 33]
    clips = select_real_clips(lengths, num_videos=4, num_frames=16, seed=0)
    assert [i for i, _ in clips] == [0, 2, 3, 5]  # 10 and 15 frames dropped; video 6 beyond the first 4
    for i, idx in clips:
        assert idx.shape == (16,) and idx[0] >= 0 and idx[-1] < lengths[i]
        np.testing.assert_array_equal(np.diff(idx), 1)  # consecutive frames
    assert clips[1][1][0] == 0  # a 16-frame video has one possible offset
    again = select_real_clips(lengths, num_videos=4, num_frames=16, seed=0)
    assert all((a[1] == b[1]).all() for a, b in zip(clips, again))  # reproducible
    with pytest.raises(MetricsError):
        select_real_clips(lengths, num_videos=0, num_frames=16)


def test_real_clip_offsets_are_uniform_over_every_valid_start():
    clips = select_real_clips([20] * 5000, num_videos=5000, num_frames=16, seed=1)
    counts = np.bincount([idx[0] for _, idx in clips], minlength=5)
    assert counts.shape == (5,) and counts.sum() == 5000  # starts 0..4 only
    assert np.all(np.abs(counts - 1000) < 150), counts
    other = select_real_clips([20] * 5000, num_videos=5000, num_frames=16, seed=2)
    assert any(a[1][0] != b[1][0] for a, b in zip(clips, other))


def test_stride_8_variant_spans_128_frames():
    spec = get_spec("fvd128_s8")
    assert (spec.num_frames, spec.stride, spec.span) == (16, 8, 128)
    clips = select_real_clips([127, 128, 135], 10, spec.num_frames, spec.stride, seed=0)
    assert [i for i, _ in clips] == [1, 2]
    starts = {select_real_clips([128], 1, 16, 8, seed=s)[0][1][0] for s in range(200)}
    assert starts == set(range(8))  # last frame = start + 120 <= 127
    assert 0 <= clips[1][1][0] <= 14 and clips[1][1][-1] <= 134
    np.testing.assert_array_equal(np.diff(clips[1][1]), 8)
    np.testing.assert_array_equal(fake_times(16), np.arange(16))
    np.testing.assert_array_equal(fake_times(16, 8), np.arange(0, 128, 8))
    assert get_spec("fvd2048_16f").name == "fvd16" and get_spec("FID").num_videos * 16 == 50_000
    with pytest.raises(MetricsError, match="unknown metric"):
        get_spec("isv")


class RecordingG(nn.Module):
    """Stand-in generator with the core API; frames are a smooth function of (z, t); records calls."""

    def __init__(self, z_dim=8, res=16):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution = z_dim, 0, res
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Parameter(torch.randn(z_dim, 3, generator=g) * 0.5)
        self.calls = []

    def mapping(self, z, c=None, truncation_psi=1.0):
        return z[:, None, :]  # ws [N, 1, z_dim]

    def synthesis(self, ws, t, motion, c=None):
        self.calls.append((t.clone(), list(motion)))
        n, T = t.shape
        color = torch.tanh(ws[:, 0] @ self.proj)  # [N, 3]
        ramp = torch.linspace(-1, 1, self.img_resolution)
        phase = torch.sin(t[:, :, None, None, None] * 0.3 + ramp.view(1, 1, 1, 1, -1) * 3)  # [N, T, 1, 1, R]
        frames = 0.6 * color[:, None, :, None, None] + 0.4 * phase
        return frames.expand(n, T, 3, self.img_resolution, self.img_resolution)


def test_fake_videos_render_at_t_0_to_15_with_motion_seeds():
    G = RecordingG()
    seeds = fake_seeds(3, seed=5)
    v = render_fake_videos(G, seeds, fake_times(16), torch.device("cpu"))
    assert v.shape == (3, 3, 16, 16, 16) and v.dtype == torch.uint8  # [N, 3, T, H, W]
    t, motion = G.calls[0]
    np.testing.assert_array_equal(t.numpy(), np.tile(np.arange(16, dtype=np.float32), (3, 1)))
    assert motion == seeds and len(set(seeds)) == 3
    assert fake_seeds(2, seed=0) != fake_seeds(2, seed=1)[:2]
    # The paper's float -> uint8 rule: x * 127.5 + 128, clamped, truncated.
    G2 = RecordingG()
    G2.synthesis = lambda ws, t, motion, c=None: torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3, 1, 1).expand(
        len(motion), t.shape[1], 3, 2, 2)
    out = render_fake_videos(G2, [0], fake_times(2), torch.device("cpu"))
    assert out[0, :, 0, 0, 0].tolist() == [0, 128, 255]


class TinyVideos:
    """In-test object with the VideoDataset interface; frames drift so clips differ by offset."""

    def __init__(self, lengths, res=16, path=None):
        self.lengths, self.resolution, self.path, self.labels = list(lengths), res, path, None
        self.reads = 0

    def __len__(self):
        return len(self.lengths)

    @property
    def names(self):
        return [f"video{i:03d}" for i in range(len(self))]

    def num_frames(self, i):
        return self.lengths[i]

    def index_sha256(self):
        return hashlib.sha256(repr((self.lengths, self.path)).encode()).hexdigest()

    def read_frames(self, i, frame_indices):
        self.reads += 1
        idx = np.asarray(list(frame_indices))
        assert idx.min() >= 0 and idx.max() < self.lengths[i]
        g = np.random.default_rng(i)
        base = g.uniform(40, 200, size=3)
        x = np.linspace(0, 1, self.resolution)
        wave = 40 * np.sin(idx[:, None, None] * 0.2 + x[None, None, :] * 6 + i)  # [T, 1, R]
        frames = base[None, None, None, :] + wave[..., None]
        frames = np.broadcast_to(frames, (len(idx), self.resolution, self.resolution, 3))
        return frames.clip(0, 255).astype(np.uint8)


class ChannelStats:
    """A cheap image 'detector' for plumbing tests: per-channel mean and std -> [N, 6]."""

    name = "channel-stats-test"

    def __call__(self, images):
        x = torch.as_tensor(images)
        if x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)
        assert x.ndim == 4 and x.dtype == torch.uint8
        x = x.float()
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1).numpy()


def _tiny_i3d():
    from training.metrics.detectors import VideoDetector

    torch.manual_seed(0)
    return VideoDetector(InceptionI3d(I3DConfig(num_classes=4, width_div=16, input_size=32)), "i3d-tiny-test")


def test_compute_metrics_counts_cache_and_callback(tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ds = TinyVideos([18, 12, 20, 16, 30, 17, 25], path=str(data_dir))
    events = []
    dets = {"i3d": _tiny_i3d(), "inception": ChannelStats()}
    res = compute_metrics(RecordingG(), ds, ["fvd16", "fid"], num_videos=4,
                          callback=lambda *a: events.append(a), detectors=dets, batch_size=2)
    assert np.isfinite(res["fvd16"]) and res["fvd16"] > 0 and np.isfinite(res["fid"])
    assert res["num_videos"] == {"fvd16": 4, "fid": 4} and res["full_protocol"] is False
    assert res["num_real"]["fvd16"] == 4 and res["num_fake"]["fvd16"] == 4
    assert res["num_real"]["fid"] == 18 + 12 + 20 + 16 and res["num_fake"]["fid"] == 4 * 16
    assert {e[0] for e in events} == {"fvd16/real", "fvd16/fake", "fid/real", "fid/fake"}
    assert all(done <= total for _, done, total in events)
    cached = sorted(Path(tmp_path / "cache" / "metric-stats").glob("*.npz"))
    assert len(cached) == 4  # two halves per metric
    # Second run: real statistics come from the cache (no frame is read), fakes are recomputed identically.
    reads = ds.reads
    res2 = compute_metrics(RecordingG(), ds, ["fvd16", "fid"], num_videos=4, detectors=dets, batch_size=2)
    assert ds.reads == reads
    assert res2["fvd16"] == pytest.approx(res["fvd16"], rel=1e-9) and res2["fid"] == pytest.approx(res["fid"])
    # A different protocol (number of videos) is a different cache entry.
    compute_metrics(RecordingG(), ds, ["fvd16"], num_videos=5, detectors=dets, batch_size=2)
    assert len(list(Path(tmp_path / "cache" / "metric-stats").glob("*.npz"))) == 6


def test_compute_metrics_missing_inception_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    ds = TinyVideos([16] * 3)
    res = compute_metrics(RecordingG(), ds, ["fid"], num_videos=2, skip_unavailable=True, offline=True)
    assert res["fid"] is None and "not available" in res["errors"]["inception"]
    assert "download: disabled" in res["errors"]["inception"]  # offline: the download was not tried
    from training.metrics.weights import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="torchvision"):
        compute_metrics(RecordingG(), ds, ["fid"], num_videos=2, offline=True)


def test_compute_metrics_with_the_core_generator(tmp_path, monkeypatch):
    core_config = pytest.importorskip("core.config")
    core_generator = pytest.importorskip("core.generator")
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    G = core_generator.Generator(core_config.preset("tiny"))
    ds = TinyVideos([16, 20, 24], res=G.img_resolution)
    res = compute_metrics(G, ds, ["fvd16"], num_videos=3, detectors={"i3d": _tiny_i3d()}, batch_size=3)
    assert np.isfinite(res["fvd16"]) and res["num_fake"]["fvd16"] == 3
    assert G.training  # the evaluation restored the module's mode
