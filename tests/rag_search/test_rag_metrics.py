"""Code tests for the metrics and fusion, against values worked out by hand (the ranking metrics are
infra.metrics', which tests/infra/test_metrics.py also checks against trec_eval)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infra.metrics import ndcg_at_k, recall_at_k, reciprocal_rank_at_k
from systems.rag_search.documents import Article, Section
from systems.rag_search.evaluate import alce_citation_scores, token_f1
from systems.rag_search.generate import Passage, SupportJudge
from systems.rag_search.index import chunk_article
from systems.rag_search.retrieve import reciprocal_rank_fusion


def test_ranking_metrics_by_hand() -> None:
    ranked = ["a", "x", "b", "y"]
    gold = {"a", "b"}
    assert recall_at_k(ranked, gold, 1) == 0.5
    assert recall_at_k(ranked, gold, 5) == 1.0
    assert reciprocal_rank_at_k(["x", "b"], gold, 10) == 0.5
    assert reciprocal_rank_at_k(["x", "y"], gold, 10) == 0.0
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, gold, 10) == pytest.approx(expected)
    assert ndcg_at_k(["a", "b"], gold, 10) == pytest.approx(1.0)


def test_reciprocal_rank_fusion() -> None:
    s = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert s[1] == pytest.approx(1 / 61 + 1 / 62)
    assert s[3] == pytest.approx(1 / 63 + 1 / 61)
    assert s[2] == pytest.approx(1 / 62)
    assert sorted(s, key=lambda d: -s[d]) == [1, 3, 2]


def test_token_f1() -> None:
    assert token_f1("the plan costs 6 dollars [1]", "The plan costs 6 dollars") == 1.0
    assert token_f1("nothing in common", "plan costs") == 0.0
    assert 0 < token_f1("plan costs 7 dollars", "plan costs 6 dollars") < 1


def _passages() -> list[Passage]:
    a = Article("x", 1, "Plans", "billing", [Section("Price", "The Plus plan costs 6 dollars per month."),
                                            Section("Storage", "The Plus plan includes 20 GB of storage.")])  # fmt: skip
    return [
        Passage(i + 1, c, 1.0, np.zeros((len(c.sentences), 384), np.float32))
        for i, c in enumerate(chunk_article(a))
    ]


def test_alce_citation_precision_and_recall() -> None:
    judge = SupportJudge(encoder=None)  # verbatim support only: enough for these sentences
    ps = _passages()
    assert alce_citation_scores("The Plus plan costs 6 dollars per month [1].", ps, judge) == (1.0, 1.0, 1)
    # a wrong citation: the sentence is not supported, so recall 0 and the citation is imprecise
    assert alce_citation_scores("The Plus plan costs 6 dollars per month [2].", ps, judge) == (0.0, 0.0, 1)
    # an extra, irrelevant citation: still supported (recall 1) but only one of two citations is precise
    assert alce_citation_scores("The Plus plan costs 6 dollars per month [1][2].", ps, judge) == (0.5, 1.0, 2)
    # half the sentences carry no citation at all
    p, r, n = alce_citation_scores("The Plus plan includes 20 GB of storage [2]. It is great.", ps, judge)
    assert (p, r, n) == (1.0, 0.5, 1)
