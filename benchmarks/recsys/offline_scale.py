"""The offline pipeline's scale curve: watch events vs wall time, peak RSS and bytes on disk of the recsys `data` and
`features` steps, each run as its own process (`mlsd recsys <step> --scale <scale>`), one at a time.

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.offline_scale --scales medium large xlarge
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.offline_scale --print     # the committed table
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.offline_scale --engines medium  # plain vs Ray Data

Peak RSS is the step process's own (wait4's ru_maxrss: the process and what it waited for; the figure the step
prints as `peak RSS`); step time is what the step prints (`in N s`), process time adds Python's start and the
imports. Bytes on disk: the files the step leaves (data: the feed; features: offline/, feature_repo/, trending.npy),
removed before it runs; the features step's partitions are removed at its end. A scale's rows replace its old ones in
benchmarks/results/recsys/offline_scale/report.json and report.md; `--note` says what else ran on the machine.

`--engines <scale>` times the features step's largest stage, the user snapshots over the user partitions, two
ways, each in its own process: the step's single-process loop (features/partitioned.py) and Ray Data with one
CPU (offline_ray.user_snapshots: an actor per CPU, a partition per task), Ray's start timed apart. Written to
engines.json beside the curve.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from infra.artifacts import Artifacts
from infra.bench.report import write_json
from infra.console import markdown_table, print_rows
from systems.recsys_two_tower.features import compute, partitioned

OUT = Path(__file__).resolve().parents[1] / "results" / "recsys" / "offline_scale"
STEP_FILES = {
    "data": ("config.json", "videos.parquet", "users.parquet", "events.parquet", "user_pref.npy", "cluster_norm.npy",
             "duration_pref.npy"),
    "features": ("offline", "feature_repo", "trending.npy"),
}  # fmt: skip
COLUMNS = ("scale", "watch events", "step", "step s", "of it online s", "process s", "peak RSS GB", "disk MB",
           "s per M events")  # fmt: skip


def disk_bytes(root: Path, names: tuple[str, ...]) -> int:
    paths = [root / n for n in names]
    files = [
        f for p in paths for f in ([p] if p.is_file() else p.rglob("*") if p.is_dir() else []) if f.is_file()
    ]
    return sum(f.stat().st_size for f in files)


def run_step(step: str, scale: str, extra: list[str]) -> dict:
    """One step in its own process: its printed time, its peak RSS, its wall time."""
    cmd = [sys.executable, "-m", "mlsd.cli", "recsys", step, "--scale", scale, *extra]
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps a narrow table's title: keep `in N s` on one line
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"`{' '.join(cmd[2:])}` failed:\n{out[-3000:]}")
    step_s = re.search(r"\bin\s+([0-9.]+) s\b", out)  # rich wraps a title longer than its table: `in\n   N s`
    online_s = re.search(r"materialise s\s*│\s*([0-9.]+)", out)  # the features step's share writing online
    return {"step_s": float(step_s.group(1)) if step_s else None, "process_s": round(wall, 1),
            "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 2),
            "materialise_s": float(online_s.group(1)) if online_s else None}  # fmt: skip


def measure(scale: str, steps: list[str], extra: list[str]) -> list[dict]:
    root = Artifacts("recsys", scale).root
    rows = []
    for step in steps:
        # the step's own bytes: a SQLite online store keeps an older build's tables
        for name in STEP_FILES[step]:
            path = root / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        row = {"scale": scale, "step": step, **run_step(step, scale, extra if step == "features" else [])}
        row["events"] = pq.ParquetFile(root / "events.parquet").metadata.num_rows
        row["disk_bytes"] = disk_bytes(root, STEP_FILES[step])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def snapshots_once(scale: str, engine: str) -> None:
    """In this process: partition the scale's events, then time the user snapshots on `engine`; prints one JSON line."""
    # here: Ray takes seconds to import, and only --engines needs it
    from systems.recsys_two_tower import offline_ray

    root = Artifacts("recsys", scale).root
    work = root / "offline" / "_engines"
    shutil.rmtree(work, ignore_errors=True)
    n = partitioned.n_partitions(pq.ParquetFile(root / "events.parquet").metadata.num_rows)
    partitioned.partition_events(root / "events.parquet", work / "parts", n)
    t0, start_s = time.perf_counter(), 0.0
    if engine == "plain":
        catalog = pd.read_parquet(root / "videos.parquet", columns=["video_id", "cluster"])
        users = pd.read_parquet(root / "users.parquet", columns=["user_id", "signup_ts"])
        user_part, schema = (
            partitioned.key_partition(users["user_id"].to_numpy(), n),
            pq.read_schema(root / "events.parquet"),
        )
        writer = partitioned.OfflineWriter(work / "user_stats.parquet")
        for p in range(n):
            writer.write(compute.user_snapshots(partitioned.read_part(work / "parts", "user", p, schema), catalog,
                                                users[user_part == p]))  # fmt: skip
        writer.close()
        rows = writer.rows
    else:
        with offline_ray.ray_engine(num_cpus=1) as runtime:
            start_s = time.perf_counter() - t0
            rows = offline_ray.user_snapshots(root, work / "parts", n, work / "user_stats.parquet", runtime)
    total = time.perf_counter() - t0
    shutil.rmtree(work)
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"engine": engine, "partitions": n, "rows": rows, "work_s": round(total - start_s, 1),
                      "ray_start_s": round(start_s, 1), "driver_peak_rss_gb": round(own.ru_maxrss * 1024 / 1e9, 2),
                      "largest_child_peak_rss_gb": round(children.ru_maxrss * 1024 / 1e9, 2)}))  # fmt: skip


