"""One small world per session: a slice of the KB, indexed and with a reranker trained on its tune split by the
pipeline's own `index` and `train` steps, then loaded the way the server loads it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from infra.artifacts import Artifacts
from infra.config import get_settings
from systems.rag_search import pipeline
from systems.rag_search.answer import RagPipeline
from systems.rag_search.config import KB_DIR, IndexConfig, TrainConfig
from systems.rag_search.data import KnowledgeBase, Question, generate_kb, write_kb
from systems.rag_search.documents import Article
from systems.rag_search.index import SearchIndex
from systems.rag_search.model import MiniLM, Reranker

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
    articles: list[Article]
    questions: list[Question]
    index: SearchIndex
    encoder: MiniLM
    reranker: Reranker | None
    threshold: float
    pipeline: RagPipeline


@pytest.fixture(scope="session")
def encoder() -> MiniLM:
    return MiniLM(threads=1)


def session_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """An artifact folder for the whole session (each test gets its own MLSD_DATA_DIR; this one outlives them)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLSD_DATA_DIR", str(tmp_path_factory.mktemp("rag-world")))
        get_settings.cache_clear()
        art = Artifacts("rag", "small")
    get_settings.cache_clear()
    return art


@pytest.fixture(scope="session")
def world(encoder: MiniLM, tmp_path_factory: pytest.TempPathFactory) -> World:
    kb = generate_kb(0)
    articles = [a for a in kb.articles if a.article_id.startswith(SUBSET_PREFIXES)]
    ids = {a.article_id for a in articles}
    questions = [q for q in kb.questions if all(g.split("#")[0] in ids for g in q.gold)]
    art = session_artifacts(tmp_path_factory)
    write_kb(
        KnowledgeBase(articles, questions), art.dir(KB_DIR)
    )  # what `mlsd rag data` writes, for the slice
    pipeline.index(IndexConfig(scale="small", seed=0, encoder="torch"), art)  # the fast tests skip the export
    pipeline.train(TrainConfig(scale="small", seed=0, mlflow=False), art)
    pipe = RagPipeline.load(art, threads=1)
    return World(
        articles, questions, pipe.index, pipe.encoder, pipe.searcher.reranker, pipe.config.refuse_below, pipe
    )
