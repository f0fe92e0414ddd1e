"""Frechet distance and feature statistics against direct float64 computations."""

import numpy as np
import pytest

from training.metrics.frechet import FeatureStats, MetricsError, frechet_distance


def _direct_frechet(mu1, s1, mu2, s2):
    # Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2): symmetric PSD, so eigh does it without sqrtm.
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r1 @ s2 @ r1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def _random_gaussian(rng, d, n):
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + rng.standard_normal(d) * 3
    return x


def test_frechet_matches_direct_float64():
    rng = np.random.default_rng(0)
    for d in (1, 5, 32):
        a, b = _random_gaussian(rng, d, 400), _random_gaussian(rng, d, 400)
        mu1, s1 = a.mean(0), np.cov(a, rowvar=False, bias=True).reshape(d, d)
        mu2, s2 = b.mean(0), np.cov(b, rowvar=False, bias=True).reshape(d, d)
        got, want = frechet_distance(mu1, s1, mu2, s2), _direct_frechet(mu1, s1, mu2, s2)
        assert got == pytest.approx(want, rel=1e-8, abs=1e-8)
        assert got > 0


def test_frechet_closed_form_1d_and_identity():
    # 1-D Gaussians: d^2 = (m1 - m2)^2 + (sd1 - sd2)^2.
    got = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert got == pytest.approx(9.0 + 1.0, rel=1e-12)
    rng = np.random.default_rng(1)
    x = _random_gaussian(rng, 16, 100)
    mu, s = x.mean(0), np.cov(x, rowvar=False, bias=True)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8 * np.trace(s)
    with pytest.raises(MetricsError):
        frechet_distance(mu, s, mu[:3], s)


def test_feature_stats_matches_numpy_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((37, 6)).astype(np.float32) * 5 + 100  # offset tests the float64 accumulation
    st = FeatureStats()
    for chunk in np.array_split(x, 4):
        st.append(chunk)
    mean, cov = st.mean_cov()
    assert st.num_items == 37 and mean.dtype == np.float64
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-12)
    want_cov = np.cov(x.astype(np.float64), rowvar=False, bias=True)
    np.testing.assert_allclose(cov, want_cov, rtol=1e-7, atol=1e-9)
    st.save(tmp_path / "s.npz", {"metric": "fvd16"})
    loaded, meta = FeatureStats.load(tmp_path / "s.npz")
    m2, c2 = loaded.mean_cov()
    assert loaded.num_items == 37 and meta == {"metric": "fvd16"}
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(c2, cov)
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write left no temp file


def test_feature_stats_merge_equals_one_pass():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 5)) * 3 + 7
    a, b, whole = FeatureStats(), FeatureStats(), FeatureStats()
    a.append(x[:13])
    b.append(x[13:])
    whole.append(x)
    m, c = a.merged(b).mean_cov()
    np.testing.assert_allclose(m, whole.mean_cov()[0], rtol=1e-12)
    np.testing.assert_allclose(c, whole.mean_cov()[1], rtol=1e-10, atol=1e-12)
    assert a.merged(b).num_items == 40 and a.num_items == 13  # the inputs are untouched


def test_feature_stats_errors(tmp_path):
    st = FeatureStats()
    with pytest.raises(MetricsError, match="at least 2"):
        st.mean_cov()
    st.append(np.zeros((2, 3)))
    with pytest.raises(MetricsError, match="feature size"):
        st.append(np.zeros((2, 4)))
    with pytest.raises(MetricsError, match="NaN"):
        st.append(np.full((1, 3), np.nan))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(MetricsError, match="cannot read"):
        FeatureStats.load(tmp_path / "bad.npz")
