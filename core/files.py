"""Atomic file writes: the one way the product writes a file that others may read while it is written.

Everything is written under a temporary name in the destination's folder and moved onto the final name
(`os.replace`, atomic on one filesystem) only once it is complete and flushed to disk, so a crash leaves
either the old file or the new one, never a torn file; a failure removes the temporary file.

- `atomic_write(path, write_fn)`: the common case, `write_fn(tmp_path)` writes the whole file.
- `PendingFile(path)`: for writers that stream over many calls (videos, zips, folders of frames):
  write to `.tmp`, then `commit()` or `discard()`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


class PendingFile:
    """A temporary file (or folder, `directory=True`) next to `path` that becomes `path` on `commit()`.

    `suffix` ends the temporary name (libraries that pick a format by extension need the real one).
    Used as a context manager it commits on success and discards on any exception.
    """

    def __init__(self, path: str | os.PathLike, suffix: str = ".tmp", directory: bool = False):
        self.path = Path(path)
        self.directory = directory
        self.path.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{self.path.name}."
        if directory:
            self.tmp = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=self.path.parent)
        else:
            fd, self.tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=self.path.parent)
            os.close(fd)

    def commit(self) -> Path:
        """Flush the temporary file to disk and move it onto `path` (on failure it is removed)."""
        try:
            if not self.directory:
                with open(self.tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        """Remove the temporary file or folder (nothing happens if it is gone already)."""
        if self.directory:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self) -> str:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], object], suffix: str = ".tmp") -> Path:
    """Call `write_fn(tmp_path)` and move the result to `path` only once it is complete (fsync'ed)."""
    with PendingFile(path, suffix) as tmp:
        write_fn(tmp)
    return Path(path)


def atomic_savez(path: str | os.PathLike, **arrays) -> Path:
    """np.savez(path, **arrays) atomically: plain arrays only (read back with allow_pickle=False)."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write, suffix=".tmp.npz")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


class ArchiveError(ValueError):
    """A zip that is refused: not a zip, empty, too large unpacked, or holding unsafe paths."""


def safe_extract_zip(path: str | os.PathLike, dst: str | os.PathLike, max_bytes: int = 4 * 2**30) -> Path:
    """Unpack a zip from outside (an upload, a dataset) into `dst`: refuses absolute and `..` member paths
    (they would write outside dst) and more than `max_bytes` unpacked, before writing anything."""
    import zipfile

    path, dst = Path(path), Path(dst)
    if not zipfile.is_zipfile(path):
        raise ArchiveError(f"{path.name} is not a zip file")
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        if not any(not i.is_dir() for i in infos):
            raise ArchiveError(f"{path.name} is an empty zip")
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise ArchiveError(f"{path.name} unpacks to {total / 2**30:.1f} GiB; the limit is "
                               f"{max_bytes / 2**30:.0f} GiB")
        for i in infos:
            if i.filename.startswith(("/", "\\")) or ".." in Path(i.filename).parts:
                raise ArchiveError(f"{path.name} holds an unsafe path: {i.filename!r}")
        dst.mkdir(parents=True, exist_ok=True)
        try:
            z.extractall(dst)
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            raise ArchiveError(f"{path.name} could not be unpacked: {exc}") from None
    return dst
