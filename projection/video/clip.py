"""Reading a real clip for video inversion: frames at the model's resolution and each frame's model time.

Sources: a video file (mp4, webm, mov, avi, mkv, read with OpenCV with each frame's own timestamp), an
animated GIF (its per-frame durations), a folder of image frames (sorted by name), or a Weizmann-style
strip (one image, W = k x H: k square frames side by side). Frames are resized the way the training data
is (`core.images.resize_square`, the training data's rule: short side to R with Lanczos, centre crop); times are the
frames' timestamps in seconds x the model's native fps, so a 30 fps clip lands at model times
0, 0.83, 1.67, ... for a 25 fps model, and a variable frame rate is honoured, not flattened.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.images import resize_square

MAX_SECONDS = 60.0  # longer clips are refused: inversion is minutes per 32 frames on a CPU
MAX_FRAMES = 1500  # and at most this many frames are decoded, whatever the frame rate says
VIDEO_EXTS = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class ClipError(ValueError):
    """The input is not a usable clip (the message says why and what to do)."""


@dataclass
class Clip:
    frames: np.ndarray  # uint8 [T, R, R, 3]
    times: np.ndarray  # float64 [T], model frames (seconds x native fps), first frame at 0
    fps: float  # the source's nominal frame rate (frames per second)
    name: str
    notes: list[str] = field(default_factory=list)  # what was done to the input (resize, cut, VFR)

    def __post_init__(self):
        assert self.frames.ndim == 4 and self.frames.shape[3] == 3 and self.frames.dtype == np.uint8
        assert self.times.shape == (len(self.frames),) and np.all(np.diff(self.times) > 0)

    @property
    def duration(self) -> float:
        """Model frames from the first frame to one frame interval past the last."""
        return clip_duration(self.times)


def clip_duration(times: np.ndarray) -> float:
    """The last time plus the median frame interval (1 for a single frame), in model frames."""
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    return float(times[-1] + step)


def read_clip(src: str | os.PathLike, resolution: int, *, max_frames: int | None = 32, native_fps: float = 25.0,
              strip_fps: float | None = None) -> Clip:
    """Read `src` -> Clip with frames [T, resolution, resolution, 3] (the first `max_frames`; None = all).

    strip_fps: the frame rate of a frames folder or a strip, which carry none (default: native_fps).
    Raises ClipError for anything that is not a clip, has no frames or is longer than MAX_SECONDS.
    """
    path = Path(src)
    name = path.name
    if not path.exists():
        raise ClipError(f"{name}: no such file or folder")
    if max_frames is not None and max_frames < 2:
        raise ClipError(f"max_frames must be >= 2, got {max_frames}")
    if strip_fps is not None and not (np.isfinite(strip_fps) and strip_fps > 0):
        raise ClipError(f"the frame rate of a folder or strip must be > 0, got {strip_fps}")
    limit = MAX_FRAMES if max_frames is None else min(max_frames, MAX_FRAMES)
    if path.is_dir():
        raw, stamps, fps, notes = _read_folder(path, limit, strip_fps or native_fps)
    elif path.suffix.lower() == ".gif":
        raw, stamps, fps, notes = _read_gif(path, limit)
    elif path.suffix.lower() in IMAGE_EXTS:
        raw, stamps, fps, notes = _read_strip(path, limit, strip_fps or native_fps)
    else:
        raw, stamps, fps, notes = _read_video(path, limit)
    if len(raw) < 2:
        raise ClipError(f"{name}: {len(raw)} readable frame(s); a clip needs at least 2")
    frames, resize_note = _resize_all(raw, resolution)
    notes = notes + ([resize_note] if resize_note else [])
    times = (np.asarray(stamps, np.float64) - stamps[0]) * native_fps
    return Clip(frames=frames, times=times, fps=float(fps), name=name, notes=notes)


def _check_length(name: str, seconds: float) -> None:
    if seconds > MAX_SECONDS:
        raise ClipError(f"{name} is {seconds:.0f} s long; the cap is {MAX_SECONDS:.0f} s: cut the part you want "
                        f"first (e.g. ffmpeg -ss START -t 10 -i IN OUT)")


def _read_video(path: Path, limit: int) -> tuple[list[np.ndarray], list[float], float, list[str]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ClipError(f"{path.name} is not a video OpenCV can open (mp4, webm, mov, avi, mkv)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if fps > 0 and count > 0:
            _check_length(path.name, count / fps)
        frames, stamps = [], []
        while len(frames) < limit:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            stamps.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
            frames.append(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        cap.release()
    if not frames:
        raise ClipError(f"{path.name}: no frame could be decoded (not a video, or a damaged one)")
    return frames, *_timestamps(path.name, stamps, fps)


def _timestamps(name: str, stamps: list[float], fps: float) -> tuple[list[float], float, list[str]]:
    """Container timestamps when they are usable, else a constant rate; a note for a variable rate."""
    s = np.asarray(stamps, np.float64)
    nominal = fps if fps > 0 else 25.0
    if len(s) < 2 or not np.all(np.diff(s) > 0):
        return list(np.arange(len(s)) / nominal), nominal, ([] if fps > 0 else
                                                            [f"no frame rate in the file: assumed {nominal:g} fps"])
    d = np.diff(s)
    notes = []
    if d.max() > 1.25 * np.median(d) or d.min() < 0.8 * np.median(d):
        notes.append(f"variable frame rate ({1 / d.max():.1f}-{1 / d.min():.1f} fps): each frame is placed at its "
                     "own timestamp")
    return list(s), (fps if fps > 0 else 1.0 / float(np.median(d))), notes


def _read_gif(path: Path, limit: int) -> tuple[list[np.ndarray], list[float], float, list[str]]:
    try:
        img = Image.open(path)
        frames, durations = [], []
        for i in range(getattr(img, "n_frames", 1)):
            if i >= limit:
                break
            img.seek(i)
            frames.append(np.asarray(img.convert("RGB")))
            durations.append(max(float(img.info.get("duration", 40) or 40), 10.0) / 1000.0)
    except (UnidentifiedImageError, OSError) as e:
        raise ClipError(f"{path.name} is not a readable GIF: {e}") from None
    _check_length(path.name, sum(durations) * getattr(img, "n_frames", 1) / max(len(durations), 1))
    stamps = np.concatenate([[0.0], np.cumsum(durations[:-1])])
    return frames, *_timestamps(path.name, list(stamps), 1.0 / float(np.median(durations)))


def _read_folder(path: Path, limit: int, fps: float) -> tuple[list[np.ndarray], list[float], float, list[str]]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ClipError(f"{path.name}/ holds no image frames ({', '.join(IMAGE_EXTS)})")
    _check_length(path.name, len(files) / fps)
    frames = [_open(p.read_bytes(), p.name) for p in files[:limit]]
    if len({f.shape for f in frames}) > 1:
        raise ClipError(f"{path.name}/: the frames differ in size")
    return frames, list(np.arange(len(frames)) / fps), fps, [f"a frames folder carries no timing: {fps:g} fps assumed"]


def _read_strip(path: Path, limit: int, fps: float) -> tuple[list[np.ndarray], list[float], float, list[str]]:
    img = _open(path.read_bytes(), path.name)
    h, w = img.shape[:2]
    k = w // h
    if k < 2 or w % h:
        raise ClipError(f"{path.name} is a single {w}x{h} image, not a clip; a strip of k frames is k*H wide "
                        "(to animate a photo, use the Animate tab or python -m projection)")
    _check_length(path.name, k / fps)
    frames = [img[:, i * h:(i + 1) * h] for i in range(min(k, limit))]
    return frames, list(np.arange(len(frames)) / fps), fps, [f"a strip of {k} frames; {fps:g} fps assumed"]


def _open(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ClipError(f"{name} is not a readable image: {e}") from None


def _resize_all(frames: list[np.ndarray], resolution: int) -> tuple[np.ndarray, str | None]:
    h, w = frames[0].shape[:2]
    out = np.stack([resize_square(f, resolution) for f in frames])
    if (h, w) == (resolution, resolution):
        return out, None
    what = "reduced" if min(h, w) >= resolution else "enlarged"
    crop = "" if h == w else ", centre-cropped to a square"
    return out, f"{what} from {w}x{h} to the model's {resolution}x{resolution}{crop}"
