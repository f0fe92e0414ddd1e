"""Checks on uploaded files before anything heavy touches them (docs/design.md, 'Safe by default').

Gradio already caps the upload size (`max_file_size` at launch); here: the file exists and is not
empty, images are really images of at most MAX_MEGAPIXELS (checked from the header, before decoding),
zips are real zips without absolute or parent paths and with a bounded unpacked size.
"""

from __future__ import annotations

import os
from pathlib import Path

from projection.photo import too_large  # one limit with the projection CLI

MAX_UPLOAD = "200mb"  # passed to launch(max_file_size=...)
MAX_UNZIPPED_BYTES = 4 * 2**30
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class UploadError(ValueError):
    """An upload that is refused; the text tells the user why."""


def _path(upload) -> Path:
    """Gradio hands a path string (or an object with .name / .path); None means nothing uploaded."""
    if upload is None or upload == "":
        raise UploadError("no file was uploaded")
    if isinstance(upload, dict):
        upload = upload.get("path") or upload.get("name")
    if not isinstance(upload, (str, os.PathLike)):  # gradio FileData / tempfile wrappers
        upload = getattr(upload, "path", None) or getattr(upload, "name", None) or str(upload)
    path = Path(upload)
    if not path.is_file():
        raise UploadError(f"uploaded file {path.name} is missing")
    if path.stat().st_size == 0:
        raise UploadError(f"{path.name} is empty")
    return path


def check_image(upload) -> Path:
    """A readable image of at most MAX_MEGAPIXELS; returns its path."""
    from PIL import Image, UnidentifiedImageError

    path = _path(upload)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UploadError(f"{path.name}: upload a photo ({', '.join(IMAGE_SUFFIXES)})")
    try:
        with Image.open(path) as img:  # reads the header only
            w, h = img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadError(f"{path.name} is not a readable image ({type(exc).__name__})") from None
    message = too_large(w, h, path.name)
    if message:
        raise UploadError(message)
    return path


def check_checkpoint(upload) -> Path:
    path = _path(upload)
    if path.suffix not in (".safetensors", ".pkl"):
        raise UploadError(f"{path.name}: checkpoints are .safetensors or .pkl files")
    return path


def extract_zip(upload, dst: str | os.PathLike) -> Path:
    """Unpack an uploaded zip into `dst` safely (core.files.safe_extract_zip); returns dst."""
    from core.files import ArchiveError, safe_extract_zip

    try:
        return safe_extract_zip(_path(upload), dst, MAX_UNZIPPED_BYTES)
    except ArchiveError as exc:
        raise UploadError(str(exc)) from None


CLIP_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v", ".gif") + IMAGE_SUFFIXES  # images: frame strips


def check_clip(upload) -> Path:
    """A video, GIF or frame-strip image (checked like a photo); returns its path. Decoding problems are
    reported by projection.video.read_clip."""
    path = _path(upload)
    if path.suffix.lower() not in CLIP_SUFFIXES:
        raise UploadError(f"{path.name}: upload a video ({', '.join(CLIP_SUFFIXES[:7])}) or a strip of frames")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        check_image(path)
    return path


def check_npz(upload, what: str = "file") -> Path:
    """An uploaded .npz (a keyframes project, a direction, a latent); its content is checked by its reader."""
    path = _path(upload)
    if path.suffix.lower() != ".npz":
        raise UploadError(f"{path.name}: a {what} is an .npz file")
    return path
