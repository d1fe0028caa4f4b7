"""Load for `mlsd fraud bench --data creditcard:<path>`: test-split credit-card rows replayed against POST /score.

The rows carry their features (V1..V28, log amount): no card or terminal history, so no velocity store.
"""

import itertools
import json

from locust import FastHttpUser, task

from infra.bench.users import FloorUser, system_wait_time
from systems.fraud_edge.config import FraudSettings

__all__ = ["FloorUser", "RowUser"]

_stream_path = FraudSettings().stream
if _stream_path is None:
    raise SystemExit("MLSD_FRAUD_STREAM is not set: run this load through `mlsd fraud bench --data`")
STREAM = json.loads(_stream_path.read_text())
_user_ids = itertools.count()


class RowUser(FastHttpUser):
    wait_time = system_wait_time()

    def on_start(self) -> None:
        self.user = next(_user_ids)
        self.i = self.user * 997

    @task
    def score(self) -> None:
        self.client.post("/score", json=STREAM[self.i % len(STREAM)], name="score")
        self.i += 1
