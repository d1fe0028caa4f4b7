"""infra.metrics against reference implementations: ranking against trec_eval (pytrec_eval), classification
against scikit-learn and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytrec_eval
from sklearn import metrics as skm

from infra.metrics import (
    EPS,
    calibration_ratio,
    grouped_auc,
    log_loss,
    mean_ndcg_at_k,
    mean_recall_at_k,
    mrr_at_k,
    ndcg_at_k,
    normalized_entropy,
    pr_auc,
    recall_at_fpr,
    recall_at_k,
    reciprocal_rank_at_k,
    roc_auc,
)

KS = (1, 5, 10, 20)
TOL = 1e-9


# ---------------------------------------------------------------------------------------------- ranking
def random_queries(seed: int, n_queries: int = 60, n_docs: int = 300) -> list[tuple[list[int], set[int]]]:
    """(ranked, relevant) per query: runs of 1-40 docs, 1-30 relevant docs (often more than k) of which some
    are retrieved at random ranks; every sixth query retrieves none of them, every tenth has none at all."""
    rng = np.random.default_rng(seed)
    queries = []
    for q in range(n_queries):
        ranked = rng.choice(n_docs, size=int(rng.integers(1, 41)), replace=False).tolist()
        n_rel = int(rng.integers(1, 31))
        if q % 10 == 5:
            relevant: set[int] = set()
        elif q % 6 == 0:
            relevant = set(rng.choice(np.setdiff1d(np.arange(n_docs), ranked), n_rel, replace=False).tolist())
        else:
            n_hit = int(rng.integers(0, min(len(ranked), n_rel) + 1))
            hits = rng.choice(ranked, n_hit, replace=False).tolist()
            relevant = set(rng.choice(n_docs, n_rel - n_hit, replace=False).tolist()) | set(hits)
        queries.append((ranked, relevant))
    return queries


def trec_eval(queries: list[tuple[list[int], set[int]]], k: int) -> dict[str, dict[str, float]]:
    """trec_eval's recall_k and ndcg_cut_k on the full run, and recip_rank on the run cut at k; trec_eval ranks
    by score (ties broken by doc id), so each run gets strictly decreasing scores in our order. The first two
    retrieved non-relevant docs are judged 0, except for every twentieth query (q5, q25, ...: no judgments)."""
    qrels = {}
    for i, (ranked, relevant) in enumerate(queries):
        judged_out = [] if i % 20 == 5 else [d for d in ranked if d not in relevant][:2]
        qrels[f"q{i}"] = {f"d{d}": 0 for d in judged_out} | {f"d{d}": 1 for d in relevant}
    run = {f"q{i}": {f"d{d}": float(len(r) - j) for j, d in enumerate(r)} for i, (r, _) in enumerate(queries)}
    cut = {q: dict(list(docs.items())[:k]) for q, docs in run.items()}
    full = pytrec_eval.RelevanceEvaluator(qrels, {f"recall.{k}", f"ndcg_cut.{k}"}).evaluate(run)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    return {q: {**full[q], "recip_rank": rr[q]["recip_rank"]} for q in full}


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("as_str", [False, True], ids=["int_ids", "str_ids"])
def test_ranking_metrics_match_trec_eval(k: int, as_str: bool) -> None:
    queries = random_queries(seed=k)
    ref = trec_eval(queries, k)
    judged = [i for i, (_, rel) in enumerate(queries) if rel]  # queries with nothing relevant: next test
    assert len(judged) >= 50 and {f"q{i}" for i in judged} <= set(ref)
    assert any(len(queries[i][1]) > k for i in judged)  # ideal DCG cut at k
    assert any(not set(queries[i][0]) & queries[i][1] for i in judged)  # all three metrics 0
    if k > 1:  # partial credit, not only 0 or 1
        assert any(0 < ref[f"q{i}"][f"ndcg_cut_{k}"] < 1 for i in judged)
        assert any(0 < ref[f"q{i}"]["recip_rank"] < 1 for i in judged)
    for i in judged:
        ranked, relevant = queries[i]
        if as_str:
            ranked, relevant = [f"d{d}" for d in ranked], {f"d{d}" for d in relevant}
        r = ref[f"q{i}"]
        assert recall_at_k(ranked, relevant, k) == pytest.approx(r[f"recall_{k}"], abs=TOL), i
        assert ndcg_at_k(ranked, relevant, k) == pytest.approx(r[f"ndcg_cut_{k}"], abs=TOL), i
        assert reciprocal_rank_at_k(ranked, relevant, k) == pytest.approx(r["recip_rank"], abs=TOL), i


def test_queries_with_nothing_relevant_score_zero_here_and_are_skipped_or_zero_in_trec_eval() -> None:
    """trec_eval leaves out a query with no judgments and scores 0.0 one whose judged docs are all non-relevant;
    here both score 0.0 (so a mean over queries counts them as misses)."""
    queries = random_queries(seed=0)
    ref = trec_eval(queries, 10)
    empty = [i for i, (_, rel) in enumerate(queries) if not rel]
    assert {i for i in empty if i % 20 == 5} == {5, 25, 45}
    for i in empty:
        ranked, relevant = queries[i]
        ours = [m(ranked, relevant, 10) for m in (recall_at_k, ndcg_at_k, reciprocal_rank_at_k)]
        assert ours == [0.0, 0.0, 0.0]
        if i % 20 == 5:
            assert f"q{i}" not in ref
        else:
            assert [ref[f"q{i}"][m] for m in ("recall_10", "ndcg_cut_10", "recip_rank")] == [0.0, 0.0, 0.0]


def test_empty_relevant_or_empty_ranking_scores_zero() -> None:
    for metric in (recall_at_k, ndcg_at_k, reciprocal_rank_at_k):
        assert metric(["a", "b"], set(), 10) == 0.0
        assert metric([], {"a"}, 10) == 0.0
    assert mean_recall_at_k(np.array([[1, 2], [3, 4]]), [np.array([1]), np.array([], int)], 2) == 0.5
    assert mean_ndcg_at_k(np.array([[1, 2], [3, 4]]), [np.array([1]), np.array([], int)], 2) == 0.5


def test_ranking_metrics_by_hand() -> None:
    ranked, relevant = ["a", "x", "b", "y"], {"a", "b"}
    assert recall_at_k(ranked, relevant, 1) == 0.5
    assert reciprocal_rank_at_k(["x", "b"], relevant, 10) == 0.5
    assert reciprocal_rank_at_k(["x", "b"], relevant, 1) == 0.0
    assert ndcg_at_k(ranked, relevant, 10) == (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))


@pytest.mark.parametrize("k", KS)
def test_vectorised_means_equal_the_mean_of_per_query_metrics(k: int) -> None:
    rng = np.random.default_rng(100 + k)
    n_users, n_items, width = 200, 500, 25
    recs = np.stack([rng.choice(n_items, width, replace=False) for _ in range(n_users)])  # (U, K)
    targets = [np.unique(rng.choice(n_items, int(rng.integers(1, 40)))) for _ in range(n_users)]
    for u in range(0, n_users, 3):  # a hit at a random rank for a third of the users
        targets[u] = np.union1d(targets[u], recs[u, int(rng.integers(0, width))])
    queries = [(r.tolist(), set(t.tolist())) for r, t in zip(recs, targets, strict=True)]
    recall = mean_recall_at_k(recs, targets, k)
    ndcg = mean_ndcg_at_k(recs, targets, k)
    assert recall > 0 and ndcg > 0
    assert recall == pytest.approx(np.mean([recall_at_k(r, t, k) for r, t in queries]), abs=1e-12)
    assert ndcg == pytest.approx(np.mean([ndcg_at_k(r, t, k) for r, t in queries]), abs=1e-12)
    ref = trec_eval(queries, k)
    assert recall == pytest.approx(np.mean([m[f"recall_{k}"] for m in ref.values()]), abs=TOL)
    assert ndcg == pytest.approx(np.mean([m[f"ndcg_cut_{k}"] for m in ref.values()]), abs=TOL)
    mrr = mrr_at_k([r for r, _ in queries], [t for _, t in queries], k)
    assert mrr == pytest.approx(np.mean([m["recip_rank"] for m in ref.values()]), abs=TOL)


# ---------------------------------------------------------------------------------------------- classification
def labelled_scores(seed: int, n: int = 5000, rate: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Labels and calibrated probabilities, with a few exact 0s and 1s to exercise the clipping."""
    rng = np.random.default_rng(seed)
    p = rng.beta(rate * 4, (1 - rate) * 4, n)
    y = (rng.random(n) < p).astype(np.int64)
    p[:5], p[5:10] = 0.0, 1.0
    return y, p


