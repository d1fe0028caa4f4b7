"""The simulated A/B against the known click model: ranking, true lift, and the engine's verdicts."""

import numpy as np
import pandas as pd
import pytest

from infra.metrics import grouped_auc
from systems.ctr.data import SEEN_BY_POSITION
from systems.ctr.experiment import (
    Policy,
    candidate_requests,
    challenger_won,
    click_probability,
    rank_positions,
    run_ab,
)


def test_rank_positions_within_each_request() -> None:
    request = np.array([0, 0, 0, 1, 1])
    key = np.array([0.1, 0.9, 0.5, 0.3, 0.7])
    assert rank_positions(request, key).tolist() == [3, 1, 2, 2, 1]


def test_click_probability_uses_the_slot(tiny_market) -> None:
    frame = candidate_requests(tiny_market, 2, 10, 4, np.random.default_rng(0))
    slot = np.tile([1, 2, 0, 3], 10)
    p = click_probability(frame, slot)
    seen = np.where(slot > 0, SEEN_BY_POSITION[np.maximum(slot, 1) - 1], 0)
    np.testing.assert_allclose(p, seen * frame["p_click_seen"].to_numpy())
    assert (p[slot == 0] == 0).all()


def _oracle(frame: pd.DataFrame) -> np.ndarray:
    return frame["p_click_seen"].to_numpy()


def _random(frame: pd.DataFrame) -> np.ndarray:
    return np.random.default_rng(len(frame)).random(len(frame))


def test_oracle_beats_random_and_the_interval_covers_the_true_lift(tiny_market) -> None:
    r = run_ab(
        tiny_market, Policy("random", _random), Policy("oracle", _oracle), days=4, requests_per_day=3000
    )
    assert r.true_lift > 0.05
    assert r.ci[0] <= r.true_lift <= r.ci[1]
    assert r.ci[0] > 0 and min(r.sequential_p) < 0.05
    assert r.srm_p > 0.001


def test_aa_has_no_true_lift_and_no_finding(tiny_market) -> None:
    r = run_ab(tiny_market, Policy("a", _oracle), Policy("b", _oracle), days=4, requests_per_day=2000)
    assert r.true_lift == pytest.approx(0.0, abs=1e-12)
    assert r.ci[0] <= 0 <= r.ci[1]
    assert min(r.sequential_p) > 0.05


def test_novelty_inflates_early_days_only(tiny_market) -> None:
    r = run_ab(
        tiny_market, Policy("a", _oracle), Policy("b", _oracle), days=6, requests_per_day=3000, novelty=1.0
    )
    assert r.true_lift == pytest.approx(0.0, abs=1e-12)  # the lasting effect is nil
    assert np.mean(r.daily_lift[:2]) > np.mean(r.daily_lift[-2:]) + 0.1


def test_user_level_signal_leaves_within_request_order_unchanged(tiny_market) -> None:
    frame = candidate_requests(tiny_market, 2, 500, 6, np.random.default_rng(1))
    y = (np.random.default_rng(2).random(len(frame)) < frame["p_click_seen"]).astype(int).to_numpy()
    base = frame["p_click_seen"].to_numpy()
    shifted = (
        base * np.exp(np.random.default_rng(3).normal(0, 1, tiny_market.config.n_users))[frame["user_id"]] / 3
    )
    g = frame["request"].to_numpy()
    assert grouped_auc(y, base, g) == pytest.approx(grouped_auc(y, shifted, g))


def test_the_challenger_wins_only_when_significant_positive_and_balanced() -> None:
    def result(p: float, ci_low: float, srm_p: float, scenario: str = "deepfm-vs-lr") -> list[dict]:
        return [{"scenario": scenario, "ab": {"sequential_p": [0.5, p], "ci": (ci_low, 0.1), "srm_p": srm_p}}]

    assert challenger_won(result(0.01, 0.02, 0.5))
    assert not challenger_won(result(0.2, 0.02, 0.5))  # not significant under mSPRT
    assert not challenger_won(result(0.01, -0.01, 0.5))  # the interval reaches a loss
    assert not challenger_won(result(0.01, 0.02, 0.0001))  # sample-ratio mismatch: the split is broken
    assert not challenger_won(result(0.01, 0.02, 0.5, scenario="novelty"))  # deepfm-vs-lr was not run
