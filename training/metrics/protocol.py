"""The paper's evaluation protocol (docs/reference.md, 'Metrics'; paper Appx C): which clips, which times, how many.

FVD_16: one 16-frame clip per real video at a uniform random offset, from the first 2048 videos
in sorted order that are long enough (as the paper's code does: short videos are dropped first,
then the first 2048 are taken); 2048 fake videos rendered at t = 0..15.
FVD_128: the same with 128 frames. FVD_128/8 ("fvd128_s8"): 16 frames at stride 8 over 128
(real offset in [0, L - 121], fake t = 0, 8, ..., 120; videos need >= 128 frames).
FID: all real frames vs 50k fake frames (3125 videos x 16 frames at t = 0..15).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.images import image_to_uint8

from .frechet import FeatureStats, MetricsError

log = logging.getLogger(__name__)

# callback(stage, done, total): stage like "fvd16/real"; done/total in videos (FVD) or frames (FID).
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # "fvd" (I3D on clips) or "fid" (Inception on frames)
    num_frames: int  # frames per clip (fake videos are rendered with this many frames)
    stride: int  # step between frames, in frames
    num_videos: int  # the paper's count: real clips / fake videos (FID: fake videos)

    @property
    def span(self) -> int:
        """Frames a real video must have: num_frames * stride (the paper's rule, 128 for fvd128_s8)."""
        return self.num_frames * self.stride


METRICS: dict[str, MetricSpec] = {
    "fvd16": MetricSpec("fvd16", "fvd", 16, 1, 2048),
    "fvd128": MetricSpec("fvd128", "fvd", 128, 1, 2048),
    "fvd128_s8": MetricSpec("fvd128_s8", "fvd", 16, 8, 2048),
    "fid": MetricSpec("fid", "fid", 16, 1, 3125),  # 3125 x 16 = 50k fake frames
}
ALIASES = {"fvd2048_16f": "fvd16", "fvd2048_128f": "fvd128", "fvd2048_128f_subsample8f": "fvd128_s8",
           "fvd128s8": "fvd128_s8", "fid50k": "fid", "fid50k_full": "fid"}


def get_spec(name: str) -> MetricSpec:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in METRICS:
        raise MetricsError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return METRICS[key]


def select_real_clips(lengths: Sequence[int], num_videos: int, num_frames: int, stride: int = 1,
                      seed: int = 0) -> list[tuple[int, np.ndarray]]:
    """-> [(video index, frame indices [num_frames])] for the real side of FVD.

    lengths: frame counts of the videos in sorted-name order. Videos with fewer than
    num_frames * stride frames are dropped, the first num_videos of the rest are kept, and each
    gets one clip at an offset drawn uniformly from every valid start (a seeded generator, so the
    selection is reproducible).
    """
    if num_frames < 1 or stride < 1 or num_videos < 1:
        raise MetricsError(f"bad clip protocol: {num_videos} videos x {num_frames} frames, stride {stride}")
    rng = np.random.default_rng(seed)
    steps = np.arange(num_frames) * stride
    clips = []
    for i, n in enumerate(lengths):
        if n < num_frames * stride:
            continue
        last_start = n - (num_frames - 1) * stride - 1  # the clip's last frame must exist
        clips.append((i, int(rng.integers(0, last_start + 1)) + steps))
        if len(clips) == num_videos:
            break
    return clips


def fake_times(num_frames: int, stride: int = 1) -> np.ndarray:
    """Frame times of fake videos: t = 0, stride, ..., (num_frames - 1) * stride -> float32 [T]."""
    return (np.arange(num_frames) * stride).astype(np.float32)


def fake_seeds(num_videos: int, seed: int = 0) -> list[int]:
    """Integer seeds of fake video i (content z and motion): disjoint ranges for different `seed`s."""
    return [seed * (1 << 20) + i for i in range(num_videos)]


def _z_from_seeds(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    # NumPy RandomState per seed, as the StyleGAN tools (and core.generator.z_from_seed) do.
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float()


def _progress(callback: ProgressFn | None, stage: str, done: int, total: int) -> None:
    if callback is not None:
        callback(stage, done, total)


def _append_alternating(halves: tuple[FeatureStats, FeatureStats], features: np.ndarray, first: int) -> None:
    """Item k of the batch (item first + k overall) goes to half (first + k) % 2."""
    halves[first % 2].append(features[0::2])
    if len(features) > 1:
        halves[(first + 1) % 2].append(features[1::2])


def real_clip_stats(dataset, detector, spec: MetricSpec, num_videos: int, batch_size: int = 8, seed: int = 0,
                    callback: ProgressFn | None = None) -> tuple[FeatureStats, FeatureStats]:
    """I3D statistics of the real clips of `spec` (dataset: the VideoDataset interface).

    -> two disjoint halves: the clips at even and at odd positions of the selection. Their merge is
    the real side of FVD; their distance to each other is the real-vs-real floor.
    """
    lengths = [dataset.num_frames(i) for i in range(len(dataset))]
    clips = select_real_clips(lengths, num_videos, spec.num_frames, spec.stride, seed)
    if len(clips) < 2:
        raise MetricsError(f"{spec.name}: only {len(clips)} videos have >= {spec.span} frames; "
                           "need 2 or more")
    if len(clips) < num_videos:
        log.warning("%s: only %d real videos have >= %d frames (asked for %d)", spec.name, len(clips),
                    spec.span, num_videos)
    halves = (FeatureStats(), FeatureStats())
    for b in range(0, len(clips), batch_size):
        # [B, T, H, W, 3]
        batch = np.stack([dataset.read_frames(i, idx) for i, idx in clips[b:b + batch_size]])
        _append_alternating(halves, detector(torch.from_numpy(batch)), b)
        _progress(callback, f"{spec.name}/real", min(b + batch_size, len(clips)), len(clips))
    return halves


@torch.no_grad()
def render_fake_videos(G, seeds: Sequence[int], t: np.ndarray, device: torch.device,
                       labels: np.ndarray | None = None) -> torch.Tensor:
    """Fake videos for `seeds` at times t [T] -> uint8 [N, 3, T, H, W] (CPU).

    Uses the core API: ws = G.mapping(z, c); frames = G.synthesis(ws, t, motion seeds) [N, T, C, H, W].
    """
    z = _z_from_seeds(seeds, G.z_dim).to(device)
    c = None
    if getattr(G, "c_dim", 0):
        if labels is None:  # no dataset labels: uniform one-hot classes
            rs = np.random.RandomState(seeds[0])
            labels = np.eye(G.c_dim, dtype=np.float32)[rs.randint(G.c_dim, size=len(seeds))]
        c = torch.as_tensor(labels, dtype=torch.float32, device=device)
    ws = G.mapping(z, c)
    tt = torch.as_tensor(t, dtype=torch.float32, device=device)[None].repeat(len(seeds), 1)  # [N, T]
    frames = G.synthesis(ws, tt, list(seeds), c=c)  # [N, T, C, H, W] in ~[-1, 1]
    if frames.ndim != 5 or frames.shape[1] != len(t):
        raise MetricsError(f"generator returned {tuple(frames.shape)}, expected [N, {len(t)}, C, H, W]")
    if frames.shape[2] == 1:
        frames = frames.repeat(1, 1, 3, 1, 1)
    frames = image_to_uint8(frames, reference_rule=True)  # the paper's float -> uint8 rule
    return frames.permute(0, 2, 1, 3, 4)  # [N, 3, T, H, W]


def _fake_labels(dataset, seeds: Sequence[int]) -> np.ndarray | None:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    rs = np.random.RandomState(seeds[0])  # labels of random real videos, as the paper's code does
    return labels[rs.randint(len(labels), size=len(seeds))]


def fake_clip_stats(G, detector, spec: MetricSpec, num_videos: int, device: torch.device, batch_size: int = 8,
                    seed: int = 0, dataset=None, callback: ProgressFn | None = None) -> FeatureStats:
    """I3D statistics of num_videos fake videos rendered at t = 0, stride, ... (spec.num_frames frames)."""
    t, seeds, stats = fake_times(spec.num_frames, spec.stride), fake_seeds(num_videos, seed), FeatureStats()
    for b in range(0, num_videos, batch_size):
        s = seeds[b:b + batch_size]
        stats.append(detector(render_fake_videos(G, s, t, device, _fake_labels(dataset, s))))
        _progress(callback, f"{spec.name}/fake", stats.num_items, num_videos)
    return stats


def real_frame_stats(dataset, detector, num_videos: int | None = None, batch_size: int = 32,
                     callback: ProgressFn | None = None) -> tuple[FeatureStats, FeatureStats]:
    """Inception statistics of every frame of the first num_videos videos (None: all, the paper's FID).

    -> two disjoint halves: the frames of the even- and of the odd-numbered videos.
    """
    n = len(dataset) if num_videos is None else min(num_videos, len(dataset))
    jobs = [(i, j) for i in range(n) for j in range(0, dataset.num_frames(i), batch_size)]
    total = sum(dataset.num_frames(i) for i in range(n))
    halves, done = (FeatureStats(), FeatureStats()), 0
    for i, j in jobs:
        frames = dataset.read_frames(i, range(j, min(j + batch_size, dataset.num_frames(i))))  # [B, H, W, 3]
        halves[i % 2].append(detector(torch.from_numpy(frames)))
        done += len(frames)
        _progress(callback, "fid/real", done, total)
    return halves


def fake_frame_stats(G, detector, spec: MetricSpec, num_videos: int, device: torch.device,
                     batch_size: int = 2, seed: int = 0, dataset=None,
                     callback: ProgressFn | None = None) -> FeatureStats:
    """Inception statistics of num_videos x 16 fake frames (t = 0..15 of each video)."""
    t, seeds, stats = fake_times(spec.num_frames, spec.stride), fake_seeds(num_videos, seed), FeatureStats()
    total = num_videos * spec.num_frames
    for b in range(0, num_videos, batch_size):
        s = seeds[b:b + batch_size]
        v = render_fake_videos(G, s, t, device, _fake_labels(dataset, s))  # [B, 3, T, H, W]
        stats.append(detector(v.permute(0, 2, 1, 3, 4).flatten(0, 1)))  # frames [B * T, 3, H, W]
        _progress(callback, "fid/fake", stats.num_items, total)
    return stats
