"""Load for `mlsd ctr bench --data criteo:<path>`: POST /score_rows with 50 Criteo test rows per request, beside
the floor route.

The Criteo rows carry no user or ad ids (/predict's inputs), so the bench serves the row-level route and
replays the requests it wrote to MLSD_CTR_STREAM (realdata.bench_requests: the test split, in file order).
"""

import itertools
import json

from locust import FastHttpUser, task

from infra.bench.users import FloorUser, system_wait_time
from systems.ctr.config import CtrSettings

__all__ = ["FloorUser", "ScoreRowsUser"]

_stream_path = CtrSettings().stream
if _stream_path is None:
    raise SystemExit(
        "MLSD_CTR_STREAM is not set: run this load through `mlsd ctr bench --data criteo:<path>`"
    )
REQUESTS = json.loads(_stream_path.read_text())
_user_ids = itertools.count()


class ScoreRowsUser(FastHttpUser):
    wait_time = system_wait_time()

    def on_start(self) -> None:
        self.i = next(_user_ids) * 97

    @task
    def score_rows(self) -> None:
        body = REQUESTS[self.i % len(REQUESTS)]
        self.i += 1
        with self.client.post("/score_rows", json=body, name="score_rows", catch_response=True) as r:
            if r.status_code != 200 or len(r.json()["p_click"]) != len(body["cat"]):
                r.failure(f"status {r.status_code}: {r.text[:200]}")
