"""Choosing between the pure-PyTorch reference and the CUDA kernel of an op.

"ref": the reference. "cuda": the kernel, or the build's error. "auto": the kernel for CUDA tensors
when it builds, else the reference (one warning); CPU tensors always take the reference. None: the
choice of `core.ops.options.current()`. One extension holds both ops; it is built at most once per
process (`core/ops/cuda/build.py`), never at import.
"""

from __future__ import annotations

import functools
import logging

import torch

from core.ops.cuda.build import load_extension
from core.ops.options import IMPLS, resolve_impl

log = logging.getLogger(__name__)


@functools.cache
def _build() -> tuple[object | None, BaseException | None]:
    """(the extension's op namespace, None) or (None, the error): a failed build is not retried."""
    try:
        return load_extension(), None
    except Exception as exc:  # kept, re-raised for impl="cuda", warned about once for "auto"
        return None, exc


def extension():
    """The CUDA extension's op namespace (`torch.ops.sgv_ops_<hash>`); raise the build's error."""
    module, error = _build()
    if error is not None:
        raise RuntimeError(f"the CUDA ops could not be built: {error}") from error
    return module


@functools.cache
def _warn_fallback(reason: str) -> None:
    log.warning("CUDA kernels unavailable (%s); using the PyTorch reference ops", reason)


def resolve(name: str, impl: str | None, x: torch.Tensor) -> str:
    """Return "ref" or "cuda" for running op `name` on tensor `x`."""
    impl = resolve_impl(impl)
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "ref":
        return "ref"
    if impl == "cuda":
        if not x.is_cuda:
            raise RuntimeError(f"impl='cuda' for {name!r} needs a CUDA tensor, got device {x.device}")
        extension()
        return "cuda"
    if not x.is_cuda:
        return "ref"
    module, error = _build()
    if error is not None:
        _warn_fallback(str(error))
        return "ref"
    return "cuda"
