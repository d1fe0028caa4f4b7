"""From score to action: approve / review / decline by expected cost, and hard rules that need no model.

Costs are in EUR per transaction. A missed fraud loses its amount; declining a good customer costs
`false_decline` (lost margin and the customer's trust); a review costs an analyst's `review` minutes and
stops `review_catch` of the frauds it sees. Two score thresholds (review, decline) are chosen on the
validation split to minimise the total cost, with the review queue capped at `max_review_rate`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from systems.fraud_edge.features.velocity import FEATURE_NAMES

APPROVE, REVIEW, DECLINE = 0, 1, 2
ACTIONS = ("approve", "review", "decline")
_F = {name: i for i, name in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True)
class Costs:
    false_decline: float = 15.0
    review: float = 3.0
    review_catch: float = 0.9
    max_review_rate: float = 0.01


@dataclass(frozen=True)
class Thresholds:
    review: float
    decline: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def realized_cost(actions: np.ndarray, is_fraud: np.ndarray, amount_eur: np.ndarray, costs: Costs) -> float:
    """Total EUR lost by a vector of actions on transactions whose truth is known."""
    fraud = is_fraud.astype(bool)
    missed = amount_eur[(actions == APPROVE) & fraud].sum()
    declined_good = costs.false_decline * np.sum((actions == DECLINE) & ~fraud)
    reviewed = costs.review * np.sum(actions == REVIEW)
    leaked = (1 - costs.review_catch) * amount_eur[(actions == REVIEW) & fraud].sum()
    return float(missed + declined_good + reviewed + leaked)


def model_actions(scores: np.ndarray, t: Thresholds) -> np.ndarray:
    return np.where(scores >= t.decline, DECLINE, np.where(scores >= t.review, REVIEW, APPROVE))


def choose_thresholds(
    scores: np.ndarray,
    is_fraud: np.ndarray,
    amount_eur: np.ndarray,
    costs: Costs,
    floor: np.ndarray | None = None,
    n_grid: int = 100,
) -> tuple[Thresholds, float]:
    """Grid over score quantiles in the top 5%: the (review, decline) pair with the least total cost.

    `floor` is the hard rules' action per row: the served action is never below it, so the
    thresholds are chosen for the policy that is actually served (model and rules together).
    """
    floor = np.zeros(len(scores), np.int64) if floor is None else floor
    grid = np.unique(np.quantile(scores, np.linspace(0.95, 1.0, n_grid)))
    grid = np.append(grid, np.inf)  # "never": lets the search drop review or decline entirely
    best, best_cost = Thresholds(float(grid[-1]), float(grid[-1])), np.inf
    max_reviews = costs.max_review_rate * len(scores)
    for i, t_review in enumerate(grid):
        for t_decline in grid[i:]:
            t = Thresholds(float(t_review), float(t_decline))
            actions = np.maximum(model_actions(scores, t), floor)
            if np.sum(actions == REVIEW) > max_reviews:
                continue
            cost = realized_cost(actions, is_fraud, amount_eur, costs)
            if cost < best_cost:
                best, best_cost = t, cost
    return best, float(best_cost)


def rule_actions(x: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
    """Hard rules on the (N, D) features alone: they still run when the model or the network is down."""
    amount = np.expm1(x[:, _F["log_amount"]])
    km = np.expm1(x[:, _F["log_km_from_usual"]])
    since_s = np.expm1(x[:, _F["log_since_last"]])
    rules = {  # name: (fires, action)
        "card_testing": (x[:, _F["card_cnt_10m"]] >= 5, DECLINE),
        "terminal_burst": (x[:, _F["term_cnt_1h"]] >= 8, REVIEW),
        "impossible_travel": ((km >= 500) & (since_s <= 2 * 3600), REVIEW),
        "amount_spike": ((x[:, _F["amount_vs_card_mean"]] >= np.log(10.0)) & (amount >= 200), REVIEW),
        "large_amount": (amount >= 2000, REVIEW),
    }
    actions = np.zeros(len(x), dtype=np.int64)
    fired: list[list[str]] = [[] for _ in range(len(x))]
    for name, (mask, action) in rules.items():
        actions = np.where(mask, np.maximum(actions, action), actions)
        for i in np.flatnonzero(mask):
            fired[i].append(name)
    return actions, fired


def combined_actions(scores: np.ndarray, x: np.ndarray, t: Thresholds) -> np.ndarray:
    """The served policy: the stricter of the model's cost-based action and the hard rules."""
    return np.maximum(model_actions(scores, t), rule_actions(x)[0])


def policy_row(actions: np.ndarray, y: np.ndarray, amount: np.ndarray, costs: Costs) -> dict[str, float]:
    """What a policy's actions did on labelled transactions: cost, fraud stopped, decline and review rates."""
    fraud = y.astype(bool)
    return {
        "cost_eur": realized_cost(actions, y, amount, costs),
        "fraud_eur_stopped": float(amount[fraud & (actions == DECLINE)].sum())
        + costs.review_catch * float(amount[fraud & (actions == REVIEW)].sum()),
        "decline_rate": float(np.mean(actions == DECLINE)),
        "review_rate": float(np.mean(actions == REVIEW)),
        "false_declines": int(np.sum((actions == DECLINE) & ~fraud)),
    }
