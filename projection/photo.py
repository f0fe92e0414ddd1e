"""Loading real photos for projection: any file a user may upload -> a square RGB array at the model's
resolution.

Handles EXIF orientation, alpha (composited on white), palette / grayscale / CMYK, 16-bit and float
images, any size and aspect ratio (center crop or pad to a square), and an optional face crop with
OpenCV's bundled Haar detector, squared the way the StyleGAN-V FaceForensics preprocessing squares its
face boxes (grow the shorter side around the centre) and resized with Lanczos.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Literal, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from core.images import image_from_uint8, image_to_uint8

log = logging.getLogger(__name__)

PhotoInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]  # noqa: UP007 (a runtime alias)
Fit = Literal["crop", "pad"]


class PhotoError(ValueError):
    """The input is not a usable image."""


MAX_MEGAPIXELS = 40.0  # one limit for the CLI and the studio: larger photos are refused before decoding


def too_large(width: int, height: int, name: str) -> str | None:
    """The refusal for a photo above MAX_MEGAPIXELS, else None."""
    mp = width * height / 1e6
    if mp <= MAX_MEGAPIXELS:
        return None
    return (f"{name} is {width}x{height} ({mp:.0f} megapixels); the limit is {MAX_MEGAPIXELS:.0f} megapixels: "
            f"downscale it first")


def open_image(src: PhotoInput) -> Image.Image:
    """Open a path / bytes / PIL image / array as an upright 8-bit RGB PIL image."""
    if isinstance(src, np.ndarray):
        img = _array_to_pil(src)
    elif isinstance(src, Image.Image):
        img = src
    else:
        data = _read_bytes(src)
        try:
            img = Image.open(io.BytesIO(data))  # the header only: the size is known before decoding
            message = too_large(img.width, img.height, _name(src))
            if message is None:
                img.load()
        except Image.DecompressionBombError as exc:
            raise PhotoError(f"{_name(src)}: image is too large to decode safely ({exc})") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise PhotoError(f"{_name(src)} is not a readable image ({type(exc).__name__}: {exc})") from exc
        if message:
            raise PhotoError(message)
    if img.width < 1 or img.height < 1:
        raise PhotoError(f"{_name(src)} has no pixels")
    img = ImageOps.exif_transpose(img)  # phones store portrait shots as rotated landscape + a tag
    return _to_rgb8(img)


def _name(src: object) -> str:
    """How messages name a photo: its file name, never the folder (in the studio that is a server temp path)."""
    return Path(src).name if isinstance(src, (str, os.PathLike)) else "the uploaded file"


def _read_bytes(src: str | os.PathLike | bytes) -> bytes:
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    else:
        path = Path(src)
        if not path.is_file():
            raise PhotoError(f"{_name(src)} does not exist or is not a file")
        data = path.read_bytes()
    if not data:
        raise PhotoError(f"{_name(src)} is empty")
    return data


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    """[H, W], [H, W, 1|3|4] arrays of uint8 / uint16 / float in [0, 1]."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise PhotoError(f"an image array must be [H, W] or [H, W, 3|4], got {arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 65535.0 * 255.0).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise PhotoError(f"unsupported image array dtype {arr.dtype}")
    return Image.fromarray(np.ascontiguousarray(arr))


