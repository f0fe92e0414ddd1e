"""Training: D loss goes down, resume equivalence, SIGKILL + resume, CLI run folder, 2-rank gloo."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from core.config import preset
from core.motion import Motion
from training import distributed, snapshot
from training.batches import ClipBatches
from training.config import TrainConfig
from training.dataset import VideoDataset
from training.loop import Trainer, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for v in range(3):
        d = root / f"v{v}"
        d.mkdir()
        base = rng.integers(0, 255, [16, 16, 3], dtype=np.uint8)
        for j in range(12):
            cv2.imwrite(str(d / f"{j:06d}.png"), np.roll(base, j, axis=1))
    return str(root)


def _cfg(data, **kw):
    base = dict(data=data, model=preset("tiny"), batch=2, workers=0, kimg_per_tick=0.012, snapshot_ticks=1,
                sample_ticks=1000, sample_videos=1, sample_frames=2, tensorboard=False, d_reg_interval=2)
    return TrainConfig(**{**base, **kw})


def test_d_steps_on_a_fixed_batch_lower_the_d_loss(data_dir):
    torch.set_num_threads(1)
    cfg = _cfg(data_dir, augment="none")
    tr = Trainer(cfg, distributed.init("cpu"))
    batch = ClipBatches(VideoDataset(data_dir), 2, 3)[0]
    real = batch["real"].float() / 127.5 - 1
    z = torch.randn([2, tr.G.z_dim], generator=torch.Generator().manual_seed(0))
    motion = Motion.from_seeds([1, 2])

    def d_loss():
        with torch.no_grad():
            fake = tr.loss.run_G(z, batch["gen_c"], batch["gen_t"], motion)
            lf = tr.loss.run_D(fake, batch["gen_t"], batch["gen_c"])
            lr = tr.loss.run_D(real, batch["real_t"], batch["real_c"])
            return float((torch.nn.functional.softplus(lf) + torch.nn.functional.softplus(-lr)).mean())

    before = d_loss()
    for _ in range(5):
        tr.D.requires_grad_(True)
        tr.opt_D.zero_grad(set_to_none=True)
        tr.loss.accumulate("Dmain", real, batch["real_t"], batch["real_c"], z, batch["gen_t"], batch["gen_c"],
                           motion)
        tr.opt_D.step()
    assert d_loss() < before - 1e-3


def _tensors(run_dir):
    net, _ = snapshot.find_latest(run_dir)
    return snapshot.load_network_tensors(net)


def test_resume_is_equivalent_to_an_uninterrupted_run(data_dir, tmp_path):
    torch.set_num_threads(1)
    # 4 steps of 2 clips x 3 frames = 0.024 kimg; ADA moving every step so its state matters too.
    cfg = _cfg(data_dir, total_kimg=0.024, augment_p=0.3, ada_interval=1, ada_kimg=0.05)
    full = train(cfg, str(tmp_path / "a"))
    half = train(cfg.replace(total_kimg=0.012), str(tmp_path / "b"))
    assert half["step"] == 2 and os.path.isfile(half["snapshot"])
    resumed = train(cfg, str(tmp_path / "b"), resume="latest")
    assert full["step"] == resumed["step"] == 4
    a, b = _tensors(tmp_path / "a"), _tensors(tmp_path / "b")
    assert a.keys() == b.keys() and any(k.startswith("G_ema.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    _, state = snapshot.find_latest(tmp_path / "b")
    assert float(snapshot.load_state(state)["augment_p"]) == pytest.approx(full["augment_p"])
    lines = [json.loads(x) for x in open(tmp_path / "b" / "stats.jsonl")]
    assert [x["kimg"] for x in lines] == [0.012, 0.024]
    assert full["sample"] and os.path.getsize(full["sample"]) > 0


def test_sigkill_mid_run_then_resume_from_last_snapshot(data_dir, tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "training", "--data", data_dir, "--outdir", str(out), "--preset", "tiny",
           "--batch", "2", "--workers", "0", "--total-kimg", "1000", "--kimg-per-tick", "0.006",
           "--snapshot-ticks", "1", "--sample-ticks", "1000", "--tensorboard", "false", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            runs = os.listdir(out) if out.exists() else []
            snap_dir = out / runs[0] / "snapshots" if runs else None
            snaps = os.listdir(snap_dir) if snap_dir is not None and snap_dir.exists() else []
            if sum(s.startswith("state-") for s in snaps) >= 2:
                break
            assert proc.poll() is None, "training exited early"
            time.sleep(0.2)
        else:
            pytest.fail("no snapshot within 240 s")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    run_dir = out / os.listdir(out)[0]
    assert json.loads((run_dir / "config.json").read_text())["model"]["name"] == "tiny"
    net, state = snapshot.find_latest(run_dir)
    step = snapshot.load_state(state)["step"]
    assert step >= 2
    cfg = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    target = (step + 1) * 6 / 1000
    info = train(cfg.replace(total_kimg=target), str(run_dir), resume="latest")
    assert info["step"] == step + 1 and info["kimg"] == pytest.approx(target)


def _ddp_worker(rank, port, data, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = _cfg(data, batch=4, augment_p=0.3, ada_interval=1, ada_kimg=0.05)
    dist = distributed.init("cpu")
    tr = Trainer(cfg, dist)
    batches = ClipBatches(VideoDataset(data), tr.batch_gpu, 3, seed=0, rank=rank)
    for s in range(3):
        tr.step(batches[s])
    sd = {f"G.{k}": v for k, v in tr.G.state_dict().items()}
    sd.update({f"D.{k}": v for k, v in tr.D.state_dict().items()})
    sd.update({f"G_ema.{k}": v for k, v in tr.G_ema.state_dict().items()})
    sd["p"] = tr.augment_pipe.p
    torch.save(sd, os.path.join(out, f"rank{rank}.pt"))
    distributed.cleanup()


@pytest.mark.slow  # ~25-30 s on 2 shared cores: two processes, three steps each
def test_two_rank_gloo_ends_with_identical_weights(data_dir, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(port, data_dir, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    init = Trainer(_cfg(data_dir, batch=4), distributed.init("cpu")).G.state_dict()
    assert any(not torch.equal(init[k], a[f"G.{k}"]) for k in init)  # the weights did train


def test_resume_edge_cases(data_dir, tmp_path, caplog):
    """(a) the tick count continues from the snapshot even when kimg_per_tick changes; (c) a damaged newest
    snapshot falls back to the newest intact pair, naming the file; (e) half-written temporary files from a
    killed save are removed at start."""
    torch.set_num_threads(1)
    run = tmp_path / "run"
    cfg = _cfg(data_dir, total_kimg=0.024)  # 2 ticks of 0.012 kimg, a snapshot each
    train(cfg, str(run))
    assert [json.loads(x)["tick"] for x in open(run / "stats.jsonl")] == [1, 2]
    nets = sorted((run / "snapshots").glob("network-*.safetensors"))
    assert len(nets) == 2
    # (c): the newest network truncated -> the older pair, with a warning naming the damaged file
    nets[-1].write_bytes(nets[-1].read_bytes()[:1000])
    with caplog.at_level("WARNING"):
        net, _ = snapshot.find_latest(run)
    assert net == str(nets[0]) and f"damaged snapshot {nets[-1]}" in caplog.text
    # (e): a temporary file left by a kill mid-save
    partial = run / "snapshots" / ".state-000000.036.pt.x1y2.tmp"
    partial.write_bytes(b"half")
    # (a): resume from the tick-1 pair with ticks half as long: ticks 2, 3, 4 (recomputing from kimg said 3, 4, 5)
    info = train(cfg.replace(kimg_per_tick=0.006, total_kimg=0.030), str(run), resume="latest")
    assert not partial.exists()
    ticks = [json.loads(x)["tick"] for x in open(run / "stats.jsonl")]
    assert ticks == [1, 2, 3, 4] and info["tick"] == 4, ticks


def test_resume_latest_says_which_run_and_refuses_another_architecture(data_dir, tmp_path, caplog, capsys):
    """(b) `--resume latest` names the run it picked when newer runs have no snapshot; (d) a --preset that
    differs from the run's model is refused with a message instead of being ignored."""
    from training.__main__ import main as train_main

    out = tmp_path / "runs"
    train(_cfg(data_dir, total_kimg=0.012), str(out / "00000-data-tiny-b2"))
    (out / "00001-data-tiny-b2").mkdir()  # a newer run killed before its first snapshot
    flags = ["--outdir", str(out), "--resume", "latest", "--workers", "0", "--device", "cpu"]
    assert train_main([*flags, "--preset", "small", "--total-kimg", "0.024"]) == 2
    assert "--preset small conflicts with the run being resumed (00000-data-tiny-b2" in capsys.readouterr().err
    with caplog.at_level("INFO"):
        assert train_main([*flags, "--total-kimg", "0.024"]) == 0
    assert "resuming 00000-data-tiny-b2, the newest run with a snapshot; newer runs without one: " \
           "00001-data-tiny-b2" in caplog.text
