"""Bytes per user of the recsys online store (user_stats: 23 scalars + 20 history ids) in single Redis and in a
Redis Cluster, measured with MEMORY USAGE over a sample of users' keys; and the online read latency of one user.

    PYTHONPATH=$PWD .venv/bin/python -m mlsd.cli recsys data --scale medium   # the feed (or any scale's)
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.online_store --scale medium

Each store gets its own throwaway server (a redis-server on a free port; a three-master cluster from
infra.redis_cluster), filled by the recsys `features` step itself (build_features, MLSD_ONLINE_STORE=<store>),
and stopped at the end. Writes benchmarks/results/recsys/online_store/report.json, which `capacity` reads for
its online-store memory line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from infra import redis_cluster
from infra.artifacts import Artifacts
from infra.bench.report import write_json
from infra.config import get_settings
from systems.recsys_two_tower.data import load
from systems.recsys_two_tower.features.repo import build_features, open_features
from systems.recsys_two_tower.layout import FEED

OUT = Path(__file__).resolve().parents[1] / "results" / "recsys" / "online_store" / "report.json"
READS = 500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_redis(root: Path) -> tuple[str, subprocess.Popen]:
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            if redis.Redis.from_url(url, socket_connect_timeout=0.2).ping():
                return url, proc
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"redis-server on port {port} did not start")


def measure(store: str, url: str, src: Path, work: Path, scale: str, sample: int) -> dict:
    """Fill `store` with the features step on a copy of the feed, then bytes per user and read latency."""
    os.environ["MLSD_ONLINE_STORE"] = store
    os.environ["REDIS_URL" if store == "redis" else "MLSD_REDIS_CLUSTER_URL"] = url
    get_settings.cache_clear()
    root = work / store
    root.mkdir(parents=True)
    for name in FEED:  # the data step's own list of what it writes: a file it gains is copied too
        shutil.copy(src / name, root / name)
    feed = load(root)
    t0 = time.perf_counter()
    build_features(feed, root, scale)
    fill_s = time.perf_counter() - t0
    features = open_features(root, scale)
    per_user = features.repo.online_bytes_per_entity(sample=sample)
    client = features.repo.redis_client()
    keys = sum(1 for _ in client.scan_iter(match=f"*{features.repo.project}", count=1000))
    client.close()
    rng = np.random.default_rng(0)
    ms = [features.repo.online(features.user_serving, [{"user_id": int(u)}])[1]
          for u in rng.integers(0, feed.config.n_users, READS + 50)][50:]  # fmt: skip
    return {"store": store, "users": feed.config.n_users, "keys": keys, "sample": min(sample, keys),
            "bytes_per_user": per_user, "fill_seconds": fill_s,
            "read_p50_ms": float(np.percentile(ms, 50)), "read_p99_ms": float(np.percentile(ms, 99))}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--scale", default="medium")
    p.add_argument("--sample", type=int, default=1000, help="keys MEMORY USAGE is averaged over")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    src = Artifacts("recsys", args.scale).root
    work = Path(tempfile.mkdtemp(prefix="mlsd-online-store-"))
    single_url, proc = _single_redis(work)
    spec = redis_cluster.ClusterSpec(
        port_base=redis_cluster.free_port_base(), appendonly=False, root=work / "cluster"
    )
    rows = []
    try:
        redis_cluster.start(spec)
        rows.append(measure("redis", single_url, src, work, args.scale, args.sample))
        print(rows[-1], flush=True)
        rows.append(measure("redis_cluster", spec.url, src, work, args.scale, args.sample))
        print(rows[-1], flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        redis_cluster.stop(spec, remove_data=True)
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "command": f"PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.online_store --scale {args.scale}",
        "scale": args.scale,
        "view": "user_stats (watches_7d, watches_30d, mean_completion_30d, 16 topic shares, 20 history ids)",
        "what": "MEMORY USAGE <key> SAMPLES 0, mean over a sample of Feast's per-user hash keys; excludes "
        "allocator fragmentation and replication/AOF buffers (add headroom)",
        "redis_server": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "read": f"{READS} single-user online reads through Feast (FeatureRepo.online), after 50 warm-up reads",
        "load_average_1m_at_end": os.getloadavg()[0],
        "bytes_per_user": rows[-1]["bytes_per_user"],  # the cluster's figure: what capacity plans with
        "rows": rows,
    }
    write_json(args.out, report)


if __name__ == "__main__":
    main()
