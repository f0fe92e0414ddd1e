"""Feature statistics and the Frechet distance (docs/reference.md, 'Metrics': float64, scipy sqrtm, real part).

FID and FVD are the same formula on different features (Heusel et al. 2017):
    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
Statistics are accumulated in float64 as running sums, so features never need to be kept,
and the covariance is the biased (1/n) estimate, as in the paper's evaluation code.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import scipy.linalg

from core.files import atomic_write

log = logging.getLogger(__name__)


class MetricsError(RuntimeError):
    """A metric cannot be computed (bad input, too few samples, broken statistics file)."""


class FeatureStats:
    """Running float64 sums of features [N, D] -> mean [D] and covariance [D, D]."""

    def __init__(self, num_features: int | None = None) -> None:
        self.num_items = 0
        self.num_features = num_features
        self._sum: np.ndarray | None = None
        self._sum_outer: np.ndarray | None = None
        if num_features is not None:
            self._init(num_features)

    def _init(self, d: int) -> None:
        self.num_features = d
        self._sum = np.zeros([d], dtype=np.float64)
        self._sum_outer = np.zeros([d, d], dtype=np.float64)

    def append(self, features: np.ndarray) -> None:
        """Add a batch of features [N, D] (any float dtype; accumulated in float64)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise MetricsError(f"features must be [N, D], got shape {tuple(x.shape)}")
        if self._sum is None:
            self._init(x.shape[1])
        if x.shape[1] != self.num_features:
            raise MetricsError(f"feature size changed: {x.shape[1]} != {self.num_features}")
        if not np.isfinite(x).all():
            raise MetricsError("features contain NaN or Inf")
        self.num_items += x.shape[0]
        self._sum += x.sum(axis=0)
        self._sum_outer += x.T @ x

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """-> (mean [D], covariance [D, D]), both float64; covariance normalised by 1/n."""
        if self.num_items < 2 or self._sum is None or self._sum_outer is None:
            raise MetricsError(f"need at least 2 samples for a covariance, have {self.num_items}")
        mean = self._sum / self.num_items
        cov = self._sum_outer / self.num_items - np.outer(mean, mean)
        return mean, cov

    def merged(self, other: FeatureStats) -> FeatureStats:
        """The statistics of both samples together (the sums add; nothing is recomputed)."""
        if self.num_features != other.num_features:
            raise MetricsError(f"feature size differs: {self.num_features} != {other.num_features}")
        out = FeatureStats(self.num_features)
        out.num_items = self.num_items + other.num_items
        out._sum = self._sum + other._sum
        out._sum_outer = self._sum_outer + other._sum_outer
        return out

    # --- persistence: .npz of the float64 sums (no pickle) plus a JSON description, written atomically ---
    def save(self, path: str | os.PathLike, meta: dict | None = None) -> None:
        self.mean_cov()  # refuses fewer than 2 items
        atomic_write(path, lambda tmp: np.savez(tmp, sum=self._sum, sum_outer=self._sum_outer,
                                                num_items=np.int64(self.num_items),
                                                meta=np.array(json.dumps(meta or {}))), suffix=".tmp.npz")

    @staticmethod
    def load(path: str | os.PathLike) -> tuple[FeatureStats, dict]:
        """-> (statistics, meta) from a file written by save()."""
        try:
            with np.load(path, allow_pickle=False) as f:
                total, outer = f["sum"].astype(np.float64), f["sum_outer"].astype(np.float64)
                n, meta = int(f["num_items"]), json.loads(str(f["meta"]))
        except (OSError, KeyError, ValueError) as e:
            raise MetricsError(f"cannot read feature statistics {path}: {e}") from e
        if total.ndim != 1 or outer.shape != (total.shape[0],) * 2 or n < 2:
            raise MetricsError(f"cannot read feature statistics {path}: inconsistent shapes or count")
        stats = FeatureStats(total.shape[0])
        stats.num_items, stats._sum, stats._sum_outer = n, total, outer
        return stats, meta


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """scipy.linalg.sqrtm without its error print-out (the `disp` argument is deprecated in SciPy 1.17)."""
    out = scipy.linalg.sqrtm(a)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    mu [D], sigma [D, D]. The matrix square root is scipy.linalg.sqrtm of sigma1 @ sigma2 and
    only its real part is used (tiny imaginary parts come from round-off on near-singular products).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise MetricsError(f"shape mismatch: mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}")
    m = np.square(mu1 - mu2).sum()
    s = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(s).all():
        # Singular product: regularise both covariances slightly (as TTUR's reference code does).
        log.warning("sqrtm of the covariance product is not finite; adding 1e-6 to the diagonals")
        offset = np.eye(d) * 1e-6
        s = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    return float(np.real(m + np.trace(sigma1 + sigma2 - 2.0 * s)))
