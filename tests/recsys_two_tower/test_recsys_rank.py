"""Ranking-stage tests: the policy layer against brute force, the features' shape and defaults, and the trained
ranker (from the session's small pipeline) against the two-tower order it re-orders."""

import numpy as np
import onnxruntime  # noqa: F401  (the ranker runs on it; import errors belong here, not in a fixture)
import pytest

from infra.serving.onnx import make_session
from systems.recsys_two_tower import data
from systems.recsys_two_tower.features.definitions import HISTORY_COLS, TOPIC_COLS, USER_COLS
from systems.recsys_two_tower.rank import (
    CANDIDATES,
    N_FEATURES,
    RANK_FEATURES,
    RankCatalog,
    policy,
    rank_candidates,
    rank_features,
    user_profile,
)


def _brute_policy(ranked, seen, creators, k, cap):
    kept = [(v, c) for v, c in zip(ranked, creators, strict=True) if v >= 0 and v not in set(seen)]
    first, rest, taken = [], [], {}
    for v, c in kept:
        if taken.get(c, 0) < cap:
            taken[c] = taken.get(c, 0) + 1
            first.append(v)
        else:
            rest.append(v)
    return (first + rest)[:k]


@pytest.mark.parametrize("seed", range(20))
def test_policy_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    ranked = rng.permutation(200)[:n]
    ranked[rng.random(n) < 0.05] = -1
    creators = rng.integers(0, int(rng.integers(1, 8)), n)
    seen = rng.choice(200, size=int(rng.integers(0, 20)), replace=False)
    k, cap = int(rng.integers(1, 40)), int(rng.integers(1, 4))
    got, scores = policy(ranked, -np.arange(n, dtype=np.float32), seen, creators, k, cap)
    assert got.tolist() == _brute_policy(ranked, seen, creators, k, cap)
    assert len(scores) == len(got)


def test_policy_caps_creators_and_drops_seen() -> None:
    ranked = np.array([10, 11, 12, 13, 14, 15])
    creators = np.array([1, 1, 1, 2, 2, 3])
    got, _ = policy(ranked, np.zeros(6, np.float32), np.array([14]), creators, k=4, cap=2)
    assert got.tolist() == [10, 11, 13, 15]
    got, _ = policy(ranked, np.zeros(6, np.float32), np.array([14]), creators, k=5, cap=2)
    assert got.tolist() == [10, 11, 13, 15, 12]  # the cap gives way rather than return fewer than k


def _catalog(n: int = 50) -> RankCatalog:
    rng = np.random.default_rng(0)
    return RankCatalog(rng.integers(0, data.N_DURATION_BINS, n), rng.integers(0, data.N_TOPICS, n),
                       rng.integers(0, 5, n), rng.random(n).astype(np.float32))  # fmt: skip


def test_profile_defaults_and_the_length_cross_feature() -> None:
    catalog = _catalog()
    empty = {"user_id": [1]} | {c: [None] for c in USER_COLS}
    p = user_profile(empty, catalog)
    np.testing.assert_allclose(p[: data.N_DURATION_BINS], 1 / data.N_DURATION_BINS)  # no history: uniform
    short = np.flatnonzero(catalog.length == 0)[:5]
    cols = {"user_id": [1], "watches_7d": [5], "watches_30d": [5], "mean_completion_30d": [0.5]}
    cols |= {c: [0.0] for c in TOPIC_COLS} | {c: [-1] for c in HISTORY_COLS}
    for j, v in enumerate(short):
        cols[HISTORY_COLS[j]] = [int(v)]
    p = user_profile(cols, catalog)
    assert p[0] == p[: data.N_DURATION_BINS].max() > 0.5
    cands = np.arange(20)
    x = rank_features(p, cands, np.linspace(1, 0, 20).astype(np.float32), catalog)
    assert x.shape == (20, N_FEATURES) and x.dtype == np.float32
    share = x[:, RANK_FEATURES.index("length_share")]
    np.testing.assert_allclose(share, p[catalog.length[cands]])  # the user x video feature


def test_ranker_reorders_towards_the_truth(recsys_pipeline) -> None:
    """The trained ranker beats the two-tower order it re-orders (nDCG@10 on the future split), the ONNX export
    matches PyTorch, and the artifacts name the training run."""
    ev = recsys_pipeline.eval["table"]
    ann = ev["two-tower ANN (serving index)"]["ndcg@10"]
    ranked = next(row for name, row in ev.items() if name.endswith("-> ranker"))["ndcg@10"]
    oracle = ev["oracle (true preferences)"]["ndcg@10"]
    assert ann < ranked < oracle, (ann, ranked, oracle)
    meta = recsys_pipeline.rank
    assert meta["onnx_max_abs_diff"] < 1e-4 and meta["final_loss"] < meta["first_loss"]
    assert meta["run_id"] and meta["features"] == list(RANK_FEATURES)


def test_ranker_onnx_orders_candidates(recsys_pipeline) -> None:
    root = recsys_pipeline.workdir
    catalog = RankCatalog.load(root / "rank" / "catalog.npz")
    session = make_session(root / "rank" / "ranker.onnx")
    empty = {"user_id": [1]} | {c: [None] for c in USER_COLS}
    cands = np.arange(CANDIDATES)
    order, scores = rank_candidates(session, user_profile(empty, catalog), cands, np.zeros(CANDIDATES, np.float32),
                                    catalog)  # fmt: skip
    assert sorted(order.tolist()) == cands.tolist() and np.all(np.diff(scores) <= 0)
