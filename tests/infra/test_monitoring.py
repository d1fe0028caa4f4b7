import numpy as np
from scipy import stats

from infra.monitoring import ks_statistic, psi


def test_psi_is_small_for_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=20_000)
    assert psi(ref, rng.normal(size=20_000)) < 0.01
    assert 0.1 < psi(ref, rng.normal(0.5, 1, size=20_000)) < 0.5
    assert psi(ref, rng.normal(2.0, 1, size=20_000)) > 1.0


def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=3000), rng.normal(0.2, 1.1, size=2000)
    assert abs(ks_statistic(a, b) - stats.ks_2samp(a, b).statistic) < 1e-12
