"""The fault-and-fuzz campaign: each system's app, built once per session by the system's own steps at a small
scale (as tests/<system>/conftest.py does), then served in-process (ASGI, no network) to schemathesis.

`pytest tests/campaign -m slow -s` prints one line per system at the end: requests fuzzed, 5xx seen, 4xx not in
the error shape (the figures RELIABILITY.md quotes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from infra.artifacts import Artifacts
from tests.campaign.fuzz import FUZZ, session_env


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    ran = {k: v for k, v in FUZZ.items() if v["requests"]}
    if not ran:
        return
    terminalreporter.section("fuzz campaign")
    for system, c in ran.items():
        terminalreporter.write_line(
            f"{system}: requests fuzzed={c['requests']} 2xx={c['2xx']} 4xx={c['4xx']} 5xx={c['5xx']} "
            f"4xx_bad_shape={c['4xx_bad_shape']}"
        )


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared machine: a second intra-op thread only adds contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- worlds
@pytest.fixture(scope="session")
def rag_art(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """A slice of the RAG knowledge base through the pipeline's own index and train steps."""
    # imported here: loading MiniLM and the rag stack costs seconds a session without rag tests should not pay
    from systems.rag_search import pipeline
    from systems.rag_search.config import KB_DIR, IndexConfig, TrainConfig
    from systems.rag_search.data import KnowledgeBase, generate_kb, write_kb

    prefixes = ("sync-error-e10", "reset-your-password-", "plan-", "billing-refunds", "policy-trash")
    with session_env(tmp_path_factory.mktemp("campaign-rag")):
        art = Artifacts("rag", "small")
        kb = generate_kb(0)
        articles = [a for a in kb.articles if a.article_id.startswith(prefixes)]
        ids = {a.article_id for a in articles}
        questions = [q for q in kb.questions if all(g.split("#")[0] in ids for g in q.gold)]
        write_kb(KnowledgeBase(articles, questions), art.dir(KB_DIR))
        pipeline.index(IndexConfig(scale="small", seed=0, encoder="torch"), art)  # no ONNX export here
        pipeline.train(TrainConfig(scale="small", seed=0, mlflow=False), art)
    return art


@pytest.fixture(scope="session")
def ctr_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Artifacts]:
    from systems.ctr import pipeline  # imported here: see rag_art
    from systems.ctr.config import DataConfig, TrainConfig

    data_dir = tmp_path_factory.mktemp("campaign-ctr")
    with session_env(data_dir, MLSD_ONLINE_STORE=None, MLFLOW_TRACKING_URI=None):
        art = Artifacts("ctr", "small")
        tiny = DataConfig(seed=1, n_users=300, n_ads=40, n_advertisers=6, n_sites=5, n_days=4, impressions_per_day=1500)  # fmt: skip
        pipeline.data(tiny, art)
        pipeline.train(TrainConfig(epochs=1, batch_size=256), art)
    return data_dir, art


@pytest.fixture(scope="session")
def fraud_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Artifacts]:
    from systems.fraud_edge import pipeline, train  # imported here: see rag_art
    from systems.fraud_edge.config import DataConfig, TrainConfig
    from systems.fraud_edge.data import SimConfig

    data_dir = tmp_path_factory.mktemp("campaign-fraud")
    tiny = SimConfig.tiny()
    with session_env(data_dir), pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            train, "MODEL_BUDGET_P99_MS", float("inf")
        )  # as tests/fraud_edge/conftest.py, for the same reason
        art = Artifacts("fraud", "small")
        pipeline.data(DataConfig(scale="small", seed=tiny.seed, cards=tiny.n_cards, terminals=tiny.n_terminals, days=tiny.days), art)  # fmt: skip
        pipeline.train_step(TrainConfig(scale="small", seed=0, epochs=5, lgbm_rounds=30, mlflow=False), art)
    return data_dir, art


@pytest.fixture(scope="session")
def recsys_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from systems.recsys_two_tower import pipeline  # imported here: see rag_art
    from systems.recsys_two_tower.config import (
        DataConfig,
        FeaturesConfig,
        IndexConfig,
        RankConfig,
        TrainConfig,
    )

    small = {"scale": "small", "seed": 0}
    data_dir = tmp_path_factory.mktemp("campaign-recsys")
    with session_env(data_dir, MLSD_ONLINE_STORE=None, MLFLOW_TRACKING_URI=None):
        art = Artifacts("recsys", "small")
        pipeline.data(DataConfig(**small), art)
        pipeline.features(FeaturesConfig(**small), art)
        pipeline.train(TrainConfig(**small, epochs=1, batch_size=512, user_buckets=1 << 12, video_buckets=1 << 13, creator_buckets=1 << 10), art)  # fmt: skip
        pipeline.index(IndexConfig(**small, eval_users=200, nlist=(64,)), art)
        pipeline.rank(
            RankConfig(**small, rank_users=500, rank_epochs=50), art
        )  # the server loads the ranker too
    return data_dir
