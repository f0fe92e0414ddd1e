"""CLIP through open_clip, behind a weights resolver.

Order: an explicit file (argument or $SGV_CLIP_WEIGHTS) -> the user cache
($SGV_CACHE or ~/.cache/stylegan-v-studio)/clip/{model}__{tag}.safetensors -> open_clip's pretrained
download, tried only when a quick connectivity check succeeds (the result is then cached as safetensors).
Offline with none of these, a ClipWeightsError says that text editing needs CLIP weights and how to
provide them. Tests use `editing.testing.tiny_clip()`, a random-weight CLIP of the same open_clip class.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.resolve import cache_dir
from core.resolve import network_available as _network_available
from core.safe_pickle import not_weights_message


def network_available() -> bool:
    """Whether huggingface.co answers (one quick connect, so offline machines fail fast)."""
    return _network_available("huggingface.co", timeout=1.5)

log = logging.getLogger(__name__)

ENV_WEIGHTS = "SGV_CLIP_WEIGHTS"
DEFAULT_MODEL = "ViT-B-32"  # what StyleCLIP uses
DEFAULT_TAG = "openai"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipWeightsError(RuntimeError):
    """CLIP weights are missing or unreadable."""


def cached_clip_path(model_name: str = DEFAULT_MODEL, tag: str = DEFAULT_TAG) -> Path:
    return cache_dir() / "clip" / f"{model_name}__{tag}.safetensors"


class ClipModel(nn.Module):
    """A CLIP model with differentiable image preprocessing.

    encode_image: images [N, 3, H, W] in [-1, 1] (any size; resized to the model's input with area
    averaging when shrinking, bilinear when growing) -> unit embeddings [N, D].
    encode_text: list of prompts -> unit embeddings [N, D].
    """

    def __init__(self, model: nn.Module, tokenizer: Callable, name: str,
                 mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        size = model.visual.image_size
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        assert images.ndim == 4 and images.shape[1] in (1, 3), images.shape
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        x = (images.float() + 1.0) / 2.0  # [-1, 1] -> [0, 1]
        if x.shape[-2:] != self.image_size:
            shrink = x.shape[-1] > self.image_size[1]
            x = F.interpolate(x, size=self.image_size, mode="area" if shrink else "bilinear",
                              align_corners=None if shrink else False)
        return (x - self.mean) / self.std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(self.preprocess(images)).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        if isinstance(prompts, str):
            prompts = [prompts]
        tokens = self.tokenizer(list(prompts)).to(self.mean.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1])


def _quick_gelu(model_name: str, tag: str) -> bool:
    import open_clip

    try:
        return bool(open_clip.get_pretrained_cfg(model_name, tag).get("quick_gelu", False))
    except Exception:
        return False


def _build(model_name: str, tag: str, **kwargs) -> nn.Module:
    import open_clip

    return open_clip.create_model(model_name, force_quick_gelu=_quick_gelu(model_name, tag), device="cpu",
                                  **kwargs)


def _load_safetensors(model_name: str, tag: str, path: Path) -> nn.Module:
    from safetensors.torch import load_file

    model = _build(model_name, tag, pretrained=None)
    try:
        state = load_file(str(path))
    except Exception as exc:  # not safetensors at all
        raise ClipWeightsError(not_weights_message(path, "CLIP weights")) from exc
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise ClipWeightsError(f"{path} does not hold {model_name} CLIP weights: {exc}") from exc
    return model


def _save_cache(model: nn.Module, model_name: str, tag: str) -> Path:
    from safetensors.torch import save_file

    from core.files import atomic_write

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}

    def write(tmp: str) -> None:
        save_file(state, tmp, metadata={"model": model_name, "tag": tag})
        os.chmod(tmp, 0o644)

    return atomic_write(cached_clip_path(model_name, tag), write)


def _missing_message(model_name: str, tag: str, tried: list[str]) -> str:
    return (f"Text editing needs CLIP weights ({model_name}, '{tag}') and none were found: "
            f"{'; '.join(tried)}. Provide them by passing a weights file "
            f"(`python launch.py --clip-weights FILE`, `python -m editing --clip-weights FILE`), "
            f"by setting ${ENV_WEIGHTS} to a file (open_clip state dict, OpenAI .pt or safetensors), or by "
            f"placing a safetensors state dict at {cached_clip_path(model_name, tag)}; on a machine with "
            f"internet access the open_clip download happens by itself and is cached there.")


def clip_weights_missing(weights: str | os.PathLike | None = None, model_name: str = DEFAULT_MODEL,
                         tag: str = DEFAULT_TAG, *, allow_download: bool = True,
                         network_check: Callable[[], bool] = network_available) -> str | None:
    """Without loading anything: None when `load_clip` would find weights (a given file, $SGV_CLIP_WEIGHTS,
    the cache, or a download), else the message `load_clip` would raise."""
    weights = weights or os.environ.get(ENV_WEIGHTS)
    if weights:
        return None if Path(weights).is_file() else _missing_message(model_name, tag, [f"no file at {weights}"])
    cached = cached_clip_path(model_name, tag)
    if cached.is_file() or (allow_download and network_check()):
        return None
    tried = [f"no cached file at {cached}", "no network for open_clip's download" if allow_download
             else "downloads disabled"]
    return _missing_message(model_name, tag, tried)


def load_clip(model_name: str = DEFAULT_MODEL, tag: str = DEFAULT_TAG,
              weights: str | os.PathLike | None = None, *, device: torch.device | str = "cpu",
              allow_download: bool = True,
              network_check: Callable[[], bool] = network_available) -> ClipModel:
    """Resolve and load CLIP (default ViT-B/32 'openai', as StyleCLIP). Raises ClipWeightsError offline."""
    import open_clip

    tokenizer = open_clip.get_tokenizer(model_name)
    weights = weights or os.environ.get(ENV_WEIGHTS)
    tried: list[str] = []
    model = None
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise ClipWeightsError(_missing_message(model_name, tag, [f"no file at {path}"]))
        if path.suffix == ".safetensors":
            model = _load_safetensors(model_name, tag, path)
        else:
            try:
                model = _build(model_name, tag, pretrained=str(path))
            except Exception as exc:
                raise ClipWeightsError(not_weights_message(path, "CLIP weights")) from exc
    if model is None:
        cached = cached_clip_path(model_name, tag)
        if cached.is_file():
            model = _load_safetensors(model_name, tag, cached)
        else:
            tried.append(f"no cached file at {cached}")
    if model is None and allow_download:
        if network_check():
            try:
                download_dir = str(cache_dir() / "clip" / "download")
                model = _build(model_name, tag, pretrained=tag, cache_dir=download_dir)
                _save_cache(model, model_name, tag)
            except Exception as exc:
                tried.append(f"open_clip download failed ({exc})")
                model = None
        else:
            tried.append("no network for open_clip's download")
    elif model is None:
        tried.append("downloads disabled")
    if model is None:
        raise ClipWeightsError(_missing_message(model_name, tag, tried))
    mean, std = OPENAI_MEAN, OPENAI_STD
    try:
        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        mean, std = cfg.get("mean", mean), cfg.get("std", std)
    except Exception:
        pass
    return ClipModel(model, tokenizer, f"{model_name}/{tag}", mean, std).to(device)
