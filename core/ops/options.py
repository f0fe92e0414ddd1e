"""The ops layer's one switchboard: every choice that is not maths, in one frozen `OpsOptions`, read
with `current()`, set for a block with `use(...)` (a context variable: no module global changes).
Defaults are what `bench/RESULTS.md` measured best; the rest let benchmarks and tests run the
reference formulation through the same public functions:

    with use(impl="ref", fast_modconv=False, fuse_bias_act=False):
        frames = G.synthesis(ws, t, seeds)   # the reference implementation's op structure
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass

IMPLS = ("auto", "ref", "cuda")


@dataclass(frozen=True)
class OpsOptions:
    """impl: "auto" (CUDA kernels for CUDA tensors when they build, else the PyTorch reference),
    "ref" (always the reference) or "cuda" (the kernels, an error if they cannot build).
    fast_modconv: the demodulation of eq. 3 (StyleGAN2) as one matmul of squared styles with per-filter
    sums of squares, instead of materialising the per-sample weights (the reference's order).
    fuse_bias_act: with the shared conv, the demodulation, the bias, the activation and the next conv's
    input modulation in one bias_act pass, and on a GPU inside the upsampling filter's pass."""

    impl: str = "auto"
    fast_modconv: bool = True
    fuse_bias_act: bool = True

    def __post_init__(self):
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {self.impl!r}")


# The default is frozen, so sharing it is safe.
_CURRENT: contextvars.ContextVar[OpsOptions] = contextvars.ContextVar("sgv_ops_options", default=OpsOptions())  # noqa: B039


def current() -> OpsOptions:
    """The options in effect here."""
    return _CURRENT.get()


@contextlib.contextmanager
def use(options: OpsOptions | None = None, **changes):
    """Run a block with `options` (default: the current ones) with `changes` applied."""
    chosen = dataclasses.replace(options or current(), **changes)
    token = _CURRENT.set(chosen)
    try:
        yield chosen
    finally:
        _CURRENT.reset(token)


def resolve_impl(impl: str | None) -> str:
    """An op's `impl` argument, None meaning the current options' choice."""
    return current().impl if impl is None else impl
