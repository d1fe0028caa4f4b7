"""Load for `mlsd fraud bench` (and `--data creditcard:<path>`): test-split rows replayed to POST /score, beside /floor.

Each request gets a fresh tx_id (so it is scored, not deduplicated as a replay). The simulator's transactions
carry card and terminal ids whose history the server's velocity store keeps, so their features are real, not
empty; the credit-card rows carry their features (V1..V28, log amount) and need no store. The bench writes
either stream to MLSD_FRAUD_STREAM.
"""

import itertools
import json

from locust import FastHttpUser, task

from infra.bench.users import FloorUser, system_wait_time
from systems.fraud_edge.config import FraudSettings

__all__ = ["FloorUser", "ScoreUser"]

_stream_path = FraudSettings().stream
if _stream_path is None:
    raise SystemExit("MLSD_FRAUD_STREAM is not set: run this load through `mlsd fraud bench`")
STREAM = json.loads(_stream_path.read_text())
_user_ids = itertools.count()


class ScoreUser(FastHttpUser):
    wait_time = system_wait_time()

    def on_start(self) -> None:
        self.user = next(_user_ids)
        self.i = self.user * 997

    @task
    def score(self) -> None:
        tx = dict(STREAM[self.i % len(STREAM)])
        tx["tx_id"] = f"{tx['tx_id']}-u{self.user}-{self.i}"
        self.i += 1
        self.client.post("/score", json=tx, name="score")
