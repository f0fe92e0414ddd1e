"""Data parallelism over torch.distributed: one process per device, started by torchrun.

The same command runs on one CPU (no torchrun: world size 1), on CPUs over gloo, and on GPUs over
NCCL, across nodes too (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR). Gradients are
averaged with one flat all-reduce per optimizer step (the StyleGAN3 scheme) rather than through the
DDP wrapper, which keeps R1's double backward and the separately called mapping/synthesis simple.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from core import weight_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is available")
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        log.info("rank %d/%d on %s", rank, world, dev)
    return DistInfo(rank, world, local_rank, dev)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of x over ranks (x itself when not distributed)."""
    if world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
    return x


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average .grad over ranks in one flat all-reduce; missing grads count as zeros."""
    params = list(params)  # callers may have switched requires_grad off already; .grad is what counts
    if not params:
        return
    n = world_size()
    if n > 1:
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
        dist.all_reduce(flat)
        flat /= n
        offset = 0
        for p in params:
            size = p.numel()
            p.grad = flat[offset:offset + size].view_as(p).clone()
            offset += size
    for p in params:  # as ADA: a rare fp16 overflow must not poison the weights
        if p.grad is not None:
            torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Make parameters and buffers equal to those of rank src."""
    if world_size() > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)
        weight_cache.clear(module)  # the collective wrote behind the version counters


def average_buffers(module: torch.nn.Module) -> None:
    """Average float buffers (e.g. the mapping's running w_avg) so every rank keeps the same copy."""
    n = world_size()
    if n > 1:
        for name, b in module.named_buffers():
            if name.endswith("w_avg"):
                dist.all_reduce(b.data)
                b.data /= n


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
