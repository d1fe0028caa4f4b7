"""The server's CPU per /recommend request, as a multiple of the empty /floor route's: the served path's cost
without a load generator on the machine (for a machine too busy for `mlsd recsys bench`, or a before/after).

    PYTHONPATH=$PWD .venv/bin/python -m mlsd.cli recsys rank --scale small      # data ... rank, if missing
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.served_cpu --scale small [--against DIR]

One uvicorn server (one worker, as the bench's) on the scale's artifacts; one client asks, one request at a time,
`--requests` /recommend (random users of the feed, k=20) and then as many /floor, `--rounds` times. The server
process's own CPU (utime + stime from /proc) over each phase, divided by its requests, is the figure; the median
round is reported with the server's per-stage p50s from /stats. `--against DIR` serves a second checkout (e.g.
`git worktree add /tmp/before <commit>`) on the same artifacts beside it, the two servers' phases interleaved so
that both see the same machine: a busy shared machine moves CPU per request by tens of percent from one minute
to the next. One request at a time is not the bench's 200 req/s, so the absolute figures differ from a bench's;
the ratio of the two routes is the comparable one (issue 21's goal: /recommend <= 4x /floor).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np

from infra.artifacts import Artifacts
from infra.bench.harness import free_port
from infra.bench.machine import cpu_seconds
from infra.config import REPO_ROOT, get_settings
from infra.console import print_rows
from systems.recsys_two_tower import layout

APP = "systems.recsys_two_tower.serve:build_app"


class Checkout:
    """A uvicorn server of the recsys app from one source tree (its own cwd, so its own code), stopped on exit."""

    def __init__(self, tree: Path, scale: str, log: Path) -> None:
        self.tree, self.url, self.log = tree, f"http://127.0.0.1:{free_port()}", log
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        self.name = commit + (" + working tree" if dirty else "")
        env = {**os.environ, "PYTHONPATH": str(tree), "MLSD_RECSYS_SCALE": scale,
               "MLSD_DATA_DIR": str(get_settings().data_dir)}  # fmt: skip
        cmd = [sys.executable, "-m", "uvicorn", APP, "--factory", "--port", self.url.rsplit(":", 1)[1],
               "--log-level", "warning", "--no-access-log", "--workers", "1"]  # fmt: skip
        self._out = log.open("w")
        self.proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        self.client = httpx.Client(base_url=self.url)

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server of {self.tree} exited: {self.log.read_text()[-2000:]}")
            try:
                if self.client.get("/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"server of {self.tree} not ready after {timeout_s:.0f} s")

    def phase(self, path: str, bodies: list[dict] | None, n: int) -> float:
        """Server CPU ms per request over n requests to `path` (POST with bodies[i], else GET)."""
        c0 = cpu_seconds(self.proc.pid)
        for i in range(n):
            r = self.client.post(path, json=bodies[i]) if bodies else self.client.get(path)
            r.raise_for_status()
        return (cpu_seconds(self.proc.pid) - c0) * 1000.0 / n

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        self._out.close()


def measure(scale: str, requests: int, rounds: int, against: Path | None = None, seed: int = 0) -> list[dict]:
    """Per served tree: {tree, recommend_cpu_ms, floor_cpu_ms, ratio, stages_p50_ms, ...} of the median round."""
    config = Artifacts("recsys", scale).require(layout.FEED_CONFIG, "data")
    n_users = json.loads(config.read_text())["n_users"]
    rng = np.random.default_rng(seed)
    logs = Path(tempfile.mkdtemp(prefix="mlsd-served-cpu-"))
    trees = [REPO_ROOT, *([against] if against else [])]
    with ExitStack() as stack:
        servers = []
        for i, tree in enumerate(trees):  # one after another: each unpacks the champion into the same folder
            servers.append(Checkout(Path(tree), scale, logs / f"server{i}.log"))
            stack.callback(servers[-1].close)
            servers[-1].wait_ready()
        for s in servers:
            s.phase("/recommend", [{"user_id": int(u), "k": 20} for u in rng.integers(0, n_users, 200)], 200)
            s.phase("/floor", None, 200)
        rec: list[list[float]] = [[] for _ in servers]
        floor: list[list[float]] = [[] for _ in servers]
        for _ in range(rounds):
            bodies = [{"user_id": int(u), "k": 20} for u in rng.integers(0, n_users, requests)]
            for i, s in enumerate(servers):  # the same users for every tree, the phases interleaved
                rec[i].append(s.phase("/recommend", bodies, requests))
                floor[i].append(s.phase("/floor", None, requests))
        stats = [s.client.get("/stats").json().get("/recommend", {}) for s in servers]
    load = f"{os.cpu_count()} CPUs, load average (1 min) at end {os.getloadavg()[0]:.2f}"
    return [{"tree": s.name, "scale": scale, "online_store": get_settings().online_store,
             "requests_per_round": requests, "rounds": rounds,
             "recommend_cpu_ms": float(np.median(rec[i])), "floor_cpu_ms": float(np.median(floor[i])),
             "ratio": float(np.median(rec[i]) / np.median(floor[i])),
             "recommend_cpu_ms_rounds": rec[i], "floor_cpu_ms_rounds": floor[i],
             "stages_p50_ms": {k: v["p50_ms"] for k, v in stats[i].items() if isinstance(v, dict) and "p50_ms" in v},
             "machine": load} for i, s in enumerate(servers)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m benchmarks.recsys.served_cpu",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--scale", default="small")
    p.add_argument("--requests", type=int, default=1000, help="requests per route per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--against", type=Path, default=None, help="a second source tree served beside, interleaved"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    rows = measure(args.scale, args.requests, args.rounds, args.against)
    print_rows(
        f"server CPU per request, {args.scale} scale, {rows[0]['online_store']} online store, one request at a "
        f"time, median of {args.rounds} rounds ({rows[0]['machine']})",
        ["tree", "/recommend CPU ms", "/floor CPU ms", "x /floor", "features p50 ms"],
        [[r["tree"], r["recommend_cpu_ms"], r["floor_cpu_ms"], r["ratio"], r["stages_p50_ms"].get("features")]
         for r in rows],
    )  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = "PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.served_cpu " + " ".join(
            argv or sys.argv[1:]
        )
        args.out.write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
