"""Checkpoints: safetensors weights with the model config and metadata as JSON in the header.

Tensors are stored under their module prefix ("G_ema.", "G.", "D."), so one file can hold a
G_ema-only export (what the studio needs) or all three networks. Writes are atomic: a crash leaves
either the old file or the new one, never a torn file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from core.config import ConfigError, ModelConfig
from core.files import atomic_write
from core.state import Checkpoint, CheckpointError, load_state, state_mismatch

__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "atomic_write", "load_checkpoint", "load_generator",
           "load_state", "read_header", "save_checkpoint", "state_mismatch"]

FORMAT = "stylegan-v-studio/1"


def save_checkpoint(path: str | os.PathLike, modules: dict[str, nn.Module], cfg: ModelConfig,
                    metadata: dict | None = None, fp16: bool = False) -> Path:
    """Save the state of `modules` (e.g. {"G_ema": G_ema}) with `cfg` and JSON-able `metadata`.

    fp16=True halves floating-point tensors (a G_ema export for shipping); loading restores float32.
    """
    tensors = {}
    for prefix, module in modules.items():
        for name, value in module.state_dict().items():
            value = value.detach().cpu()
            if fp16 and value.is_floating_point():
                value = value.to(torch.float16)
            tensors[f"{prefix}.{name}"] = value.contiguous()
    header = {"format": FORMAT, "config": cfg.to_json(), "metadata": json.dumps(metadata or {})}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def read_header(path: str | os.PathLike) -> dict:
    """The JSON metadata of a safetensors file, without reading the tensors."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < 100 * 2**20:
                raise CheckpointError(f"{path} is not a safetensors checkpoint (bad header size)")
            header = json.loads(f.read(size))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {exc}") from None
    return header.get("__metadata__") or {}


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; raise CheckpointError with a readable reason."""
    path = Path(path)
    meta = read_header(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a StyleGAN-V Studio checkpoint "
                              f"(format {meta.get('format')!r}); convert released .pkl files with core.convert")
    try:
        cfg = ModelConfig.from_json(meta["config"])
        metadata = json.loads(meta.get("metadata", "{}"))
    except (KeyError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{path} has an invalid config: {exc}") from None
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt: {exc}") from None
    tensors = {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}
    return Checkpoint(cfg, tensors, metadata)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", which: str = "G_ema"):
    """Build the generator from the checkpoint's config and load `which` ("G_ema" or "G"), in eval mode.

    `.pkl` files (checkpoints released with the paper) go through the safe importer.
    """
    from core.generator import Generator

    if str(path).endswith(".pkl"):
        from core.official import import_official  # restricted unpickler; never runs embedded code

        ckpt = import_official(path)
    else:
        ckpt = load_checkpoint(path)
    state = ckpt.module_state(which)
    if not state:
        raise CheckpointError(f"{path} holds no {which} (it has: {', '.join(ckpt.modules) or 'nothing'})")
    G = Generator(ckpt.cfg)
    load_state(G, state, f"{which} of {path}")
    return G.eval().requires_grad_(False).to(device)


def weights_sha256(module: nn.Module) -> str:
    """sha256 (hex) of a module's weights: names, dtypes, shapes and bytes of its state, on the CPU.

    The same weights give the same hash however they were loaded (.safetensors or a released .pkl)."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        value = value.detach().cpu().contiguous()
        h.update(f"{name}|{value.dtype}|{tuple(value.shape)}\n".encode())
        h.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return h.hexdigest()
