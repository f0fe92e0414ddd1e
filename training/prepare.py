"""Turn raw videos into the frames format the trainer reads (docs/reference.md, 'Data').

    python -m training.prepare SRC DST --resolution R [--fps F] [--max-frames N] [--face-crop]

SRC: a video file, a zip, or a folder (searched recursively) of video files, frame folders, or frame
strips (one clip stored as a wide image of square frames side by side, like the Weizmann data).
DST: a folder or a `.zip`, holding one sub-folder of PNG frames per clip (`000000.png`, ...).
Each frame: short side resized with Lanczos, center crop to R x R (after an optional face crop).
Long videos are cut into chunks of at most --max-frames frames. Writes are atomic: DST appears
only when complete.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from core.files import PendingFile
from core.images import resize_square
from training.dataset import DatasetError, _is_image, _is_video, decode_image

try:
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

log = logging.getLogger(__name__)


MAX_RESOLUTION = 1024  # StyleGAN2's largest


@dataclass(frozen=True)
class PrepareConfig:
    resolution: int
    layout: str = "auto"  # auto | videos | frames | strips
    fps: float | None = None  # resample to this frame rate (None = keep every frame)
    src_fps: float = 25.0  # frame rate assumed for frame folders and strips
    max_frames: int = 1024  # longer videos are chunked
    min_frames: int = 3  # shorter clips (or trailing chunks) are skipped
    face_crop: bool = False
    face_scale: float = 2.0  # crop side = face box side * face_scale
    ext: str = "png"
    exclude: tuple[str, ...] = ()  # clip names held out (e.g. sample photos kept for evaluation)

    def __post_init__(self):
        if not 4 <= self.resolution <= MAX_RESOLUTION:  # 100,000 px frames would allocate 30 GB each
            raise ValueError(f"resolution must be in 4 .. {MAX_RESOLUTION} (the models' range), "
                             f"got {self.resolution}")
        if self.layout not in ("auto", "videos", "frames", "strips"):
            raise ValueError(f"unknown layout {self.layout!r}")
        if self.max_frames < self.min_frames or self.min_frames < 1:
            raise ValueError("need 1 <= min_frames <= max_frames")
        if self.ext not in ("png", "jpg"):
            raise ValueError("ext must be png or jpg")


@dataclass
class PrepareSummary:
    kept: list[tuple[str, int]] = field(default_factory=list)  # (clip name, frames)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source name, reason)

    def text(self) -> str:
        frames = sum(n for _, n in self.kept)
        lines = [f"kept {len(self.kept)} clips ({frames} frames), skipped {len(self.skipped)}"]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- sources -> frame streams


@dataclass
class _Item:
    name: str  # output clip name (flat, no slashes)
    kind: str  # video | frames | strip
    paths: list[str]
    fps: float


def _flat(rel: str) -> str:
    return rel.replace(os.sep, "/").strip("/").replace("/", "_") or "clip"


def _read_image(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        return decode_image(f.read(), path)


def _looks_like_strip(path: str) -> bool:
    h, w = _read_image(path).shape[:2]
    return w % h == 0 and w > h


def find_items(src: str, cfg: PrepareConfig) -> list[_Item]:
    """List the clips under src in a stable order."""
    if os.path.isfile(src):
        stem = os.path.splitext(os.path.basename(src))[0]
        if _is_video(src):
            return [_Item(stem, "video", [src], cfg.src_fps)]
        if _is_image(src):
            return [_Item(stem, "strip", [src], cfg.src_fps)]
        raise DatasetError(f"{src!r} is neither a video nor an image")
    if not os.path.isdir(src):
        raise DatasetError(f"source {src!r} does not exist")
    items = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        rel = "" if rel == "." else rel
        images = [os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f)]
        for f in sorted(filenames):
            if _is_video(f) and cfg.layout in ("auto", "videos"):
                items.append(_Item(_flat(os.path.join(rel, os.path.splitext(f)[0])), "video",
                                   [os.path.join(dirpath, f)], cfg.src_fps))
        if not images or cfg.layout == "videos":
            continue
        strips = cfg.layout == "strips" or (cfg.layout == "auto" and all(map(_looks_like_strip, images[:4])))
        if strips:
            for p in images:
                stem = os.path.splitext(os.path.basename(p))[0]
                items.append(_Item(_flat(os.path.join(rel, stem)), "strip", [p], cfg.src_fps))
        else:
            name = _flat(rel or os.path.basename(os.path.abspath(src)))
            items.append(_Item(name, "frames", images, cfg.src_fps))
    return items


def _stream(item: _Item) -> Iterator[np.ndarray]:
    """Frames of one clip, uint8 RGB [H, W, 3], one at a time (constant memory for long videos)."""
    if item.kind == "frames":
        for p in item.paths:
            yield _read_image(p)
    elif item.kind == "strip":
        img = _read_image(item.paths[0])
        h, w = img.shape[:2]
        if w % h:
            raise DatasetError(f"strip width {w} is not a multiple of its height {h}")
        for j in range(w // h):
            yield img[:, j * h:(j + 1) * h]
    else:
        if cv2 is None:  # pragma: no cover
            import imageio.v2 as iio

            with iio.get_reader(item.paths[0]) as r:
                for frame in r:
                    yield np.asarray(frame)[:, :, :3]
            return
        cap = cv2.VideoCapture(item.paths[0])
        try:
            if not cap.isOpened():
                raise DatasetError(f"cannot open video {item.paths[0]}")
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield np.ascontiguousarray(frame[:, :, ::-1])
        finally:
            cap.release()


def _video_fps(path: str, default: float) -> float:
    if cv2 is None:  # pragma: no cover
        return default
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return fps if fps and 1 <= fps <= 240 else default


def _resample(frames: Iterator[np.ndarray], src_fps: float, fps: float | None) -> Iterator[np.ndarray]:
    """Output frame j shows the source frame nearest to time j / fps."""
    if fps is None or abs(fps - src_fps) < 1e-6:
        yield from frames
        return
    j = 0
    for i, frame in enumerate(frames):
        while round(j * src_fps / fps) == i:
            yield frame
            j += 1


def face_box(frame: np.ndarray, scale: float) -> tuple[int, int, int] | None:
    """Square crop (top, left, side) around the largest face found by OpenCV's Haar cascade."""
    if cv2 is None:
        raise DatasetError("--face-crop needs opencv-python-headless")
    xml = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    cascade = cv2.CascadeClassifier(xml)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    side = int(min(max(w, h) * scale, *frame.shape[:2]))
    cy, cx = y + h / 2, x + w / 2
    top = int(np.clip(cy - side / 2, 0, frame.shape[0] - side))
    left = int(np.clip(cx - side / 2, 0, frame.shape[1] - side))
    return top, left, side


