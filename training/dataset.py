"""Video datasets read lazily, frame by frame (docs/reference.md, 'Data').

Three on-disk formats are accepted, detected from the path:

- a folder with one sub-folder of frames per video (`clip/000000.png`, ... ordered by file name),
- a zip file holding the same layout,
- a folder of video files (mp4, avi, webm, gif, ...) decoded on demand with OpenCV (or imageio).

Frames are never all held in memory: `read_frames` decodes only the requested indices. A video that
cannot be opened or decoded is skipped with one warning naming it. Frames are returned as
uint8 `[T, H, W, 3]` at `resolution` (short side resized with Lanczos, then center-cropped).

Optional labels come from `dataset.json` at the root: `{"labels": {name: label}}` or
`{"labels": [[name, label], ...]}` (label an int class or a list of floats).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.images import resize_square

try:  # optional decoders: OpenCV first (fast, reads video), then Pillow / imageio
    import cv2
except ImportError:  # pragma: no cover - exercised only on minimal machines
    cv2 = None
try:
    from PIL import Image
except ImportError:  # pragma: no cover
    Image = None

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_EXTS = (".mp4", ".avi", ".webm", ".gif", ".mov", ".mkv", ".m4v")


class DatasetError(Exception):
    """The dataset (or one of its videos) is missing, empty or unreadable."""


# ----------------------------------------------------------------------------- image helpers


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded image bytes -> uint8 RGB [H, W, 3]."""
    img = None
    if cv2 is not None:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is not None:
            img = img[:, :, ::-1]
    elif Image is not None:  # pragma: no cover
        try:
            img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        except Exception:
            img = None
    else:  # pragma: no cover
        raise DatasetError("decoding images needs opencv-python-headless or Pillow")
    if img is None:
        raise DatasetError(f"cannot decode image {name}")
    return np.ascontiguousarray(img)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTS)


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTS)


# ----------------------------------------------------------------------------- sources


@dataclass
class _Video:
    name: str
    frames: list[str] | None  # frame files/members for frame formats; None for a video file
    path: str | None = None  # video file path
    length: int = 0


class _FolderSource:
    """root/<video>/<frames>; a video is any folder that directly holds image files."""

    def __init__(self, root: str):
        self.root = root
        self.videos: list[_Video] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            frames = sorted(f for f in filenames if _is_image(f))
            if frames and os.path.abspath(dirpath) != os.path.abspath(root):
                rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
                paths = [os.path.join(dirpath, f) for f in frames]
                self.videos.append(_Video(rel, paths, length=len(paths)))

    def read(self, v: _Video, indices: Sequence[int]) -> list[np.ndarray]:
        out = []
        for i in indices:
            with open(v.frames[i], "rb") as f:
                out.append(decode_image(f.read(), v.frames[i]))
        return out

    def read_json(self, name: str) -> bytes | None:
        p = os.path.join(self.root, name)
        return open(p, "rb").read() if os.path.isfile(p) else None

    @staticmethod
    def file_ids(v: _Video) -> list[str]:
        stats = ((os.path.basename(f), os.stat(f)) for f in v.frames)
        return [f"{name}|{st.st_size}|{st.st_mtime_ns}" for name, st in stats]


