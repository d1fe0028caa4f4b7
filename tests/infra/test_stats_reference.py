"""The hand-written statistics of infra.experiments and infra.monitoring against scipy, wherever scipy computes
the same quantity (Holm, CUPED, mSPRT and the cluster test have no scipy twin and are tested by simulation in
test_experiments.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import roc_auc_score

from infra.experiments import benjamini_hochberg, srm_check, two_proportion_ztest, welch_ttest
from infra.monitoring import categorical_psi, jensen_shannon, ks_statistic, psi, quantile_bins
from infra.monitoring.performance import expected_auc, expected_log_loss


# ---------------------------------------------------------------------------------------------- experiments
def test_two_proportion_z_squared_is_the_chi_square_of_the_2x2_table() -> None:
    rng = np.random.default_rng(0)
    n_a, n_b = rng.integers(500, 50_000, 50), rng.integers(500, 50_000, 50)
    clicks_a, clicks_b = rng.binomial(n_a, 0.05), rng.binomial(n_b, rng.uniform(0.04, 0.07, 50))
    result = two_proportion_ztest(clicks_a, n_a, clicks_b, n_b)
    for i in range(50):
        table = [[clicks_a[i], n_a[i] - clicks_a[i]], [clicks_b[i], n_b[i] - clicks_b[i]]]
        chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
        assert dof == 1
        assert result.statistic[i] ** 2 == pytest.approx(chi2, rel=1e-9)
        assert result.p_value[i] == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert np.any(result.p_value < 0.05) and np.any(result.p_value > 0.5)


def test_welch_matches_scipy_ttest_ind() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(0, 1, (20, 300)), rng.lognormal(0.1, 1.3, (20, 450))
    result = welch_ttest(a, b, alpha=0.1)
    ref = stats.ttest_ind(b, a, axis=-1, equal_var=False)  # b - a, as the effect is treatment - control
    np.testing.assert_allclose(result.statistic, ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(result.p_value, ref.pvalue, rtol=1e-9)
    ci = ref.confidence_interval(confidence_level=0.9)
    np.testing.assert_allclose(result.ci_low, ci.low, rtol=1e-9)
    np.testing.assert_allclose(result.ci_high, ci.high, rtol=1e-9)


@pytest.mark.parametrize(
    ("counts", "weights"),
    [([50_000, 50_000], [1, 1]), ([50_600, 49_400], [1, 1]), ([10_210, 9_790, 20_000], [1, 1, 2]),
     ([8_900, 91_100], [0.1, 0.9])],
)  # fmt: skip
def test_srm_check_matches_scipy_chisquare(counts: list[int], weights: list[float]) -> None:
    chi2, p, alert = srm_check(np.array(counts), np.array(weights))
    expected = np.array(weights) / np.sum(weights) * np.sum(counts)
    ref = stats.chisquare(counts, f_exp=expected)
    assert chi2 == pytest.approx(ref.statistic, rel=1e-12, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)
    assert alert == (ref.pvalue < 0.001)


@pytest.mark.parametrize("seed", range(20))
def test_benjamini_hochberg_rejects_what_scipy_adjusted_p_values_reject(seed: int) -> None:
    """The project's BH returns a reject mask; scipy returns BH-adjusted p-values: reject where adjusted <= alpha."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 60))
    p = np.concatenate([rng.uniform(0, 1, m), rng.uniform(0, 0.01, int(rng.integers(0, 10)))])
    p = np.round(p, 4)  # ties
    for alpha in (0.05, 0.1, 0.2):
        np.testing.assert_array_equal(benjamini_hochberg(p, alpha), stats.false_discovery_control(p) <= alpha)


def test_benjamini_hochberg_step_up_by_hand() -> None:
    """0.04 is above its own bar (2/4 * 0.05) but 0.05 at rank 4 passes (4/4 * 0.05), so all four are rejected."""
    p = np.array([0.05, 0.04, 0.001, 0.035])
    np.testing.assert_array_equal(benjamini_hochberg(p), [True, True, True, True])
    np.testing.assert_array_equal(stats.false_discovery_control(p) <= 0.05, [True, True, True, True])


