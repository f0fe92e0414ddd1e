"""Weight-derived tensors reused across inference calls.

The run-time weight scaling of equalized learning rate, the demodulation's per-filter sums of squares,
fp16 copies and flipped kernels depend only on the parameters, yet a forward pass recomputed them at
every call: at batch 1 (scrubbing) that was ~15% of a small-preset frame on the CPU. `derived(t, tag, fn)`
keeps fn(t) on the tensor itself and reuses it while the tensor's version counter (bumped by every
in-place update: optimizer steps, EMA, load_state_dict), storage and device are unchanged. Whenever
autograd records through the tensor (training) it recomputes, so gradients are never cut.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Hashable

import torch

_ATTR = "_sgv_derived"
_DISABLED = contextvars.ContextVar("sgv_weight_cache_disabled", default=False)


@contextlib.contextmanager
def disabled():
    """Compute every derived tensor afresh inside this block (CUDA-graph capture: the graph must
    recompute them at each replay, or it would keep reading tensors the cache may later free)."""
    token = _DISABLED.set(True)
    try:
        yield
    finally:
        _DISABLED.reset(token)


def derived(t: torch.Tensor, tag: Hashable, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """fn(t), cached on t under `tag` (which must name everything else fn depends on)."""
    if (torch.is_grad_enabled() and t.requires_grad) or torch.compiler.is_compiling() or _DISABLED.get():
        return fn(t)
    state = (t._version, t.data_ptr(), t.device, t.dtype, tuple(t.shape))
    cache = t.__dict__.setdefault(_ATTR, {})
    hit = cache.get(tag)
    if hit is not None and hit[0] == state:
        return hit[1]
    with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable by autograd later
        value = fn(t)
    cache[tag] = (state, value)
    return value


def clear(module: torch.nn.Module) -> None:
    """Drop the cached tensors of a module's parameters and buffers: call it after writing into their
    storage behind the version counter's back (`.data`, torch.distributed collectives)."""
    for t in list(module.parameters()) + list(module.buffers()):
        t.__dict__.pop(_ATTR, None)
