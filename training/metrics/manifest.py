"""The manifest beside every metric result: exactly what was measured, against what, with which code.

Two figures are comparable only when their manifests agree on the dataset's index hash, the protocol
(clip length, stride, counts, resize rule), the detector's weights hash and the seeds; the generator's
hashes say which model the figure belongs to. docs/metrics.md explains each field.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from importlib import metadata

from core.checkpoint import weights_sha256

from .protocol import MetricSpec

FORMAT = "stylegan-v-studio/metrics-manifest/1"
PACKAGES = ("torch", "numpy", "scipy", "safetensors", "opencv-python-headless", "opencv-python", "Pillow")

REAL_RESIZE = ("short side resized to R with Lanczos (OpenCV INTER_LANCZOS4), then centre-cropped to R x R "
               "(core.images.resize_square); R = the generator's resolution; data whose frames are smaller than "
               "R is refused")
FAKE_RULE = "rendered at R x R; float -> uint8 as x * 127.5 + 128, clamped to [0, 255] and truncated (the paper's)"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def detector_entry(kind: str, det) -> dict:
    """Name, weights hash and input rule of a loaded detector (test stand-ins without a model: no hash)."""
    model = getattr(det, "model", None)
    size = getattr(det, "input_size", None) or getattr(det, "size", None)
    rule = (f"uint8 -> [-1, 1], each frame resized bilinearly (half-pixel centres) to {size} x {size}"
            if size else "the detector's own")
    return {"kind": kind, "name": getattr(det, "name", type(det).__name__),
            "weights_sha256": weights_sha256(model) if model is not None else None, "input": rule}


def spec_entry(spec: MetricSpec, num_real: int, num_fake: int, halves: tuple[int, int],
               real_videos: int) -> dict:
    """The protocol of one metric as run: num_real / num_fake in clips (FVD) or frames (FID)."""
    if spec.kind == "fvd":
        real = (f"one {spec.num_frames}-frame clip at stride {spec.stride} per real video at a uniform random "
                f"offset (videos with >= {spec.span} frames, the first {num_real} in name order)")
        fake = f"{num_fake} videos at t = 0, {spec.stride}, ..., {(spec.num_frames - 1) * spec.stride}"
    else:
        real = f"every frame of the first {real_videos} videos ({num_real} frames)"
        fake = f"{num_fake} frames: t = 0..{spec.num_frames - 1} of each fake video"
    return {"kind": spec.kind, "clip_frames": spec.num_frames, "stride": spec.stride, "real": real,
            "fake": fake, "num_real": num_real, "num_fake": num_fake, "floor_halves": list(halves)}


def build_manifest(G, dataset, checkpoint: str | os.PathLike | None, detectors: dict, entries: dict,
                   real_seed: int, fake_seeds: list[int], wall_time_s: float) -> dict:
    """The manifest (a JSON-able dict) of one compute_metrics call.

    entries: {metric name: spec_entry(...)}; detectors: {"i3d" | "inception": detector} that were used.
    """
    index = getattr(dataset, "index_sha256", None)
    path = getattr(dataset, "path", None)
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "generator": {
            "checkpoint": os.path.abspath(checkpoint) if checkpoint else None,
            "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
            "weights_sha256": weights_sha256(G),
            "resolution": int(G.img_resolution),
        },
        "dataset": {
            "path": os.path.abspath(path) if path else None,
            "index_sha256": index() if callable(index) else None,
            "num_videos": len(dataset),
            "resolution": int(dataset.resolution),
            "native_resolution": int(getattr(dataset, "native_resolution", dataset.resolution)),
        },
        "resize": {"real": REAL_RESIZE, "fake": FAKE_RULE},
        "metrics": entries,
        "detectors": {k: detector_entry(k, d) for k, d in detectors.items() if d is not None},
        "seeds": {"real_clips": real_seed, "fake": fake_seeds,
                  "fake_rule": "fake video i of seed s: content z and motion seed s * 2**20 + i"},
        "packages": package_versions(),
        "wall_time_s": round(wall_time_s, 3),
    }
