"""Decision tests: cost arithmetic, threshold search against brute force, hard rules."""

from __future__ import annotations

import numpy as np

from systems.fraud_edge.decision import (
    APPROVE,
    DECLINE,
    REVIEW,
    Costs,
    Thresholds,
    choose_thresholds,
    model_actions,
    realized_cost,
    rule_actions,
)
from systems.fraud_edge.features.velocity import FEATURE_NAMES, N_FEATURES


def test_realized_cost_by_hand() -> None:
    c = Costs(false_decline=10, review=2, review_catch=0.5)
    actions = np.array([APPROVE, DECLINE, REVIEW, REVIEW, APPROVE])
    fraud = np.array([1, 0, 1, 0, 0])
    amount = np.array([100.0, 50.0, 40.0, 30.0, 20.0])
    # missed 100 + false decline 10 + 2 reviews x 2 + half of the reviewed fraud's 40
    assert realized_cost(actions, fraud, amount, c) == 100 + 10 + 4 + 20


def test_threshold_search_finds_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    fraud = (rng.random(n) < 0.02).astype(int)
    scores = np.clip(rng.normal(0.2 + 0.6 * fraud, 0.15), 0, 1)
    amount = rng.uniform(5, 500, n)
    costs = Costs(max_review_rate=1.0)
    best, cost = choose_thresholds(scores, fraud, amount, costs, n_grid=30)
    assert np.isclose(cost, realized_cost(model_actions(scores, best), fraud, amount, costs))
    assert cost < realized_cost(np.full(n, APPROVE), fraud, amount, costs)
    assert cost < realized_cost(np.full(n, DECLINE), fraud, amount, costs)
    grid = np.append(np.unique(np.quantile(scores, np.linspace(0.95, 1.0, 30))), np.inf)
    brute = min(
        realized_cost(model_actions(scores, Thresholds(r, d)), fraud, amount, costs)
        for i, r in enumerate(grid)
        for d in grid[i:]
    )
    assert np.isclose(cost, brute)


def test_review_cap_is_respected() -> None:
    rng = np.random.default_rng(1)
    fraud = (rng.random(5000) < 0.05).astype(int)
    scores = np.clip(rng.normal(0.3 + 0.4 * fraud, 0.2), 0, 1)
    costs = Costs(max_review_rate=0.005)
    best, _ = choose_thresholds(scores, fraud, np.full(5000, 100.0), costs)
    assert np.mean(model_actions(scores, best) == REVIEW) <= 0.005


def test_rules_fire_without_a_model() -> None:
    idx = {n: i for i, n in enumerate(FEATURE_NAMES)}
    x = np.zeros((3, N_FEATURES), np.float32)
    x[:, idx["log_amount"]] = np.log1p(20.0)
    x[:, idx["log_since_last"]] = np.log1p(30 * 86400)
    x[0, idx["card_cnt_10m"]] = 7  # card testing burst
    x[1, idx["log_km_from_usual"]] = np.log1p(1500.0)
    x[1, idx["log_since_last"]] = np.log1p(1800.0)  # 1500 km in 30 minutes
    actions, fired = rule_actions(x)
    assert list(actions) == [DECLINE, REVIEW, APPROVE]
    assert fired == [["card_testing"], ["impossible_travel"], []]