def compare_engines(scale: str) -> None:
    rows = []
    for engine in ("plain", "ray"):
        cmd = [sys.executable, "-m", "benchmarks.recsys.offline_scale", "--snapshots-once", scale, engine]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append({"scale": scale, **json.loads(out.strip().splitlines()[-1])})
        print(json.dumps(rows[-1]), flush=True)
    write_json(OUT / "engines.json", {"rows": rows}, echo=False)
    print_rows(f"user snapshots of {scale}, one CPU -> {OUT}/engines.json", list(rows[0]),
               [list(r.values()) for r in rows])  # fmt: skip


def table(report: dict) -> list[tuple]:
    order = {"small": 0, "medium": 1, "large": 2, "xlarge": 3}
    rows = sorted(report["rows"], key=lambda r: (order.get(r["scale"], 9), list(STEP_FILES).index(r["step"])))
    return [
        (r["scale"], f"{r['events']:,}", r["step"], r["step_s"], r.get("materialise_s") or "-", r["process_s"],
         f"{r['peak_rss_gb']:.2f}",
         f"{r['disk_bytes'] / 1e6:,.0f}", f"{r['step_s'] / (r['events'] / 1e6):.1f}" if r["step_s"] else "-")
        for r in rows
    ]  # fmt: skip


def write_report(report: dict) -> None:
    write_json(OUT / "report.json", report, echo=False)
    md = markdown_table("recsys offline steps vs scale (`python -m benchmarks.recsys.offline_scale`)", COLUMNS,
                        table(report))  # fmt: skip
    notes = "\n".join(f"- {scale}: {note}" for scale, note in sorted(report.get("notes", {}).items()))
    (OUT / "report.md").write_text(md + ("\n\nMachine while measured:\n" + notes + "\n" if notes else ""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", nargs="+", default=["medium"], help="scales to measure, one at a time")
    parser.add_argument("--steps", nargs="+", default=list(STEP_FILES), choices=list(STEP_FILES))
    parser.add_argument("--note", default="", help="what else ran on the machine (kept beside these scales)")
    parser.add_argument("--print", action="store_true", help="print the committed table and exit")
    parser.add_argument(
        "--engines", metavar="SCALE", help="time the user snapshots plain and on Ray Data, and exit"
    )
    parser.add_argument("--snapshots-once", nargs=2, metavar=("SCALE", "ENGINE"), help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.snapshots_once:
        return snapshots_once(*args.snapshots_once)
    if args.engines:
        return compare_engines(args.engines)
    path = OUT / "report.json"
    report = json.loads(path.read_text()) if path.exists() else {"rows": [], "notes": {}}
    if not args.print:
        for scale in args.scales:
            rows = measure(scale, args.steps, extra)
            done = {(r["scale"], r["step"]) for r in rows}
            report["rows"] = [r for r in report["rows"] if (r["scale"], r["step"]) not in done] + rows
            if args.note:
                report.setdefault("notes", {})[scale] = args.note
            write_report(report)
    print_rows(f"recsys offline steps vs scale -> {OUT}/report.md", COLUMNS, table(report))


if __name__ == "__main__":
    main()
