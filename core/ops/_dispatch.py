"""Choosing between the pure-PyTorch reference and the CUDA kernel of an op.

`impl="ref"` always runs the reference. `impl="cuda"` runs the kernel and raises if it cannot be
built. `impl="auto"` (the default) runs the kernel for CUDA tensors when it builds and falls back to
the reference, with one warning per op, when it does not; CPU tensors always take the reference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

IMPLS = ("auto", "ref", "cuda")
_warned: set[str] = set()

# name -> loader returning the compiled module (raises on failure). Filled by core.ops.cuda.
_loaders: dict[str, Callable[[], object]] = {}
_loaded: dict[str, object] = {}
_failed: dict[str, BaseException] = {}


def register_loader(name: str, loader: Callable[[], object]) -> None:
    _loaders[name] = loader


def load_plugin(name: str) -> object:
    """Build (once, lazily) and return the CUDA extension for op `name`; raise on failure."""
    if name in _loaded:
        return _loaded[name]
    if name in _failed:
        raise RuntimeError(f"CUDA kernel for {name!r} failed to build earlier: {_failed[name]}")
    if name not in _loaders:
        _register_builtin_loaders()
    loader = _loaders.get(name)
    if loader is None:
        err = RuntimeError(f"no CUDA kernel is registered for op {name!r}")
        _failed[name] = err
        raise err
    try:
        _loaded[name] = loader()
    except Exception as exc:  # the build error is kept and re-raised for impl="cuda"
        _failed[name] = exc
        raise
    return _loaded[name]


def _register_builtin_loaders() -> None:
    try:
        from core.ops import cuda  # noqa: F401  (registers its loaders on import)
    except ImportError:
        pass


def resolve(name: str, impl: str, x: torch.Tensor) -> str:
    """Return "ref" or "cuda" for running op `name` on tensor `x`."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "ref":
        return "ref"
    if impl == "cuda":
        if not x.is_cuda:
            raise RuntimeError(f"impl='cuda' for {name!r} needs a CUDA tensor, got device {x.device}")
        load_plugin(name)
        return "cuda"
    if not x.is_cuda:
        return "ref"
    try:
        load_plugin(name)
        return "cuda"
    except Exception as exc:
        if name not in _warned:
            _warned.add(name)
            log.warning("CUDA kernel for %s unavailable (%s); using the PyTorch reference", name, exc)
        return "ref"
