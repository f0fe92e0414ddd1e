"""Checkpoint contents in memory and strict state loading.

Shared by both checkpoint readers, our safetensors format (`core.checkpoint`) and the paper's pickles
(`core.official`), so that neither has to import the other: `core.checkpoint` dispatches `.pkl` files
to `core.official`, and both build on this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from core.config import ModelConfig


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, truncated or does not fit the model."""


@dataclass
class Checkpoint:
    cfg: ModelConfig
    tensors: dict[str, torch.Tensor]
    metadata: dict = field(default_factory=dict)

    def module_state(self, prefix: str) -> dict[str, torch.Tensor]:
        p = prefix + "."
        return {k[len(p):]: v for k, v in self.tensors.items() if k.startswith(p)}

    @property
    def modules(self) -> list[str]:
        return sorted({k.split(".", 1)[0] for k in self.tensors})


def state_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]):
    """(missing, unexpected, shape mismatches) between a module's state dict `own` and `state`, sorted."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs ours {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    return missing, unexpected, shapes


def load_state(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load `state` into `module` strictly, naming every missing, unexpected or mis-shaped tensor."""
    missing, unexpected, shapes = state_mismatch(module.state_dict(), state)
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:8]}" if missing else "", f"unexpected {unexpected[:8]}" if unexpected else "",
                 f"shape mismatch {shapes[:8]}" if shapes else ""]
        raise CheckpointError(f"{what} does not fit the model: " + "; ".join(p for p in parts if p))
    module.load_state_dict(state)
