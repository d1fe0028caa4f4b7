"""Per-call time of RedisVelocityStore.update_and_read on one Redis: the store before issue 12 (one script, no
payload-bound key) vs now (claim + terminal + card steps in one script). Usage:
    git show 8a885ef:systems/fraud_edge/features/store.py > /tmp/old_store.py
    PYTHONPATH=$PWD .venv/bin/python benchmarks/fraud/store_rtt.py redis://127.0.0.1:6379/0 [CLUSTER_URL]
"""

import importlib.util
import statistics
import sys
import time
import uuid

from systems.fraud_edge.features.store import RedisVelocityStore
from systems.fraud_edge.features.velocity import Transaction

spec = importlib.util.spec_from_file_location("old_store", "/tmp/old_store.py")
old = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old)
url = sys.argv[1]
cluster_url = sys.argv[2] if len(sys.argv) > 2 else None  # a Redis Cluster: the split path, three calls


def run(store, n=3000):
    ts = []
    for i in range(n):
        tx = Transaction(f"x{i}", 1_000_000 + i, f"c{i % 300}", f"t{i % 40}", 1000 + i, 0, 0)
        t0 = time.perf_counter()
        store.update_and_read(tx)
        ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    return statistics.median(ts), ts[int(0.99 * len(ts))]


for name, make in (
    ("old single script", lambda: old.RedisVelocityStore(url, "rtt" + uuid.uuid4().hex[:6])),
    ("new (claim+terminal+card, one script)", lambda: RedisVelocityStore(url, "rtt" + uuid.uuid4().hex[:6])),
    *(
        [
            (
                "cluster (three calls)",
                lambda: RedisVelocityStore(cluster_url, "rtt" + uuid.uuid4().hex[:6], cluster=True),
            )
        ]
        if cluster_url
        else []
    ),
):
    s = make()
    try:
        p50, p99 = run(s)
        print(f"{name:30s} p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    finally:
        s.clear()