class _ZipSource:
    """The folder layout inside a zip; the zip is opened lazily once per process (fork-safe)."""

    def __init__(self, path: str):
        self.path = path
        self._zip, self._pid = None, None
        groups: dict[str, list[str]] = {}
        for member in self._file().namelist():
            if _is_image(member) and "/" in member:
                groups.setdefault(member.rsplit("/", 1)[0], []).append(member)
        self.videos = [_Video(k, sorted(v), length=len(v)) for k, v in sorted(groups.items())]

    def _file(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            self._zip, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip

    def read(self, v: _Video, indices: Sequence[int]) -> list[np.ndarray]:
        z = self._file()
        return [decode_image(z.read(v.frames[i]), f"{self.path}:{v.frames[i]}") for i in indices]

    def read_json(self, name: str) -> bytes | None:
        try:
            return self._file().read(name)
        except KeyError:
            return None

    def file_ids(self, v: _Video) -> list[str]:
        infos = (self._file().getinfo(m) for m in v.frames)
        return [f"{i.filename}|{i.file_size}|{i.CRC:08x}" for i in infos]

    def __getstate__(self):  # zip handles do not survive pickling to DataLoader workers
        return {**self.__dict__, "_zip": None, "_pid": None}


class _VideoFileSource:
    """A folder (searched recursively) of video files, decoded on demand."""

    def __init__(self, root: str):
        self.root = root
        self.videos = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for f in sorted(filenames):
                if _is_video(f):
                    p = os.path.join(dirpath, f)
                    self.videos.append(_Video(os.path.relpath(p, root).replace(os.sep, "/"), None, p))

    @staticmethod
    def probe(v: _Video) -> None:
        """Fill v.length; raise DatasetError when the file cannot be opened or decoded."""
        v.length = count_video_frames(v.path)
        read_video_frames(v.path, [0])

    def read(self, v: _Video, indices: Sequence[int]) -> list[np.ndarray]:
        return read_video_frames(v.path, indices)

    @staticmethod
    def file_ids(v: _Video) -> list[str]:
        st = os.stat(v.path)
        return [f"{st.st_size}|{st.st_mtime_ns}"]

    def read_json(self, name: str) -> bytes | None:
        p = os.path.join(self.root, name)
        return open(p, "rb").read() if os.path.isfile(p) else None


def count_video_frames(path: str) -> int:
    """Number of frames in a video file (decodes it when the container does not say)."""
    if cv2 is not None:
        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                raise DatasetError(f"cannot open video {path}")
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if n <= 0:  # some containers (webm) carry no count: count by grabbing
                n = 0
                while cap.grab():
                    n += 1
        finally:
            cap.release()
    else:  # pragma: no cover
        import imageio.v2 as iio

        try:
            with iio.get_reader(path) as r:
                n = r.count_frames() if hasattr(r, "count_frames") else len(r)
        except Exception as e:
            raise DatasetError(f"cannot open video {path}: {e}") from e
    if n <= 0:
        raise DatasetError(f"video {path} has no frames")
    return n


def read_video_frames(path: str, indices: Sequence[int]) -> list[np.ndarray]:
    """Decode the given frame indices of a video file -> list of uint8 RGB [H, W, 3]."""
    if cv2 is None:  # pragma: no cover
        import imageio.v2 as iio

        try:
            with iio.get_reader(path) as r:
                return [np.asarray(r.get_data(int(i)))[:, :, :3] for i in indices]
        except Exception as e:
            raise DatasetError(f"cannot decode frames {list(indices)} of {path}: {e}") from e
    cap = cv2.VideoCapture(path)
    out: dict[int, np.ndarray] = {}
    try:
        if not cap.isOpened():
            raise DatasetError(f"cannot open video {path}")
        pos = -1  # index of the frame the next read() returns, -1 = unknown
        for i in sorted(set(int(i) for i in indices)):
            if pos < 0 or not (0 <= i - pos < 32):  # seek for far jumps, read forward for near ones
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                pos = i
            while pos < i:
                cap.grab()
                pos += 1
            ok, frame = cap.read()
            pos += 1
            if not ok or frame is None:
                raise DatasetError(f"cannot decode frame {i} of {path}")
            out[i] = np.ascontiguousarray(frame[:, :, ::-1])
    finally:
        cap.release()
    return [out[int(i)] for i in indices]


# ----------------------------------------------------------------------------- the dataset


class VideoDataset:
    """Videos of variable length, read on demand.

    Args:
        path: frames folder, zip of one, or folder of video files.
        resolution: output frame size R (frames become [R, R]); None = the first video's short side.
        max_videos: keep only the first N videos by name.
        xflip: the training sampler mirrors clips at random (dataset x-flip); reading is unaffected.
    """

    def __init__(self, path: str, resolution: int | None = None, max_videos: int | None = None,
                 xflip: bool = False):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise DatasetError(f"dataset path {path!r} does not exist")
        if os.path.isfile(path):
            if not zipfile.is_zipfile(path):
                raise DatasetError(f"{path!r} is a file but not a zip; give a folder or a .zip")
            source = _ZipSource(path)
        else:
            source = _FolderSource(path)
            if not source.videos:
                source = _VideoFileSource(path)
        self.path, self.xflip = path, bool(xflip)
        self._source = source
        videos = sorted(source.videos, key=lambda v: v.name)
        if max_videos is not None:
            videos = videos[:max_videos]
        self._videos = self._probe(videos)
        if not self._videos:
            raise DatasetError(f"no readable videos found in {path!r} (frames folders, zip, or "
                               f"video files {', '.join(VIDEO_EXTS)})")
        # The first frame's short side: what the data holds before resizing (metrics refuse upscaling).
        self.native_resolution = int(min(self._source.read(self._videos[0], [0])[0].shape[:2]))
        if resolution is None:
            resolution = self.native_resolution
        if resolution < 1:
            raise DatasetError(f"resolution must be positive, got {resolution}")
        self.resolution = int(resolution)
        self.labels = self._load_labels()

    def _probe(self, videos: list[_Video]) -> list[_Video]:
        """Drop videos whose first frame cannot be decoded, one warning per video."""
        kept = []
        for v in videos:
            try:
                if isinstance(self._source, _VideoFileSource):
                    self._source.probe(v)
                else:
                    self._source.read(v, [0])
                kept.append(v)
            except (DatasetError, OSError, zipfile.BadZipFile) as e:
                log.warning("skipping unreadable video %s: %s", v.name, e)
        return kept

    def _load_labels(self) -> np.ndarray | None:
        raw = self._source.read_json("dataset.json")
        if raw is None:
            return None
        try:
            labels = json.loads(raw).get("labels")
        except (ValueError, AttributeError) as e:
            raise DatasetError(f"dataset.json in {self.path!r} is not valid JSON: {e}") from e
        if labels is None:
            return None
        table = dict(labels) if isinstance(labels, list) else labels
        missing = [v.name for v in self._videos if v.name not in table]
        if missing:
            raise DatasetError(f"dataset.json has no label for {len(missing)} videos, e.g. {missing[0]!r}")
        arr = np.array([table[v.name] for v in self._videos])
        if arr.ndim == 1:  # class indices -> one-hot
            arr = np.eye(int(arr.max()) + 1, dtype=np.float32)[arr.astype(np.int64)]
        return arr.astype(np.float32)

    def __len__(self) -> int:
        return len(self._videos)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self._videos]

    @property
    def label_dim(self) -> int:
        return 0 if self.labels is None else int(self.labels.shape[1])

    def num_frames(self, i: int) -> int:
        return self._videos[i].length

    def index_sha256(self) -> str:
        """sha256 of the dataset's index: every video's name and frame count, every file's size and its
        CRC-32 (zip members) or modification time (files). An added, removed, renamed or rewritten file
        changes it; reading it costs no decoding, so metric caches and manifests can key on it."""
        h = hashlib.sha256()
        for v in self._videos:
            h.update(f"{v.name}|{v.length}\n".encode())
            for entry in self._source.file_ids(v):
                h.update(f"  {entry}\n".encode())
        return h.hexdigest()

    def read_frames(self, i: int, frame_indices: Sequence[int]) -> np.ndarray:
        """Frames of video i -> uint8 [T, R, R, 3]; raises DatasetError for a bad index or file."""
        v = self._videos[i]
        idx = [int(j) for j in frame_indices]
        bad = [j for j in idx if not 0 <= j < v.length]
        if bad:
            raise DatasetError(f"frame {bad[0]} out of range for {v.name} ({v.length} frames)")
        try:
            frames = self._source.read(v, idx)
        except (OSError, zipfile.BadZipFile) as e:
            raise DatasetError(f"cannot read {v.name}: {e}") from e
        out = np.stack([resize_square(f, self.resolution) for f in frames])
        assert out.shape == (len(idx), self.resolution, self.resolution, 3), out.shape
        return out


