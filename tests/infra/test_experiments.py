"""The experimentation engine, proven by simulation: error rates, coverage and variance reduction are
measured over >= 1000 simulated experiments (vectorised in NumPy), not asserted from formulas."""

import numpy as np
import pytest
from scipy import stats

from infra.experiments import (
    Experiment,
    Layer,
    benjamini_hochberg,
    bucket,
    buckets,
    cluster_ttest,
    confidence_sequence,
    cuped,
    holm,
    msprt_pvalues,
    srm_check,
    two_proportion_ztest,
    welch_ttest,
)

N_SIMS = 2000


def test_aa_false_positive_rate_of_the_z_test_is_alpha() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    a, b = rng.binomial(n, 0.05, N_SIMS), rng.binomial(n, 0.05, N_SIMS)
    fpr = np.mean(two_proportion_ztest(a, n, b, n).p_value < 0.05)
    assert 0.035 <= fpr <= 0.065


def test_aa_false_positive_rate_of_welch_on_skewed_revenue() -> None:
    rng = np.random.default_rng(1)
    a = rng.lognormal(0, 1, (N_SIMS, 300))  # revenue-like: heavy right tail, unequal n is fine too
    b = rng.lognormal(0, 1, (N_SIMS, 400))
    fpr = np.mean(welch_ttest(a, b).p_value < 0.05)
    assert 0.035 <= fpr <= 0.065


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 50), rng.normal(0.3, 2, 80)
    ours = welch_ttest(a, b)
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-9)


def test_z_interval_covers_the_true_lift_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    n, p_a, p_b = 20_000, 0.05, 0.055
    r = two_proportion_ztest(rng.binomial(n, p_a, N_SIMS), n, rng.binomial(n, p_b, N_SIMS), n)
    coverage = np.mean((r.ci_low <= p_b - p_a) & (p_b - p_a <= r.ci_high))
    assert 0.935 <= coverage <= 0.965
    power = np.mean(r.p_value < 0.05)
    assert power > 0.5  # the test does find a real 10% lift at this size


def _daily_looks(rng: np.random.Generator, p_a: float, p_b: float, days: int = 14, per_day: int = 2000):
    """Cumulative clicks and impressions per arm after each day: (N_SIMS, days) arrays."""
    ca = rng.binomial(per_day, p_a, (N_SIMS, days)).cumsum(axis=1)
    cb = rng.binomial(per_day, p_b, (N_SIMS, days)).cumsum(axis=1)
    n = per_day * np.arange(1, days + 1)[None, :]
    return ca, cb, n


def test_peeking_inflates_the_naive_test_but_not_the_sequential_one() -> None:
    rng = np.random.default_rng(4)
    ca, cb, n = _daily_looks(rng, 0.05, 0.05)
    naive = two_proportion_ztest(ca, n, cb, n)
    naive_fpr = np.mean((naive.p_value < 0.05).any(axis=1))  # stop at the first significant day
    msprt_fpr = np.mean((msprt_pvalues(naive.effect, naive.se**2, tau=0.005, axis=1) < 0.05).any(axis=1))
    final_day_fpr = np.mean(naive.p_value[:, -1] < 0.05)
    assert 0.035 <= final_day_fpr <= 0.065  # looking once is fine
    assert naive_fpr > 0.12  # looking daily and stopping early is not
    assert msprt_fpr <= 0.05


def test_sequential_test_still_detects_a_real_effect() -> None:
    rng = np.random.default_rng(5)
    ca, cb, n = _daily_looks(rng, 0.05, 0.056)
    r = two_proportion_ztest(ca, n, cb, n)
    power = np.mean((msprt_pvalues(r.effect, r.se**2, tau=0.005, axis=1) < 0.05).any(axis=1))
    assert power > 0.5


