"""The recsys server's feature read, two ways, on the same keys: Feast's `get_online_features` (FeatureRepo.online)
and the prepared read the server uses (FeatureRepo.online_reader: Feast's online store on prepared entity keys).

    PYTHONPATH=$PWD .venv/bin/python -m mlsd.cli recsys data --scale small    # the feed (or any scale's)
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.feature_read --scale small [--stores sqlite,redis]

Each store is filled by the recsys `features` step itself (build_features, MLSD_ONLINE_STORE=<store>) on a copy of
the scale's feed; Redis is the one at REDIS_URL (default 127.0.0.1:6379), and this run's keys are deleted at the end.
Then `--reads` single-user reads of random users (a tenth of them ids no one has, the cold-start path) each way,
after 50 warm-up reads, interleaved so that both see the same machine: the table gives the wall-clock p50/p99 and
the process CPU per read, and the check that both ways returned the same columns for every key. Writes
benchmarks/results/recsys/feature_read/report.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infra.artifacts import Artifacts
from infra.bench.report import write_json
from infra.config import get_settings
from infra.console import print_rows
from systems.recsys_two_tower.data import load
from systems.recsys_two_tower.features.repo import build_features, open_features
from systems.recsys_two_tower.layout import FEED

OUT = Path(__file__).resolve().parents[1] / "results" / "recsys" / "feature_read" / "report.json"
WARMUP = 50


def _timed(
    read: Callable[[int], dict[str, list[Any]]], user: int
) -> tuple[dict[str, list[Any]], float, float]:
    """(columns, wall ms, process CPU ms) of one read."""
    w0, c0 = time.perf_counter(), time.process_time()
    cols = read(user)
    return cols, (time.perf_counter() - w0) * 1000.0, (time.process_time() - c0) * 1000.0


def measure(store: str, src: Path, work: Path, scale: str, reads: int, seed: int = 0) -> list[dict[str, Any]]:
    """Fill `store` from a copy of the feed at `src`, then time both reads on the same users; one row per way.
    AssertionError when the two ways return different columns for any user."""
    os.environ["MLSD_ONLINE_STORE"] = store
    get_settings.cache_clear()
    root = work / store
    root.mkdir(parents=True)
    for name in FEED:  # the data step's own list of what it writes
        shutil.copy(src / name, root / name)
    feed = load(root)
    build_features(feed, root, scale)
    features = open_features(root, scale)
    try:
        prepared = features.repo.online_reader(features.user_serving, "user_id")
        ways: dict[str, Callable[[int], dict[str, list[Any]]]] = {
            "get_online_features": lambda u: features.repo.online(features.user_serving, [{"user_id": u}])[0],
            "prepared read": lambda u: prepared([u]),
        }
        rng = np.random.default_rng(seed)
        n = feed.config.n_users
        users = np.where(
            rng.random(WARMUP + reads) < 0.1,
            n + rng.integers(0, n, WARMUP + reads),
            rng.integers(0, n, WARMUP + reads),
        )
        wall: dict[str, list[float]] = {w: [] for w in ways}
        cpu: dict[str, list[float]] = {w: [] for w in ways}
        for i, u in enumerate(users.tolist()):
            got = {}
            for way, read in ways.items():
                got[way], w_ms, c_ms = _timed(read, u)
                if i >= WARMUP:
                    wall[way].append(w_ms)
                    cpu[way].append(c_ms)
            a, b = got.values()
            assert a == b, f"{store}: the two reads differ for user {u}: {a} != {b}"
        return [{"store": store, "read": way, "reads": reads, "p50_ms": float(np.percentile(wall[way], 50)),
                 "p99_ms": float(np.percentile(wall[way], 99)), "cpu_ms_per_read": float(np.mean(cpu[way])),
                 "same_columns": True} for way in ways]  # fmt: skip
    finally:
        if store != "sqlite":
            features.repo.store.teardown()  # this run's keys only: the machine's Redis is shared


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m benchmarks.recsys.feature_read",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--scale", default="small")
    p.add_argument("--stores", default="sqlite,redis", help="comma-separated online stores")
    p.add_argument("--reads", type=int, default=2000, help="timed single-user reads each way")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    src = Artifacts("recsys", args.scale).root
    work = Path(tempfile.mkdtemp(prefix="mlsd-feature-read-"))
    try:
        rows = [
            r for s in args.stores.split(",") for r in measure(s.strip(), src, work, args.scale, args.reads)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_rows(
        f"recsys feature read (user_stats, one user), {args.reads:,} reads each way, scale {args.scale}",
        ["store", "read", "p50 ms", "p99 ms", "CPU ms per read", "same columns"],
        [
            [r["store"], r["read"], r["p50_ms"], r["p99_ms"], r["cpu_ms_per_read"], r["same_columns"]]
            for r in rows
        ],
    )
    write_json(args.out, {
        "command": f"PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.feature_read --scale {args.scale} "
                   f"--stores {args.stores} --reads {args.reads}",
        "machine": f"{os.cpu_count()} CPUs, load average (1 min) at end {os.getloadavg()[0]:.2f}",
        "rows": rows,
    }, echo=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
