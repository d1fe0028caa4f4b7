"""Load for `mlsd bench ctr`: POST /predict with 50 candidate ads per request, beside the floor route.

Users, ads and sites are drawn from the market the server loaded: the bench's MLSD_SCALE names its artifact
folder (the settings, not a copy of the sizes).
"""

import random
import uuid

import pandas as pd
from locust import FastHttpUser, task

from infra.artifacts import Artifacts
from infra.bench.users import FloorUser, system_wait_time
from infra.config import get_settings
from systems.ctr.data import EPOCH, load_market

__all__ = ["FloorUser", "PredictUser"]

MARKET = load_market(Artifacts("ctr", get_settings().scale)).config
DAY = (EPOCH + pd.Timedelta(days=MARKET.n_days)).strftime("%Y-%m-%d")  # the day after the log: serving time
N_CANDIDATES = min(50, MARKET.n_ads)


class PredictUser(FastHttpUser):
    wait_time = system_wait_time()

    @task
    def predict(self) -> None:
        body = {
            "request_id": uuid.uuid4().hex,
            "user_id": random.randrange(MARKET.n_users),
            "site_id": random.randrange(MARKET.n_sites),
            "device": random.randrange(3),
            "timestamp": f"{DAY}T{random.randrange(24):02d}:{random.randrange(60):02d}:00Z",
            "candidates": random.sample(range(MARKET.n_ads), N_CANDIDATES),
        }
        with self.client.post("/predict", json=body, name="predict", catch_response=True) as r:
            if r.status_code != 200 or len(r.json()["ads"]) != N_CANDIDATES:
                r.failure(f"status {r.status_code}: {r.text[:200]}")