# ----------------------------------------------------------------------------- clip sampling

DISTANCES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def sample_clip_times(video_len: int, num_frames: int, rng: np.random.Generator, *, max_dist: int = 32,
                      window: int = 1024, fractional: bool = False,
                      distances: Sequence[int] = DISTANCES) -> tuple[int, np.ndarray]:
    """Pick k = num_frames sorted times in one video, as in the paper's sparse training (section 3.3).

    A video longer than `window` frames is first cut to a random window of that many frames. The
    first-to-last distance d is drawn from `distances` within [k - 1, min(max_dist, len - 1)]
    ({2, 4, 8, 16, 32} for k = 3); the first time is uniform in [0, len - 1 - d] (fractional for G);
    the middle times at distinct random integer steps in between. (The paper's text draws d from
    U[k - 1, 32]; the released code draws it from powers of two, and so does this function.)

    Returns (window_offset, t) with t float64 [k], times relative to the window start; the frame
    indices to read are window_offset + t (integers unless fractional).
    """
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    if video_len < num_frames:
        raise ValueError(f"a video of {video_len} frames cannot give {num_frames} distinct frames")
    offset = 0
    if video_len > window:
        offset = int(rng.integers(0, video_len - window + 1))
        video_len = window
    lo, hi = num_frames - 1, min(max_dist, video_len - 1)
    choices = [d for d in distances if lo <= d <= hi] or [max(lo, hi)]
    if num_frames == 1:
        choices = [0]
    d = int(choices[int(rng.integers(len(choices)))])
    span = video_len - 1 - d
    start = float(rng.random() * span) if fractional else float(rng.integers(0, span + 1))
    steps = [0, d] if num_frames > 1 else [0]
    if num_frames > 2:
        steps += list(rng.choice(np.arange(1, d), size=num_frames - 2, replace=False))
    t = start + np.sort(np.asarray(steps, dtype=np.float64))
    return offset, t
