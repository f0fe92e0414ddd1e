"""Float images <-> 8-bit pixels: the one place that maps the generator's [-1, 1] range to uint8 and back."""

from __future__ import annotations

import numpy as np
import torch


def image_to_uint8(x: torch.Tensor, *, reference_rule: bool = False) -> torch.Tensor:
    """A float image tensor in [-1, 1] (any shape) -> uint8 tensor of the same shape, on the CPU.

    Default: clamp to [-1, 1], then round((x + 1) * 127.5) to the nearest integer; what previews, videos,
    training samples and projections show.
    reference_rule=True: StyleGAN-V's metric code, (x * 127.5 + 128) clamped to [0, 255] and truncated;
    the FID/FVD evaluation uses it so that its numbers compare with the paper's.
    """
    x = x.detach().float()
    if reference_rule:
        x = (x * 127.5 + 128).clamp(0, 255)
    else:
        x = ((x.clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).cpu()


def image_from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any shape) -> float32 in [-1, 1], on the same device: x / 127.5 - 1."""
    return x.float() / 127.5 - 1.0


def resize_square(img: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 [H, W, 3] -> [R, R, 3]: short side to R with Lanczos (OpenCV), then a centre crop.

    The one rule for real frames: dataset preparation, training, metrics and clip inversion all use it."""
    import cv2

    h, w = img.shape[:2]
    if h == w == resolution:
        return img
    scale = resolution / min(h, w)
    nh, nw = max(resolution, round(h * scale)), max(resolution, round(w * scale))
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LANCZOS4)
    top, left = (nh - resolution) // 2, (nw - resolution) // 2
    return np.ascontiguousarray(img[top:top + resolution, left:left + resolution])
