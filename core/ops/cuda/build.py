"""Building the CUDA extension: lazily, once per source hash, with ninja.

Both ops live in one extension (`ops.cpp` + one `.cu` per op). The build directory and the module
name carry a hash of the sources, the compiler flags, the target architectures and the torch/CUDA/
Python versions, so a changed kernel never loads a stale binary and unchanged ones rebuild nothing.
Nothing here runs at import: `load_extension()` is called by the op loaders on first GPU use.

CLI (the CI compile check, no GPU needed): `python -m core.ops.cuda --arch 9.0` (`__main__.py`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("ops.cpp", "bias_act.cu", "upfirdn2d.cu")
HEADERS = ("common.h", "types.cuh", "act.cuh")
CUDA_FLAGS = ("-O3", "-std=c++17", "--expt-relaxed-constexpr")
CXX_FLAGS = ("-O3",)  # the C++ standard is torch's own (C++20 for recent versions)
CACHE_ENV = "SGV_EXTENSIONS_DIR"


class BuildError(RuntimeError):
    """The CUDA extension could not be built or loaded; the message says why."""


def cache_root() -> Path:
    """`$SGV_EXTENSIONS_DIR`, else `$XDG_CACHE_HOME/stylegan-v-studio/extensions` (~/.cache by default)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "stylegan-v-studio" / "extensions"


def source_hash(arch_list: str | None = None) -> str:
    """Hex digest of everything that determines the binary."""
    h = hashlib.sha256()
    for name in SOURCES + HEADERS:
        h.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes() + b"\0")
    key = [torch.__version__, str(torch.version.cuda), sys.version.split()[0], arch_list or "",
           " ".join(CUDA_FLAGS), " ".join(CXX_FLAGS)]
    h.update("|".join(key).encode())
    return h.hexdigest()


def find_cuda_home() -> str | None:
    """$CUDA_HOME / $CUDA_PATH, else the first /usr/local/cuda* holding bin/nvcc and libcudart."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    candidates += sorted((str(p) for p in Path("/usr/local").glob("cuda-*")), reverse=True)
    for cand in candidates:
        if not cand:
            continue
        root = Path(cand)
        has_rt = any((root / lib / "libcudart.so").exists() for lib in ("lib64", "lib"))
        if (root / "bin" / "nvcc").exists() and has_rt:
            return str(root)
    return None


def _arch_list() -> str | None:
    """The target architectures: $TORCH_CUDA_ARCH_LIST, else those of the visible GPUs."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ";".join(f"{major}.{minor}" for major, minor in caps)
    return None


@functools.lru_cache(maxsize=1)
def load_extension(verbose: bool = False, arch: str | None = None):
    """Build (if needed) and load the extension; return its op namespace `torch.ops.sgv_ops_<hash>`.

    Raises BuildError with the compiler's message when it cannot be built or loaded.
    """
    arch = arch or _arch_list()  # an explicit arch (the CLI's --arch) wins
    if arch is None:
        raise BuildError("no CUDA device visible and TORCH_CUDA_ARCH_LIST unset: cannot pick a target arch")
    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise BuildError("no CUDA toolkit found: set CUDA_HOME to a directory with bin/nvcc and "
                         "lib64/libcudart.so")
    os.environ.setdefault("CUDA_HOME", cuda_home)  # read by cpp_extension when first imported
    try:
        from torch.utils import cpp_extension
    except ImportError as exc:  # pragma: no cover - torch without the build helpers
        raise BuildError(f"torch.utils.cpp_extension unavailable: {exc}") from exc
    if not cpp_extension.is_ninja_available():
        raise BuildError("ninja is not installed (pip install ninja, or apt-get install ninja-build)")
    # cpp_extension reads CUDA_HOME once at import; it may have guessed a directory without nvcc.
    cpp_extension.CUDA_HOME = cuda_home
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch

    digest = source_hash(arch)
    name = f"sgv_ops_{digest[:12]}"
    build_dir = cache_root() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        module = cpp_extension.load(
            name=name,
            sources=[str(SOURCE_DIR / s) for s in SOURCES],
            extra_cflags=list(CXX_FLAGS),
            extra_cuda_cflags=list(CUDA_FLAGS),
            extra_include_paths=[str(SOURCE_DIR)],
            build_directory=str(build_dir),
            with_cuda=True,
            is_python_module=False,  # ops.cpp registers torch.ops.<name>.*; loading it runs the registration
            verbose=verbose,
        )
        module = getattr(torch.ops, name)
    except Exception as exc:
        raise BuildError(f"building the CUDA ops in {build_dir} failed: {exc}") from exc
    log.info("CUDA ops %s ready in %.1f s (arch %s, %s)", name, time.perf_counter() - t0, arch, build_dir)
    return module
