"""A restricted unpickler for the NVIDIA-style "persistent" pickles released with the paper.

Those files embed the source code of their network classes; loading them with `pickle.load` runs that
code (docs/reference.md, 'Released checkpoints'). Here no embedded code runs and no class of the file is imported:

- `torch_utils.persistence._reconstruct_persistent_obj(meta)` is replaced by a function that stores
  `meta` in an inert `PersistentRecord` (class name, version, the module's `__dict__` state);
- tensors are rebuilt from raw storage bytes (legacy `torch.storage._load_from_bytes` payloads go through
  `torch.load(weights_only=True)`, torch's own restricted loader; zip-format storages are read as bytes);
- EasyDict, OmegaConf containers and nodes, torch containers (Sequential, Embedding) and optimizers become
  inert records holding their pickled state; numpy scalars, arrays and dtypes are rebuilt as data.

Any other global is refused with an error naming it ("refusing to load posix.system").
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.state import CheckpointError

log = logging.getLogger(__name__)


class OfficialImportError(CheckpointError):
    """An official pickle is unreadable, refused (it asks for code), or does not fit our model."""


# ------------------------------------------------------------------------------------------ inert records

@dataclass
class PersistentRecord:
    """What `_reconstruct_persistent_obj(meta)` received; the embedded source is kept only as a digest."""

    class_name: str
    version: Any
    source_sha256: str
    state: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.class_name


class ObjectRecord:
    """An allowed plain-pickled object (torch container, OmegaConf node, optimizer, ...): its state only.

    One subclass per allowed global, so that `NEWOBJ` can create it and `BUILD` fill it; nothing runs.
    """

    qualname = "?"

    def __new__(cls, *args):  # NEWOBJ calls only __new__; REDUCE (e.g. torch.device("cpu")) calls both
        self = object.__new__(cls)
        self.args, self.state, self.items = args, None, {}
        return self

    def __init__(self, *args):
        pass

    def __setstate__(self, state) -> None:
        self.state = state

    def __setitem__(self, key, value) -> None:  # SETITEMS on dict-like records
        self.items[key] = value

    def append(self, value) -> None:  # APPENDS on list-like records
        self.items[len(self.items)] = value

    def extend(self, values) -> None:
        for v in values:
            self.append(v)

    @property
    def kind(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"<record {self.qualname}>"


class EasyDictRecord(dict):
    """Stand-in for dnnlib.util.EasyDict: a plain dict (attribute state, if any, is ignored)."""

    def __setstate__(self, state) -> None:
        if isinstance(state, dict):
            self.update(state)


class TypeRef:
    """A type named by the file (`typing.Any`, `builtins.dict`): kept as a name, never called."""

    def __init__(self, qualname: str):
        self.qualname = qualname

    def __call__(self, *args, **kwargs):
        raise OfficialImportError(f"refusing to call {self.qualname}")

    def __repr__(self) -> str:
        return f"<type {self.qualname}>"


def _record_class(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[-1] + "Record", (ObjectRecord,), {"qualname": qualname})


class _Fn:
    """A fresh wrapper around an allowed function per lookup: a pickle can call it, but a BUILD on it
    (setting attributes such as `__defaults__` on our shared functions) is refused."""

    __slots__ = ("fn", "qualname")

    def __init__(self, fn, qualname: str):
        self.fn, self.qualname = fn, qualname

    def __call__(self, *args):
        return self.fn(*args)

    def __setstate__(self, state):
        raise OfficialImportError(f"refusing to modify {self.qualname}")

    def __reduce__(self):
        raise TypeError("not picklable")


# ------------------------------------------------------------------------------------------ rebuild functions

def _capture_persistent(meta) -> PersistentRecord:
    """Replaces `_reconstruct_persistent_obj`: records the meta dict, never executes `module_src`."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise OfficialImportError("malformed persistent object (expected meta dict with type='class' and a state)")
    src = meta.get("module_src") or ""
    digest = hashlib.sha256(src.encode("utf-8", "replace")).hexdigest() if isinstance(src, str) else ""
    return PersistentRecord(str(meta.get("class_name")), meta.get("version"), digest, dict(meta["state"]))


