"""Training batches indexed by step: batch s of rank r is a pure function of (seed, s, r).

This makes resuming exact (the batches after a resume are the ones the uninterrupted run would
have seen) and lets DataLoader workers prefetch without shared random state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

from training.dataset import DatasetError, VideoDataset, sample_clip_times

log = logging.getLogger(__name__)


class ClipBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item `step` is one batch of clips for this rank.

    Item: dict with
        real   uint8   [B, k, 3, R, R]  real clips (dataset x-flip applied at random when ds.xflip)
        real_t float32 [B, k]           their frame times (relative to the 1024-frame window)
        real_c float32 [B, c_dim]       their labels (c_dim = 0 when unlabelled)
        gen_t  float32 [B, k]           fractional times for G, from the lengths of random real videos
        gen_c  float32 [B, c_dim]       labels of random real videos, for G
    """

    def __init__(self, ds: VideoDataset, batch_size: int, num_frames: int, *, seed: int = 0, rank: int = 0,
                 max_dist: int = 32, window: int = 1024):
        self.ds, self.batch_size, self.num_frames = ds, int(batch_size), int(num_frames)
        self.seed, self.rank, self.max_dist, self.window = int(seed), int(rank), int(max_dist), int(window)
        self.valid = [i for i in range(len(ds)) if ds.num_frames(i) >= num_frames]
        if not self.valid:
            raise DatasetError(f"no video in {ds.path!r} has the {num_frames} frames a clip needs")
        if len(self.valid) < len(ds):
            log.warning("%d videos shorter than %d frames are not used",
                        len(ds) - len(self.valid), num_frames)
        self._bad: set[int] = set()

    def __len__(self) -> int:  # effectively endless; the sampler decides which steps are drawn
        return 2**62

    def _rng(self, step: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(step), self.rank, stream])

    def _read_clip(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        for _ in range(100):
            i = self.valid[int(rng.integers(len(self.valid)))]
            if i in self._bad:
                continue
            offset, t = sample_clip_times(self.ds.num_frames(i), self.num_frames, rng,
                                          max_dist=self.max_dist, window=self.window)
            try:
                frames = self.ds.read_frames(i, (offset + t).astype(np.int64))
            except DatasetError as e:  # never crash mid-run: drop the video, draw another
                log.warning("skipping unreadable video %s: %s", self.ds.names[i], e)
                self._bad.add(i)
                continue
            if self.ds.xflip and rng.random() < 0.5:
                frames = frames[:, :, ::-1]
            return frames, t, i
        raise DatasetError(f"could not read any clip from {self.ds.path!r} after 100 tries")

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng_real, rng_gen = self._rng(step, 0), self._rng(step, 1)
        clips, times, idx = zip(*(self._read_clip(rng_real) for _ in range(self.batch_size)))
        real = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3)  # [B, k, 3, R, R]
        gen_t, gen_idx = [], []
        for _ in range(self.batch_size):
            i = self.valid[int(rng_gen.integers(len(self.valid)))]
            length = min(self.ds.num_frames(i), self.window)
            gen_t.append(sample_clip_times(length, self.num_frames, rng_gen, max_dist=self.max_dist,
                                           window=self.window, fractional=True)[1])
            gen_idx.append(i)
        return {
            "real": real.contiguous(),
            "real_t": torch.from_numpy(np.stack(times)).float(),
            "real_c": self._labels(list(idx)),
            "gen_t": torch.from_numpy(np.stack(gen_t)).float(),
            "gen_c": self._labels(gen_idx),
        }

    def _labels(self, idx: list[int]) -> torch.Tensor:
        if self.ds.labels is None:
            return torch.zeros([len(idx), 0])
        return torch.from_numpy(self.ds.labels[idx])


class _StepSampler(torch.utils.data.Sampler):
    def __init__(self, start_step: int):
        self.start_step = int(start_step)

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            yield step
            step += 1


def batch_iterator(batches: ClipBatches, start_step: int = 0, num_workers: int = 0) -> Iterator[dict]:
    """Endless iterator over batches start_step, start_step + 1, ... (prefetched by workers)."""
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=_StepSampler(start_step),
                                         num_workers=num_workers, persistent_workers=num_workers > 0,
                                         prefetch_factor=2 if num_workers > 0 else None)
    return iter(loader)
