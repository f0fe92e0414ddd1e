"""Snapshots of a run: the networks as a safetensors checkpoint plus a training-state file.

    snapshots/network-00012.345.safetensors   G_ema, G, D (+ config and metadata), core.checkpoint format
    snapshots/state-00012.345.pt              optimizers, augment p, ADA accumulators, counters

Names carry the kimg (frames seen by D / 1000) to three decimals, so snapshots never overwrite one
another. Each file is written to a temp name and renamed, the network first: a kill at any moment
leaves either the previous complete pair or the new one. The state file holds only tensors, dicts,
lists and numbers and is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
from typing import Any

import torch

from core.config import ModelConfig

STATE_FORMAT = "stylegan-v-studio/train-state/1"


class SnapshotError(RuntimeError):
    """No usable snapshot, or one that does not match this run."""


def snapshot_names(cur_nimg: int) -> tuple[str, str]:
    kimg = f"{cur_nimg / 1000:09.3f}"
    return f"network-{kimg}.safetensors", f"state-{kimg}.pt"


def save_network(path: str, modules: dict[str, torch.nn.Module], cfg: ModelConfig,
                 metadata: dict[str, Any]) -> None:
    """Atomic safetensors checkpoint through core.checkpoint (a minimal writer until it exists)."""
    try:
        from core.checkpoint import save_checkpoint
    except ImportError:  # pragma: no cover - core.checkpoint lands with the core issue
        save_checkpoint = None
    if save_checkpoint is not None:
        save_checkpoint(path, modules, cfg, metadata=metadata, fp16=False)
        return
    from safetensors.torch import save_file  # pragma: no cover

    tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
               for k, v in m.state_dict().items()}
    meta = {"config": cfg.to_json(), "metadata": json.dumps(metadata)}
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_network_tensors(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a network checkpoint, keyed "G_ema.<param>", "G.<param>", "D.<param>"."""
    try:
        from core.checkpoint import load_checkpoint
    except ImportError:  # pragma: no cover
        load_checkpoint = None
    if load_checkpoint is not None:
        return dict(load_checkpoint(path).tensors)
    from safetensors.torch import load_file  # pragma: no cover

    return load_file(path)


def load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    sd = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    if not sd:
        raise SnapshotError(f"snapshot has no tensors for {prefix}")
    module.load_state_dict(sd, strict=True)


def _atomic(path: str, write) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_state(path: str, state: dict[str, Any]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save({"format": STATE_FORMAT, **state}, f)

    _atomic(path, write)


def load_state(path: str) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SnapshotError(f"cannot read training state {path}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise SnapshotError(f"{path} is not a training-state file of this trainer")
    return state


def find_latest(run_dir: str) -> tuple[str, str] | None:
    """(network, state) paths of the newest complete snapshot pair in run_dir, or None."""
    pairs = []
    for state_path in glob.glob(os.path.join(run_dir, "snapshots", "state-*.pt")):
        m = re.search(r"state-([0-9.]+)\.pt$", state_path)
        net = os.path.join(os.path.dirname(state_path), f"network-{m.group(1)}.safetensors") if m else None
        if m and os.path.isfile(net):
            pairs.append((float(m.group(1)), net, state_path))
    if not pairs:
        return None
    _, net, state = max(pairs)
    return net, state


def resolve_resume(resume: str, run_dir: str | None = None) -> tuple[str, str]:
    """`latest` (newest complete pair in run_dir), a run folder, or a state / network file."""
    if resume == "latest":
        if run_dir is None:
            raise SnapshotError("--resume latest needs a run folder")
        found = find_latest(run_dir)
        if found is None:
            raise SnapshotError(f"no complete snapshot in {run_dir}")
        return found
    if os.path.isdir(resume):
        found = find_latest(resume)
        if found is None:
            raise SnapshotError(f"no complete snapshot in {resume}")
        return found
    m = re.search(r"(?:state|network)-([0-9.]+)\.(?:pt|safetensors)$", resume)
    if not m or not os.path.isfile(resume):
        raise SnapshotError(f"cannot resume from {resume!r}: give 'latest', a run folder or a snapshot file")
    d = os.path.dirname(resume)
    net = os.path.join(d, f"network-{m.group(1)}.safetensors")
    state = os.path.join(d, f"state-{m.group(1)}.pt")
    if not (os.path.isfile(net) and os.path.isfile(state)):
        raise SnapshotError(f"snapshot {m.group(1)} kimg is incomplete in {d}")
    return net, state
