"""Small markets for the ctr tests: a few thousand impressions a day, so each test runs in seconds."""

from collections.abc import Callable, Sequence

import pytest
import torch

from infra.artifacts import Artifacts
from infra.steps import run_cli
from systems.ctr import pipeline
from systems.ctr.config import DataConfig, TrainConfig
from systems.ctr.data import Market, MarketConfig, make_market

# a 5-day market: 3,000 impressions a day (the last 3 days are the held-out test set)
TINY = DataConfig(
    seed=1, n_users=600, n_ads=80, n_advertisers=10, n_sites=8, n_days=5, impressions_per_day=3000
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core box: a second intra-op thread only adds contention (10x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_market() -> Market:
    return make_market(MarketConfig(n_users=800, n_ads=120, n_advertisers=15, n_sites=10, n_days=4,
                                    impressions_per_day=2500, seed=3))  # fmt: skip


@pytest.fixture
def tiny_trained() -> Artifacts:
    """The tiny market through the pipeline's own data and train steps, in this test's data dir."""
    art = Artifacts("ctr", "small")
    pipeline.data(TINY, art)
    pipeline.train(TrainConfig(epochs=3, batch_size=128), art)
    return art


@pytest.fixture
def mlsd_ctr() -> Callable[[Sequence[str]], int]:
    """`mlsd ctr <argv>` in-process: what mlsd.cli.main(["ctr", ...]) runs after its environment check."""
    return lambda argv: run_cli("ctr", pipeline.STEPS, argv, pipeline.ALL_CONFIG)