@pytest.mark.parametrize("seed", range(3))
def test_log_loss_and_ne_match_sklearn(seed: int) -> None:
    y, p = labelled_scores(seed)
    ref = skm.log_loss(y, np.clip(p, EPS, 1 - EPS))
    assert log_loss(y, p) == pytest.approx(ref, rel=1e-12)
    base_rate_loss = skm.log_loss(y, np.full(y.size, y.mean()))  # entropy of the base rate
    assert normalized_entropy(y, p) == pytest.approx(ref / base_rate_loss, rel=1e-12)
    assert normalized_entropy(y, np.full(y.size, y.mean())) == pytest.approx(1.0, rel=1e-12)


def test_calibration_ratio() -> None:
    y, p = labelled_scores(0, n=200_000)
    assert calibration_ratio(y, p) == pytest.approx(1.0, abs=0.02)
    assert calibration_ratio(y, 1.1 * p) == pytest.approx(1.1 * calibration_ratio(y, p), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_aucs_match_sklearn_and_brute_force(seed: int) -> None:
    y, p = labelled_scores(seed, n=800)
    p = np.round(p, 2)  # ties
    pos, neg = p[y == 1], p[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, p) == pytest.approx(pairs / (pos.size * neg.size), rel=1e-12)
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    assert pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p), rel=1e-12)
    s = p + np.random.default_rng(seed).random(p.size) * 1e-6  # no ties: AP = mean precision at each positive
    ranks = np.argsort(-s)
    hits = y[ranks]
    precision_at_hits = (np.cumsum(hits) / np.arange(1, y.size + 1))[hits == 1]
    assert pr_auc(y, s) == pytest.approx(precision_at_hits.mean(), rel=1e-12)


