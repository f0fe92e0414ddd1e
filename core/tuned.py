"""Tuned weights of one photo or clip (pivotal tuning): only the tensors that changed, stored as fp16
deltas from a base generator that is identified by a hash of its weights.

A delta file is small next to a checkpoint and can never be applied to the wrong model: `apply_delta`
refuses a generator whose weights hash differs from the one recorded at tuning time. The loaded model
is never modified; applying returns a tuned copy.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from core.checkpoint import weights_sha256
from core.files import atomic_write

FORMAT = "stylegan-v-studio/tuned-delta/1"


class TunedWeightsError(ValueError):
    """A delta file that is missing, corrupt, or belongs to another base model."""


def save_delta(path: str | os.PathLike, delta: dict[str, torch.Tensor], base_hash: str) -> Path:
    """Write the delta atomically (core.files.atomic_write) as safetensors with the base hash in its header."""
    if not delta:
        raise TunedWeightsError("the tuned generator does not differ from its base: nothing to save")
    tensors = {name: d.detach().cpu().half().contiguous() for name, d in delta.items()}
    header = {"format": FORMAT, "base_hash": base_hash}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header), suffix=".safetensors")


def load_delta(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """(delta {name: fp16 tensor}, base hash) from a file written by `save_delta`."""
    path = Path(path)
    if not path.is_file():
        raise TunedWeightsError(f"tuned weights {path} not found (they are saved next to the latent file; "
                                f"move both together)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        delta = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise TunedWeightsError(f"{path} is not a tuned-weights file: {exc}") from None
    if meta.get("format") != FORMAT or not meta.get("base_hash"):
        raise TunedWeightsError(f"{path} is a safetensors file but not tuned weights (format "
                                f"{meta.get('format')!r})")
    return delta, meta["base_hash"]


@torch.no_grad()
def apply_delta(G, delta: dict[str, torch.Tensor], base_hash: str, G_hash: str | None = None):
    """A copy of G with base + delta for each tensor of the delta. Refuses another base model.

    `G_hash`: G's `weights_sha256` when the caller has it cached (hashing reads every weight)."""
    own = G_hash or weights_sha256(G)
    if own != base_hash:
        raise TunedWeightsError(f"these tuned weights were made for another model (base weights "
                                f"{base_hash[:12]}, the loaded model is {own[:12]}): load the checkpoint "
                                f"the photo was projected with")
    tuned = copy.deepcopy(G)
    params = dict(tuned.named_parameters())
    for name, d in delta.items():
        p = params.get(name)
        if p is None or p.shape != d.shape:
            raise TunedWeightsError(f"tuned weights name {name} {tuple(d.shape)}, which this model lacks")
        p.add_(d.to(p.device, torch.float32))
    return tuned
