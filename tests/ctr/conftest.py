"""Small markets for the ctr tests: a few thousand impressions a day, so each test runs in seconds."""

import pytest
import torch

from systems.ctr.data import Market, MarketConfig, make_market


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
