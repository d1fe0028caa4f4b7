"""One small in-memory world per session: a slice of the KB, its index, a reranker trained on its tune split."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

SUBSET_PREFIXES = (
    "sync-error-e10",
    "sync-error-e11",
    "reset-your-password-",
    "plan-",
    "billing-refunds",
    "billing-free-trial",
    "integration-slack",
    "integration-jira",
    "policy-trash",
    "troubleshoot-locked-out",
    "howto-export-",
    "turn-on-two-factor-authentication-",
)


@dataclass
class World:
    articles: list
    questions: list
    index: object
    encoder: object
    reranker: object
    threshold: float
    pipeline: object


@pytest.fixture(scope="session")
def encoder():
    from systems.rag_search.model import MiniLM

    return MiniLM(threads=1)


@pytest.fixture(scope="session")
def world(encoder) -> World:
    from systems.rag_search.data import generate_kb
    from systems.rag_search.index import SearchIndex
    from systems.rag_search.pipeline import PipelineConfig, RagPipeline
    from systems.rag_search.retrieve import Searcher
    from systems.rag_search.train import train_reranker

    kb = generate_kb(0)
    articles = [a for a in kb.articles if a.article_id.startswith(SUBSET_PREFIXES)]
    ids = {a.article_id for a in articles}
    questions = [q for q in kb.questions if all(g.split("#")[0] in ids for g in q.gold)]
    index = SearchIndex(encoder.dim)
    index.add_articles(articles, encoder)
    tune = [q for q in questions if q.split == "tune"]
    reranker, threshold, _ = train_reranker(Searcher(index, encoder), tune, seed=0)
    pipeline = RagPipeline(index, encoder, reranker, PipelineConfig(refuse_below=threshold))
    return World(articles, questions, index, encoder, reranker, threshold, pipeline)