# ----------------------------------------------------------------------------- writing


class _Writer:
    """Frames into a folder or a zip; both staged in a temp location and moved in at the end."""

    def __init__(self, dst: str, ext: str):
        self.dst, self.ext = os.path.abspath(dst), ext
        self.is_zip = dst.lower().endswith(".zip")
        self._pending = PendingFile(self.dst, suffix=".zip.tmp" if self.is_zip else "", directory=not self.is_zip)
        self.tmp = self._pending.tmp
        if self.is_zip:
            self.zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED)

    def write(self, clip: str, index: int, frame: np.ndarray) -> None:
        ok, buf = cv2.imencode("." + self.ext, np.ascontiguousarray(frame[:, :, ::-1]))
        if not ok:
            raise DatasetError(f"cannot encode frame {index} of {clip}")
        name = f"{clip}/{index:06d}.{self.ext}"
        if self.is_zip:
            self.zip.writestr(name, buf.tobytes())
        else:
            os.makedirs(os.path.join(self.tmp, clip), exist_ok=True)
            with open(os.path.join(self.tmp, name), "wb") as f:
                f.write(buf.tobytes())

    def drop(self, clip: str) -> None:
        """Forget a partially written clip (folder mode; zip mode never writes partial clips)."""
        if not self.is_zip:
            shutil.rmtree(os.path.join(self.tmp, clip), ignore_errors=True)

    def commit(self) -> None:
        if self.is_zip:
            self.zip.close()
        self._pending.commit()

    def abort(self) -> None:
        if self.is_zip:
            self.zip.close()
        self._pending.discard()


