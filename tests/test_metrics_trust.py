"""Figures a user can trust: seeds reproduce bit for bit, repeats give a spread, every result has its
real-vs-real floor and a manifest whose hashes follow the checkpoint and the data, mismatches are refused."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import save_checkpoint
from core.config import preset
from core.generator import Generator
from training.dataset import DatasetError, VideoDataset
from training.metrics import compute_metrics
from training.metrics.detectors import VideoDetector
from training.metrics.frechet import MetricsError
from training.metrics.i3d import I3DConfig, InceptionI3d


class PooledVideoFeatures:
    """A cheap video detector that sees content and motion (a random tiny I3D gives near-constant logits):
    4x4 pooled colour and its mean frame-to-frame change, through a fixed random projection -> [N, 8]."""

    name = "pooled-video-test"

    def __init__(self):
        self.model = torch.nn.Linear(2 * 3 * 4 * 4, 8)
        with torch.no_grad():
            self.model.weight.copy_(torch.randn(8, 96, generator=torch.Generator().manual_seed(0)))

    @torch.no_grad()
    def __call__(self, videos):
        v = torch.as_tensor(videos)
        if v.shape[1] == 3 and v.shape[-1] != 3:
            v = v.permute(0, 2, 3, 4, 1)  # -> [N, T, H, W, 3]
        x = torch.nn.functional.adaptive_avg_pool2d(v.float().permute(0, 1, 4, 2, 3).flatten(0, 1), 4)
        x = x.reshape(v.shape[0], v.shape[1], -1) / 255  # [N, T, 48]
        feats = torch.cat([x.mean(1), (x[:, 1:] - x[:, :-1]).abs().mean(1) * 10], 1)
        return self.model(feats).numpy()


def _tiny_i3d():
    torch.manual_seed(0)
    return VideoDetector(InceptionI3d(I3DConfig(num_classes=4, width_div=16, input_size=32)), "i3d-tiny-test")


def _videos(root, res=16, lengths=(16, 17, 18, 19, 20, 21), seed=0):
    """A frames-folder dataset of random-walk videos (neighbouring frames alike, videos different)."""
    rng = np.random.default_rng(seed)
    for v, n in enumerate(lengths):
        (root / f"vid{v}").mkdir(parents=True)
        frame = rng.uniform(0, 255, (res, res, 3))
        for t in range(n):
            frame = np.clip(frame + rng.normal(0, 12, frame.shape), 0, 255)
            Image.fromarray(frame.astype(np.uint8)).save(root / f"vid{v}" / f"{t:06d}.png")
    return root


def _generator(seed=0):
    torch.manual_seed(seed)
    return Generator(preset("tiny")).eval()


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    data = _videos(tmp_path / "data")
    return VideoDataset(data, resolution=16), {"i3d": PooledVideoFeatures()}


def test_same_seeds_give_the_same_figure_bit_for_bit(setup):
    ds, dets = setup
    G = _generator()
    a = compute_metrics(G, ds, ["fvd16"], 6, seed=3, repeats=2, detectors=dets, batch_size=4)
    b = compute_metrics(G, ds, ["fvd16"], 6, seed=3, repeats=2, detectors=dets, batch_size=4, use_cache=False)
    assert a["values"]["fvd16"] == b["values"]["fvd16"] and a["fvd16"] == b["fvd16"]  # exact, not approx
    assert a["floor"]["fvd16"] == b["floor"]["fvd16"] and a["seeds"] == [3, 4]


def test_repeats_report_mean_and_spread_of_distinct_seeds(setup):
    ds, dets = setup
    G = _generator()
    res = compute_metrics(G, ds, ["fvd16"], 6, seed=0, repeats=3, detectors=dets, batch_size=4)
    values = res["values"]["fvd16"]
    assert len(set(values)) == 3  # every repeat drew its own fake videos
    assert res["fvd16"] == pytest.approx(np.mean(values), rel=1e-12)
    assert res["std"]["fvd16"] == pytest.approx(np.std(values, ddof=1), rel=1e-12) and res["std"]["fvd16"] > 0
    # Repeat k is seed + k: evaluating seed 1 alone (on the same real clips) reproduces the second figure.
    one = compute_metrics(G, ds, ["fvd16"], 6, seed=1, real_seed=0, repeats=1, detectors=dets, batch_size=4)
    assert one["values"]["fvd16"] == [values[1]] and one["std"]["fvd16"] is None
    # Another seed lands within the reported spread (3 standard deviations) but not on the mean.
    other = compute_metrics(G, ds, ["fvd16"], 6, seed=9, repeats=1, detectors=dets, batch_size=4)
    assert other["fvd16"] != res["fvd16"]
    assert abs(other["fvd16"] - res["fvd16"]) <= 3 * res["std"]["fvd16"]


def test_floor_is_the_distance_between_two_disjoint_real_halves(setup):
    ds, dets = setup
    res = compute_metrics(_generator(), ds, ["fvd16"], 6, repeats=1, detectors=dets, batch_size=4)
    floor = res["floor"]["fvd16"]
    assert floor is not None and 0 < floor < res["fvd16"]  # real vs real beats a random generator
    assert res["manifest"]["metrics"]["fvd16"]["floor_halves"] == [3, 3]
    # The halves are the even and odd clips of the selection, recomputed here by hand.
    from training.metrics.frechet import FeatureStats, frechet_distance
    from training.metrics.protocol import select_real_clips

    clips = select_real_clips([ds.num_frames(i) for i in range(len(ds))], 6, 16, seed=0)
    feats = dets["i3d"](torch.from_numpy(np.stack([ds.read_frames(i, idx) for i, idx in clips])))
    halves = []
    for part in (feats[0::2], feats[1::2]):
        st = FeatureStats()
        st.append(part)
        halves.append(st.mean_cov())
    assert floor == pytest.approx(frechet_distance(*halves[0], *halves[1]), rel=1e-5)  # other batches


def test_manifest_hashes_follow_the_checkpoint_and_the_data(tmp_path, setup):
    ds, dets = setup
    paths = []
    for seed in (0, 1):
        G = _generator(seed)
        paths.append(tmp_path / f"G{seed}.safetensors")
        save_checkpoint(paths[-1], {"G_ema": G}, G.cfg)
    runs = [compute_metrics(_generator(s), ds, ["fvd16"], 4, repeats=1, detectors=dets, checkpoint=p)
            for s, p in zip((0, 1), paths)]
    m0, m1 = (r["manifest"] for r in runs)
    assert m0["generator"]["checkpoint_sha256"] != m1["generator"]["checkpoint_sha256"]
    assert m0["generator"]["weights_sha256"] != m1["generator"]["weights_sha256"]
    assert m0["dataset"]["index_sha256"] == m1["dataset"]["index_sha256"]
    assert m0["detectors"]["i3d"]["weights_sha256"] == m1["detectors"]["i3d"]["weights_sha256"] is not None
    assert m0["seeds"]["fake"] == [0] and m0["metrics"]["fvd16"]["clip_frames"] == 16
    assert m0["packages"]["torch"] == torch.__version__.split("+")[0]
    assert "Lanczos" in m0["resize"]["real"] and m0["detectors"]["i3d"]["name"] == "pooled-video-test"
    # One frame of one video changes: the index hash (and so the cached real statistics) changes.
    frame = tmp_path / "data" / "vid2" / "000003.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(frame)
    changed = compute_metrics(_generator(0), VideoDataset(tmp_path / "data", resolution=16), ["fvd16"], 4,
                              repeats=1, detectors=dets, checkpoint=paths[0])
    assert changed["manifest"]["dataset"]["index_sha256"] != m0["dataset"]["index_sha256"]
    assert changed["manifest"]["generator"] == m0["generator"]
    json.dumps(changed["manifest"])  # JSON-able as it is


@pytest.mark.parametrize("res", [64, 128, 256])
def test_metrics_run_at_64_128_and_256(tmp_path, monkeypatch, res):
    from test_metrics_protocol import RecordingG, TinyVideos

    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    out = compute_metrics(RecordingG(res=res), TinyVideos([16, 18, 20, 17], res=res), ["fvd16"], 4,
                          detectors={"i3d": _tiny_i3d()}, batch_size=4)
    assert np.isfinite(out["fvd16"]) and out["manifest"]["generator"]["resolution"] == res


def test_mismatched_resolution_and_empty_data_are_refused(tmp_path, monkeypatch, capsys):
    from test_metrics_protocol import RecordingG, TinyVideos

    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MetricsError, match="read at 64x64 but the generator renders 128x128"):
        compute_metrics(RecordingG(res=128), TinyVideos([16] * 4, res=64), ["fvd16"], 4,
                        detectors={"i3d": _tiny_i3d()})
    G = Generator(preset("tiny").replace(synthesis={"img_resolution": 32}))
    ckpt = tmp_path / "G32.safetensors"
    save_checkpoint(ckpt, {"G_ema": G}, G.cfg)
    data = _videos(tmp_path / "data16", res=16, lengths=(16, 16))
    from training.metrics.__main__ import main

    rc = main(["--checkpoint", str(ckpt), "--data", str(data), "--num-videos", "2", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "frames are 16x16, smaller than the generator's 32x32" in err and "--resolution 32" in err
    (tmp_path / "empty").mkdir()
    rc = main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "empty"), "--device", "cpu"])
    assert rc == 2 and "no readable videos" in capsys.readouterr().err
    with pytest.raises(DatasetError):
        VideoDataset(tmp_path / "empty")


def test_cli_compares_two_checkpoints_on_the_same_real_statistics(tmp_path, monkeypatch, capsys):
    import training.metrics.detectors as detectors
    import training.metrics.evaluate as evaluate
    from training.metrics.__main__ import main

    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(evaluate, "_DETECTORS", {})  # the stand-in must not outlive this test
    monkeypatch.setattr(detectors, "load_i3d", lambda *a, **k: PooledVideoFeatures())
    data = _videos(tmp_path / "data")
    ckpts = []
    for seed in (0, 1):
        G = _generator(seed)
        ckpts += ["--checkpoint", str(tmp_path / f"G{seed}.safetensors")]
        save_checkpoint(ckpts[-1], {"G_ema": G}, G.cfg)
    out = tmp_path / "cmp.json"
    rc = main([*ckpts, "--data", str(data), "--num-videos", "6", "--repeats", "2", "--device", "cpu",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    res = json.loads(out.read_text())
    a, b = res["checkpoints"]
    c = res["comparison"]["fvd16"]
    assert c["difference"] == pytest.approx(b["fvd16"] - a["fvd16"]) and a["seeds"] == b["seeds"] == [0, 1]
    assert c["spread"] == pytest.approx(a["std"]["fvd16"] + b["std"]["fvd16"])
    assert c["exceeds_spread"] == (abs(c["difference"]) > c["spread"])
    assert a["floor"] == b["floor"]  # one real side for both
    manifests = json.loads((tmp_path / "cmp.manifest.json").read_text())
    assert res["manifest_file"] == "cmp.manifest.json" and len(manifests) == 2
    assert manifests[0]["dataset"] == manifests[1]["dataset"]
    assert manifests[0]["generator"]["checkpoint_sha256"] != manifests[1]["generator"]["checkpoint_sha256"]
    assert "B - A" in err and "+-" in err and "real-vs-real floor" in err
