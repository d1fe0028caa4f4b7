"""Load for `mlsd bench ctr`: POST /predict with 50 candidate ads per request, beside the floor route."""

import random
import uuid

from locust import FastHttpUser, task

from infra.bench.users import FloorUser, system_wait_time

__all__ = ["FloorUser", "PredictUser"]

N_USERS, N_ADS, N_SITES, N_CANDIDATES = 6_000, 400, 30, 50


class PredictUser(FastHttpUser):
    wait_time = system_wait_time()

    @task
    def predict(self) -> None:
        body = {
            "request_id": uuid.uuid4().hex,
            "user_id": random.randrange(N_USERS),
            "site_id": random.randrange(N_SITES),
            "device": random.randrange(3),
            "timestamp": f"2026-01-19T{random.randrange(24):02d}:{random.randrange(60):02d}:00Z",
            "candidates": random.sample(range(N_ADS), N_CANDIDATES),
        }
        with self.client.post("/predict", json=body, name="predict", catch_response=True) as r:
            if r.status_code != 200 or len(r.json()["ads"]) != N_CANDIDATES:
                r.failure(f"status {r.status_code}: {r.text[:200]}")