def _process(item: _Item, cfg: PrepareConfig, emit: Callable[[str, list[np.ndarray]], None]) -> int:
    """Stream one source clip through fps / crop / resize, emitting chunks; returns clips kept."""
    src_fps = _video_fps(item.paths[0], cfg.src_fps) if item.kind == "video" else item.fps
    box, chunk, n_chunks, total = None, [], 0, 0
    multi = False
    for frame in _resample(_stream(item), src_fps, cfg.fps):
        if cfg.face_crop:
            if box is None:
                box = face_box(frame, cfg.face_scale)
                if box is None:
                    raise DatasetError("no face found in the first frame")
            top, left, side = box
            frame = frame[top:top + side, left:left + side]
        if len(chunk) == cfg.max_frames:  # a full chunk and more to come: cut here
            multi = True
            emit(f"{item.name}_c{n_chunks:03d}", chunk)
            chunk, n_chunks = [], n_chunks + 1
        chunk.append(resize_square(frame, cfg.resolution))
        total += 1
    if total == 0:
        raise DatasetError("no frames could be decoded")
    if len(chunk) >= cfg.min_frames:
        emit(f"{item.name}_c{n_chunks:03d}" if multi else item.name, chunk)
        n_chunks += 1
    elif n_chunks == 0:
        raise DatasetError(f"only {total} frames (need {cfg.min_frames})")
    return n_chunks


def prepare(src: str, dst: str, cfg: PrepareConfig,
            callback: Callable[[int, int, str], None] | None = None) -> PrepareSummary:
    """Convert src into a frames dataset at dst; callback(i, n, name) after each source clip."""
    if os.path.exists(dst):
        raise DatasetError(f"destination {dst!r} already exists; remove it or pick another path")
    if os.path.isfile(src) and zipfile.is_zipfile(src):  # a zip of videos / frames, as the studio takes
        import tempfile

        from core.files import ArchiveError, safe_extract_zip

        with tempfile.TemporaryDirectory(prefix="sgv-prepare-") as tmp:
            try:
                unpacked = safe_extract_zip(src, tmp)
            except ArchiveError as exc:
                raise DatasetError(str(exc)) from None
            return prepare(str(unpacked), dst, cfg, callback)
    items = [it for it in find_items(src, cfg) if it.name not in cfg.exclude]
    if not items:
        raise DatasetError(f"no videos, frame folders or frame strips found in {src!r}")
    summary, writer = PrepareSummary(), _Writer(dst, cfg.ext)
    used: set[str] = set()

    def emit(name: str, frames: list[np.ndarray]) -> None:
        base, k = name, 1
        while name in used:  # flattened names may collide
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        for j, frame in enumerate(frames):
            writer.write(name, j, frame)
        summary.kept.append((name, len(frames)))

    try:
        for i, item in enumerate(items):
            n_before = len(summary.kept)
            try:
                _process(item, cfg, emit)
            except (DatasetError, OSError) as e:
                for name, _ in summary.kept[n_before:]:
                    writer.drop(name)
                del summary.kept[n_before:]
                summary.skipped.append((item.name, str(e)))
                log.warning("skipping %s: %s", item.name, e)
            if callback is not None:
                callback(i + 1, len(items), item.name)
        if not summary.kept:
            raise DatasetError(f"nothing usable in {src!r}:\n{summary.text()}")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.prepare", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="video file, or folder of videos / frame folders / frame strips")
    ap.add_argument("dst", help="output folder or .zip (must not exist)")
    ap.add_argument("--resolution", type=int, required=True, help="output frame size R (R x R)")
    ap.add_argument("--layout", default="auto", choices=["auto", "videos", "frames", "strips"])
    ap.add_argument("--fps", type=float, default=None, help="resample to this frame rate")
    ap.add_argument("--src-fps", type=float, default=25.0, help="frame rate of frame folders and strips")
    ap.add_argument("--max-frames", type=int, default=1024, help="chunk longer videos")
    ap.add_argument("--min-frames", type=int, default=3, help="skip shorter clips")
    ap.add_argument("--face-crop", action="store_true", help="crop around the face of the first frame")
    ap.add_argument("--face-scale", type=float, default=2.0)
    ap.add_argument("--ext", default="png", choices=["png", "jpg"])
    ap.add_argument("--exclude", default="", help="comma-separated clip names to hold out")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        cfg = PrepareConfig(resolution=args.resolution, layout=args.layout, fps=args.fps,
                            src_fps=args.src_fps,
                            max_frames=args.max_frames, min_frames=args.min_frames, face_crop=args.face_crop,
                            face_scale=args.face_scale, ext=args.ext,
                            exclude=tuple(filter(None, args.exclude.split(","))))
        summary = prepare(args.src, args.dst, cfg,
                          callback=lambda i, n, name: print(f"\r[{i}/{n}] {name}", end="", file=sys.stderr))
    except (DatasetError, ValueError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(summary.text())
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
