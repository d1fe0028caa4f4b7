"""Small markets for the ctr tests: a few thousand impressions a day, so each test runs in seconds."""

import pytest

from systems.ctr.data import Market, MarketConfig, make_market


@pytest.fixture(scope="module")
def tiny_market() -> Market:
    return make_market(MarketConfig(n_users=800, n_ads=120, n_advertisers=15, n_sites=10, n_days=4,
                                    impressions_per_day=2500, seed=3))  # fmt: skip
