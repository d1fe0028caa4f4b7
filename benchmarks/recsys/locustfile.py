"""Load for `mlsd recsys bench`: Zipf-distributed known users plus ~5% unknown ones, beside the floor.

With `--data movielens:<folder>` the bench writes the dataset's test users to MLSD_RECSYS_USERS_FILE and each
request asks for one of them, drawn uniformly (a real dataset's ids, no invented cold-start users).
"""

import json

import numpy as np
from locust import FastHttpUser, task

from infra.bench.users import FloorUser, system_wait_time
from systems.recsys_two_tower.config import SETTINGS

__all__ = ["FloorUser", "RecommendUser"]

N_USERS = SETTINGS().users  # MLSD_RECSYS_USERS, set by `mlsd recsys bench` to the feed's user count
UNKNOWN_SHARE = 0.05
_users_file = SETTINGS().users_file
DATASET_USERS = (
    None if _users_file is None else np.asarray(json.loads(_users_file.read_text()), dtype=np.int64)
)


class RecommendUser(FastHttpUser):
    wait_time = system_wait_time()

    def on_start(self) -> None:
        self.rng = np.random.default_rng()

    @task
    def recommend(self) -> None:
        if DATASET_USERS is not None:
            user_id = int(self.rng.choice(DATASET_USERS))
        elif self.rng.random() < UNKNOWN_SHARE:
            user_id = N_USERS + int(self.rng.integers(0, 1_000_000))  # never seen: cold start
        else:
            user_id = int(min(self.rng.zipf(1.2), N_USERS) - 1)
        self.client.post(
            "/recommend", json={"user_id": user_id, "k": 20, "exclude_seen": True}, name="recommend"
        )