def _to_rgb8(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit grayscale: rescale the full range to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F" and arr.max() <= 1.0:
            top = 1.0
        arr = np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def square(img: Image.Image, fit: Fit = "crop") -> Image.Image:
    """Center-crop (the dataset convention) or pad with edge colours to a square."""
    w, h = img.size
    if w == h:
        return img
    if fit == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return img.crop((left, top, left + s, top + s))
    if fit == "pad":
        s = max(w, h)
        arr = np.asarray(img)
        top, left = (s - h) // 2, (s - w) // 2
        arr = np.pad(arr, ((top, s - h - top), (left, s - w - left), (0, 0)), mode="edge")
        return Image.fromarray(arr)
    raise PhotoError(f"fit must be 'crop' or 'pad', got {fit!r}")


def _haar_cascade():
    """OpenCV's bundled frontal-face Haar cascade (OpenCV 4.x wheels ship both the class and the XML)."""
    import cv2

    data_dir = getattr(getattr(cv2, "data", None), "haarcascades", "")
    cascade_path = os.path.join(data_dir, "haarcascade_frontalface_default.xml")
    if not hasattr(cv2, "CascadeClassifier") or not os.path.isfile(cascade_path):
        raise PhotoError(
            f"face crop needs OpenCV's bundled Haar face detector (cv2.CascadeClassifier and "
            f"cv2.data.haarcascades/haarcascade_frontalface_default.xml); the installed OpenCV "
            f"{cv2.__version__} lacks it (OpenCV 5 moved it out of the main wheel). Install "
            f"'opencv-python-headless<5' or crop the photo yourself and project without --face.")
    cascade = cv2.CascadeClassifier(cascade_path)
    if cascade.empty():
        raise PhotoError(f"OpenCV's face detector could not be loaded from {cascade_path}")
    return cascade


def detect_face(img: Image.Image, min_size_frac: float = 0.08) -> tuple[int, int, int, int] | None:
    """Largest frontal face as (left, top, right, bottom) with OpenCV's bundled Haar cascade, or None."""
    import cv2

    cascade = _haar_cascade()
    gray = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2GRAY)
    # Detect on a <= 1024 px copy: Haar cost grows with the pixel count and faces stay large enough.
    scale = min(1.0, 1024.0 / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    min_side = max(16, int(min(gray.shape) * min_size_frac))
    faces = cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5,
                                     minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return (int(x / scale), int(y / scale), int((x + w) / scale), int((y + h) / scale))


def face_crop(img: Image.Image, box: tuple[int, int, int, int], margin: float = 0.0) -> Image.Image:
    """Square crop around a face box: grow the shorter side around the centre (as the FaceForensics
    preprocessing does), then by `margin` of the side on each edge; pads with edge colours if needed."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top)
    side = int(round(side * (1.0 + 2.0 * margin)))
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    pad = max(0, -left, -top, left + side - w, top + side - h)
    if pad:
        arr = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return Image.fromarray(arr[top + pad: top + pad + side, left + pad: left + pad + side])


def load_photo(src: PhotoInput, resolution: int, *, fit: Fit = "crop", face: bool = False,
               face_margin: float = 0.0, channels: int = 3) -> np.ndarray:
    """A real photo as uint8 [resolution, resolution, channels], ready for projection.

    face=True crops around the largest detected face (falls back to the whole image, with a warning,
    when no face is found).
    """
    if resolution < 1:
        raise PhotoError(f"resolution must be positive, got {resolution}")
    img = open_image(src)
    if face:
        box = detect_face(img)
        if box is None:
            log.warning("no face found in %s; using the whole image", _name(src))
        else:
            img = face_crop(img, box, face_margin)
    img = square(img, fit)
    if img.width < resolution:
        log.warning("photo is only %dx%d px; upsampling to %d", img.width, img.height, resolution)
    img = img.resize((resolution, resolution), Image.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    if channels == 1:
        arr = np.asarray(img.convert("L"), dtype=np.uint8)[:, :, None]
    elif channels != 3:
        raise PhotoError(f"channels must be 1 or 3, got {channels}")
    assert arr.shape == (resolution, resolution, channels), arr.shape
    return arr


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, C] -> float32 [1, C, H, W] in [-1, 1] (the generator's range)."""
    assert img.ndim == 3 and img.dtype == np.uint8, (img.shape, img.dtype)
    return image_from_uint8(torch.from_numpy(img.copy()).permute(2, 0, 1)[None])


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [C, H, W] or [1, C, H, W] in [-1, 1] -> uint8 [H, W, C]."""
    if x.ndim == 4:
        assert x.shape[0] == 1, x.shape
        x = x[0]
    assert x.ndim == 3, x.shape
    return image_to_uint8(x).permute(1, 2, 0).numpy()