def test_confidence_sequence_covers_at_every_look_at_once() -> None:
    rng = np.random.default_rng(6)
    ca, cb, n = _daily_looks(rng, 0.05, 0.053)
    r = two_proportion_ztest(ca, n, cb, n)
    lo, hi = confidence_sequence(r.effect, r.se**2, tau=0.005)
    always = np.mean(((lo <= 0.003) & (hi >= 0.003)).all(axis=1))
    fixed = np.mean(((r.ci_low <= 0.003) & (r.ci_high >= 0.003)).all(axis=1))
    assert always >= 0.95
    assert fixed < 0.90  # the fixed-horizon interval, read daily, does not


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.8])
def test_cuped_cuts_variance_by_one_minus_rho_squared(rho: float) -> None:
    rng = np.random.default_rng(7)
    n = 400
    x = rng.normal(0, 1, (N_SIMS, 2 * n))  # pre-period metric
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(0, 1, (N_SIMS, 2 * n))  # A/A: no effect
    adjusted = cuped(y, x, axis=1)
    raw = welch_ttest(y[:, :n], y[:, n:])
    cup = welch_ttest(adjusted[:, :n], adjusted[:, n:])
    ratio = np.var(cup.effect) / np.var(raw.effect)
    assert ratio == pytest.approx(1 - rho**2, abs=0.06)
    assert 0.035 <= np.mean(cup.p_value < 0.05) <= 0.065  # still an unbiased, valid test


def test_srm_alerts_on_a_broken_split_and_rarely_on_a_good_one() -> None:
    rng = np.random.default_rng(8)
    good = [srm_check(rng.multinomial(100_000, [0.5, 0.5]), [0.5, 0.5])[2] for _ in range(N_SIMS)]
    broken = [srm_check(rng.multinomial(100_000, [0.508, 0.492]), [0.5, 0.5])[2] for _ in range(200)]
    assert np.mean(good) <= 0.004
    assert np.mean(broken) > 0.8


def test_holm_and_bh_on_a_worked_example() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert holm(p).tolist() == [True, False, False, True]
    assert benjamini_hochberg(p).tolist() == [True, True, True, True]


def test_holm_controls_familywise_error_over_ten_null_metrics() -> None:
    rng = np.random.default_rng(9)
    p = rng.uniform(size=(N_SIMS, 10))
    unadjusted = np.mean((p < 0.05).any(axis=1))
    adjusted = np.mean([holm(row).any() for row in p])
    assert unadjusted > 0.35  # 1 - 0.95^10 = 0.40
    assert adjusted <= 0.06


def test_cluster_randomisation_needs_a_cluster_level_test() -> None:
    """Users in one market share a market effect: the unit-level test over-rejects, the cluster one holds."""
    rng = np.random.default_rng(10)
    unit_rejects, cluster_rejects = [], []
    n_clusters, per_cluster = 30, 40
    clusters = np.repeat(np.arange(n_clusters), per_cluster)
    for _ in range(500):
        values = rng.normal(0, 1, n_clusters)[clusters] + rng.normal(0, 1, clusters.size)
        treated_cluster = rng.permutation(np.arange(n_clusters) % 2)
        treated = treated_cluster[clusters]
        unit_rejects.append(welch_ttest(values[treated == 0], values[treated == 1]).p_value < 0.05)
        cluster_rejects.append(cluster_ttest(values, clusters, treated).p_value < 0.05)
    assert np.mean(unit_rejects) > 0.3
    assert 0.02 <= np.mean(cluster_rejects) <= 0.085


def test_cluster_ttest_refuses_mixed_clusters() -> None:
    with pytest.raises(ValueError, match="both arms"):
        cluster_ttest(np.ones(4), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))


def test_bucketing_is_deterministic_uniform_and_independent_across_salts() -> None:
    assert bucket("user-42", "exp1") == bucket("user-42", "exp1")
    units = np.arange(200_000)
    a, b = buckets(units, "layer-a", 10), buckets(units, "layer-b", 10)
    assert np.array_equal(a, buckets(units, "layer-a", 10))
    counts = np.bincount(a, minlength=10)
    assert stats.chisquare(counts).pvalue > 0.001
    table = np.histogram2d(a, b, bins=[10, 10])[0]
    assert stats.chi2_contingency(table).pvalue > 0.001  # layers overlap orthogonally


def test_layer_splits_traffic_without_overlap() -> None:
    layer = Layer("ranking").add(Experiment("deepfm", traffic=0.5)).add(Experiment("ltr", traffic=0.3))
    seen = [layer.assign(f"u{i}") for i in range(20_000)]
    names = [s[0] if s else None for s in seen]
    assert abs(names.count("deepfm") / 20_000 - 0.5) < 0.02
    assert abs(names.count("ltr") / 20_000 - 0.3) < 0.02
    assert abs(names.count(None) / 20_000 - 0.2) < 0.02
    arms = [s[1] for s in seen if s and s[0] == "deepfm"]
    assert abs(arms.count("treatment") / len(arms) - 0.5) < 0.03
    with pytest.raises(ValueError, match="traffic left"):
        layer.add(Experiment("too-big", traffic=0.3))