def test_grouped_auc_is_the_size_weighted_mean_of_per_group_auc() -> None:
    rng = np.random.default_rng(7)
    groups = rng.integers(0, 40, 3000)
    y = (rng.random(3000) < 0.05 + 0.02 * groups).astype(int)
    p = 0.2 * y + rng.random(3000) + 0.05 * groups  # the score knows the group's rate, and a little more
    total, weight = 0.0, 0
    for g in np.unique(groups):
        yg, pg = y[groups == g], p[groups == g]
        if 0 < yg.sum() < yg.size:
            total, weight = total + skm.roc_auc_score(yg, pg) * yg.size, weight + yg.size
    assert grouped_auc(y, p, groups) == pytest.approx(total / weight, rel=1e-12)
    assert grouped_auc(y, p, groups) < roc_auc(y, p) - 0.05  # the group offset inflates the pooled AUC
    assert math.isnan(grouped_auc(np.ones(4), np.arange(4.0), np.arange(4)))


def fraud_scores(
    seed: int, n_legit: int, n_fraud: int, decimals: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (legit first) and scores: legit ~ N(0, 1), fraud ~ N(2.5, 1), rounded to make ties."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(0, 1, n_legit), rng.normal(2.5, 1, n_fraud)])
    if decimals is not None:
        scores = np.round(scores, decimals)
    return np.r_[np.zeros(n_legit, int), np.ones(n_fraud, int)], scores


@pytest.mark.parametrize("decimals", [None, 2, 1], ids=["no_ties", "ties", "many_ties"])
@pytest.mark.parametrize("n_legit", [10_000, 20_000, 5_000])
@pytest.mark.parametrize("fpr", [0.01, 0.05])
def test_recall_at_fpr_is_the_best_recall_within_the_fpr_budget(
    n_legit: int, fpr: float, decimals: int | None
) -> None:
    """When n_legit * fpr is whole it is the ROC point with the highest recall whose FPR <= fpr: without ties
    the threshold flags exactly fpr of the legit rows; with ties the tied block at the threshold would overrun
    the budget, and it is left unflagged."""
    y, s = fraud_scores(n_legit, n_legit, 300, decimals)
    false_pos, true_pos, _ = skm.roc_curve(y, s, drop_intermediate=False)
    best = true_pos[false_pos <= fpr + 1e-12].max()
    assert 0.05 < best < 0.99
    assert recall_at_fpr(y, s, fpr) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("n_legit", [1050, 3333, 777])
def test_recall_at_fpr_flags_ceil_of_n_minus_one_times_fpr_legit_rows(n_legit: int) -> None:
    """Otherwise it is the ROC point that flags ceil((n_legit - 1) * fpr) legit rows (one over budget at most)."""
    fpr = 0.01
    y, s = fraud_scores(n_legit, n_legit, 200)
    false_pos, true_pos, _ = skm.roc_curve(y, s, drop_intermediate=False)
    flagged = math.ceil((n_legit - 1) * fpr)
    assert flagged <= math.floor(n_legit * fpr) + 1
    point = np.flatnonzero(np.isclose(false_pos * n_legit, flagged))[-1]  # highest recall at that FPR
    assert recall_at_fpr(y, s, fpr) == pytest.approx(true_pos[point], abs=1e-12)