# ---------------------------------------------------------------------------------------------- monitoring
def bin_counts(reference: np.ndarray, live: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts over the reference-quantile bins with numpy's histogram (bins closed on the left, as in drift.py)."""
    edges = np.concatenate([[-np.inf], quantile_bins(reference, n_bins), [np.inf]])
    return np.histogram(reference, edges)[0].astype(float), np.histogram(live, edges)[0].astype(float)


@pytest.mark.parametrize("shift", [0.0, 0.2, 1.0])
def test_jensen_shannon_is_scipys_base_2_distance(shift: float) -> None:
    """The project returns the distance (sqrt of the divergence), base 2, as scipy's jensenshannon does."""
    rng = np.random.default_rng(2)
    reference = rng.normal(0, 1, 20_000).round(1)  # rounded: some values sit on the bin edges
    live = rng.normal(shift, 1, 8_000).round(1)
    p, q = bin_counts(reference, live, 20)
    assert p.sum() == reference.size and q.sum() == live.size
    assert jensen_shannon(reference, live) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9, abs=1e-12)
    cats = np.array(["a", "b", "c", "d"])
    ref_c, live_c = rng.choice(cats, 5000, p=[0.4, 0.3, 0.2, 0.1]), rng.choice(cats[:3], 3000)
    p_c = np.array([(ref_c == c).sum() for c in cats], dtype=float)
    q_c = np.array([(live_c == c).sum() for c in cats], dtype=float)
    ref_js = jensenshannon(p_c, q_c, base=2)
    assert jensen_shannon(ref_c, live_c, categorical=True) == pytest.approx(ref_js, rel=1e-9)
    mixture = (p_c / p_c.sum() + q_c / q_c.sum()) / 2
    divergence = 0.5 * stats.entropy(p_c, mixture, base=2) + 0.5 * stats.entropy(q_c, mixture, base=2)
    assert jensen_shannon(ref_c, live_c, categorical=True) ** 2 == pytest.approx(divergence, rel=1e-9)


@pytest.mark.parametrize("shift", [0.1, 0.5])
def test_psi_is_the_symmetrised_kl_divergence(shift: float) -> None:
    """PSI = KL(live || ref) + KL(ref || live) (natural log) when no bin is empty (the eps floor is then idle)."""
    rng = np.random.default_rng(3)
    reference, live = rng.normal(0, 1, 50_000).round(2), rng.normal(shift, 1.2, 50_000).round(2)
    p, q = bin_counts(reference, live, 10)
    assert (p > 0).all() and (q > 0).all()
    kl_sum = stats.entropy(q, p) + stats.entropy(p, q)
    assert psi(reference, live) == pytest.approx(kl_sum, rel=1e-9)
    assert categorical_psi(p, q) == pytest.approx(kl_sum, rel=1e-9)


def test_ks_statistic_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    for shift, n_live in ((0.0, 3000), (0.3, 1234), (1.0, 500)):
        reference, live = rng.normal(0, 1, 5000).round(2), rng.normal(shift, 1, n_live).round(2)  # ties
        assert ks_statistic(reference, live) == pytest.approx(
            stats.ks_2samp(reference, live).statistic, rel=1e-12
        )


def test_expected_log_loss_is_the_mean_bernoulli_entropy() -> None:
    p = np.random.default_rng(5).uniform(0.001, 0.999, 1000)
    assert expected_log_loss(p) == pytest.approx(stats.entropy(np.stack([p, 1 - p])).mean(), rel=1e-12)


def test_psi_by_the_written_out_formula_with_an_empty_bin() -> None:
    """PSI = sum over bins (a - e) ln(a / e), a and e the live and reference shares floored at 1e-4: here four
    reference-quartile bins, the live sample empty in the first (the floor is what keeps ln finite)."""
    reference = np.arange(1.0, 9.0)  # quartile edges 2.75, 4.5, 6.25: two values a bin
    live = np.array([3.0, 5.0, 5.5, 7.0, 7.5, 8.0])  # bins: 0, 1, 2, 3 values -> shares 0, 1/6, 2/6, 3/6
    e = [0.25, 0.25, 0.25, 0.25]
    a = [1e-4, 1 / 6, 2 / 6, 3 / 6]
    by_hand = sum((ai - ei) * np.log(ai / ei) for ai, ei in zip(a, e, strict=True))
    assert psi(reference, live, n_bins=4) == pytest.approx(by_hand, rel=1e-12)
    assert categorical_psi(np.array([2, 2, 2, 2]), np.array([0, 1, 2, 3])) == pytest.approx(
        by_hand, rel=1e-12
    )


def test_expected_auc_is_its_formula_by_brute_force_and_the_mean_auc_of_drawn_labels() -> None:
    """CBPE's expected AUC: sum over pairs i != j of p_i (1 - p_j) [p_i > p_j], over E[#pos x #neg]; the O(n^2)
    double loop below is that sentence. With labels drawn from the model's own p, the realised AUCs average
    to it (a ratio of expectations, so within sampling error)."""
    rng = np.random.default_rng(6)
    p = rng.beta(2, 5, 300)
    num = sum(p[i] * (1 - p[j]) for i in range(p.size) for j in range(p.size) if i != j and p[i] > p[j])
    den = sum(p[i] * (1 - p[j]) for i in range(p.size) for j in range(p.size) if i != j)
    assert expected_auc(p) == pytest.approx(num / den, rel=1e-12)
    drawn = [roc_auc_score(rng.random(p.size) < p, p) for _ in range(400)]
    assert expected_auc(p) == pytest.approx(np.mean(drawn), abs=0.01)