def _as_storage(storage) -> tuple[torch.UntypedStorage, torch.dtype]:
    if isinstance(storage, torch.storage.TypedStorage):
        return storage._untyped_storage, storage.dtype  # .untyped() would warn that TypedStorage is deprecated
    if isinstance(storage, tuple) and len(storage) == 2 and isinstance(storage[0], torch.UntypedStorage):
        return storage
    raise OfficialImportError(f"tensor rebuild got {type(storage).__name__} instead of a storage")


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> torch.Tensor:
    """`torch._utils._rebuild_tensor(_v2)`: a tensor viewing a storage (hooks / metadata are dropped)."""
    untyped, dtype = _as_storage(storage)
    if not (isinstance(storage_offset, int) and all(isinstance(s, int) for s in (*size, *stride))):
        raise OfficialImportError("malformed tensor (offset, size and stride must be integers)")
    numel_needed = storage_offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if all(size) else 0
    if numel_needed * dtype.itemsize > untyped.nbytes():
        raise OfficialImportError("malformed tensor (it reaches beyond its storage)")
    t = torch.empty((0,), dtype=dtype)
    t.set_(untyped, storage_offset, tuple(size), tuple(stride))
    return t


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_state) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise OfficialImportError("parameter rebuild got a non-tensor")
    return data.detach()


def _rebuild_from_type_v2(func, new_type, args, state):
    if getattr(func, "fn", None) not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(new_type, TypeRef):
        raise OfficialImportError("refusing tensor subclass rebuild with an unexpected function or type")
    return func(*args)


def _load_storage_bytes(b) -> torch.storage.TypedStorage:
    """`torch.storage._load_from_bytes`: a legacy torch.save of one storage, read by torch's weights-only loader."""
    if not isinstance(b, (bytes, bytearray)):
        raise OfficialImportError("storage payload is not bytes")
    try:
        storage = torch.load(io.BytesIO(bytes(b)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise OfficialImportError(f"refusing storage payload: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # truncated or corrupt payloads raise many types
        raise OfficialImportError(f"corrupt tensor storage in the pickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(storage, torch.storage.TypedStorage):
        raise OfficialImportError(f"storage payload holds {type(storage).__name__}, not a storage")
    return storage


def _defaultdict(factory=None, *args):
    if factory is not None and not isinstance(factory, TypeRef):
        raise OfficialImportError("refusing defaultdict with a callable factory")
    return {}


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise OfficialImportError("refusing numpy object scalar")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _np_reconstruct(subtype, shape, dtype_code):
    if subtype is not np.ndarray:
        raise OfficialImportError("refusing numpy array subclass")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _np_frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise OfficialImportError("refusing numpy object array")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


def _np_dtype(*args):
    return np.dtype(*args)


def _torch_size(*args):
    return tuple(*args)


def _reconstructor(cls, base, state=None):
    """copyreg._reconstructor (protocol 0/1 pickles): only for our inert record classes."""
    if not (isinstance(cls, type) and issubclass(cls, (ObjectRecord, EasyDictRecord))):
        raise OfficialImportError(f"refusing copyreg._reconstructor for {cls!r}")
    return cls.__new__(cls)


def _set(items=()):
    return set(items)


def _frozenset(items=()):
    return frozenset(items)


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}

# Module prefixes the reference code was run under: `torch_utils.persistence` or `src.torch_utils.persistence`.
_REPO_PACKAGES = ("torch_utils", "dnnlib", "training")

_FUNCTIONS = {
    "torch_utils.persistence._reconstruct_persistent_obj": _capture_persistent,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.storage._load_from_bytes": _load_storage_bytes,
    "torch.Size": _torch_size,
    "collections.OrderedDict": _ordered_dict,
    "collections.defaultdict": _defaultdict,
    "copyreg._reconstructor": _reconstructor,
    "numpy.dtype": _np_dtype,
    "numpy.ndarray": np.ndarray,
    "numpy.core.multiarray.scalar": _np_scalar,
    "numpy._core.multiarray.scalar": _np_scalar,
    "numpy.core.multiarray._reconstruct": _np_reconstruct,
    "numpy._core.multiarray._reconstruct": _np_reconstruct,
    "numpy.core.numeric._frombuffer": _np_frombuffer,
    "numpy._core.numeric._frombuffer": _np_frombuffer,
    "dnnlib.util.EasyDict": EasyDictRecord,
    "builtins.set": _set,
    "builtins.frozenset": _frozenset,
}

_TYPE_NAMES = {
    "typing.Any", "typing.Optional", "typing.Union", "typing.Dict", "typing.List", "typing.Tuple",
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.int", "builtins.float", "builtins.str",
    "builtins.bool", "builtins.bytes", "builtins.object", "builtins.NoneType",
    "torch._tensor.Tensor", "torch.Tensor", "torch.nn.parameter.Parameter",
}

# Plain-pickled classes whose state is kept as an inert record (never instantiated for real).
_RECORD_NAMES = {
    "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig", "omegaconf.base.Metadata",
    "omegaconf.base.ContainerMetadata", "omegaconf.nodes.AnyNode", "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode", "omegaconf.nodes.FloatNode", "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.EnumNode", "omegaconf.nodes.BytesNode", "omegaconf.nodes.PathNode",
    "omegaconf.nodes.ValueNode", "omegaconf.nodes.InterpolationResultNode", "omegaconf.base.Node",
    "torch.nn.modules.container.Sequential", "torch.nn.modules.container.ModuleList",
    "torch.nn.modules.container.ModuleDict", "torch.nn.modules.sparse.Embedding",
    "training.layers.TemporalDifferenceEncoder",
    "torch.optim.adam.Adam", "torch.optim.adamw.AdamW", "torch.optim.sgd.SGD",
    "torch.device",
}


def _canonical(module: str, name: str) -> str:
    if module == "__builtin__":  # protocol 0-2 pickles (torch.save) name builtins like Python 2 did
        module = "builtins"
    if module.startswith("src.") and module.split(".")[1] in _REPO_PACKAGES:
        module = module[4:]
    return f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allowlisted globals above; `storages` serves zip-format persistent ids."""

    def __init__(self, file, storages: dict[str, tuple] | None = None):
        super().__init__(file)
        self._storages = storages
        self._records: dict[str, type] = {}  # per load: a pickle cannot alter the classes of another load

    def find_class(self, module: str, name: str):
        qual = _canonical(module, name)
        if qual in _FUNCTIONS:
            fn = _FUNCTIONS[qual]
            return fn if isinstance(fn, type) else _Fn(fn, qual)
        if qual in _RECORD_NAMES:
            if qual not in self._records:
                self._records[qual] = _record_class(qual)
            return self._records[qual]
        if qual in _TYPE_NAMES:
            return TypeRef(qual)
        if module == "torch" and name in _STORAGE_DTYPES:
            return TypeRef(f"torch.{name}")
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise OfficialImportError(f"refusing to load {module}.{name}: the pickle asks for code that is not "
                                  "part of a released checkpoint (nothing was executed)")

    def persistent_load(self, pid):
        if self._storages is None:
            raise OfficialImportError("unexpected persistent id in a plain pickle")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise OfficialImportError(f"unsupported persistent id {str(pid)[:60]}")
        storage_type, key = pid[1], str(pid[2])
        if not (isinstance(storage_type, TypeRef) and storage_type.qualname.split(".")[-1] in _STORAGE_DTYPES):
            raise OfficialImportError(f"unsupported storage type {storage_type!r}")
        if key not in self._storages:
            raise OfficialImportError(f"storage {key} is missing from the archive")
        return self._storages[key](_STORAGE_DTYPES[storage_type.qualname.split(".")[-1]])


# ------------------------------------------------------------------------------------------ entry point

def _zip_storages(zf: zipfile.ZipFile):
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pkl:
        raise OfficialImportError("zip archive without data.pkl: not a torch.save checkpoint")
    root = pkl[0][: -len("data.pkl")]

    def loader(key: str):
        def load(dtype: torch.dtype):
            raw = bytearray(zf.read(f"{root}data/{key}"))
            untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
            return untyped, dtype
        return load

    keys = {n[len(root) + 5:]: loader(n[len(root) + 5:]) for n in names if n.startswith(f"{root}data/")}
    return zf.read(pkl[0]), keys


def load_official_pickle(path: str | Path) -> Any:
    """Unpickle `path` without running any of its code; persistent modules become `PersistentRecord`s."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if head.startswith(b"PK\x03\x04"):
                with zipfile.ZipFile(f) as zf:
                    data, storages = _zip_storages(zf)
                    return RestrictedUnpickler(io.BytesIO(data), storages).load()
            if not head or head[0] != 0x80:
                raise OfficialImportError("not a pickle (it does not start with a pickle protocol header); "
                                          "expected a network-snapshot-*.pkl")
            return RestrictedUnpickler(f).load()
    except OfficialImportError as exc:
        raise OfficialImportError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise OfficialImportError(f"checkpoint not found: {path}") from None
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError, IndexError,
            TypeError, AttributeError, UnicodeDecodeError, MemoryError, RuntimeError) as exc:
        raise OfficialImportError(f"{path} is truncated or not a valid checkpoint pickle "
                                  f"({type(exc).__name__}: {exc})") from None
