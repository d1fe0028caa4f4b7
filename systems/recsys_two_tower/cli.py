"""`mlsd recsys <step>`: data -> features -> train -> index (+ sweep) -> eval -> serve / bench.

Each step reads the previous step's artifacts from .mlsd/recsys/<scale>/ and writes its own; `bench`
runs whatever is missing first, so `make bench SYSTEM=recsys` works on a fresh clone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from infra.cli import OneLineParser
from infra.config import SCALES, get_settings
from infra.system import BenchSpec
from systems.recsys_two_tower import SYSTEM

console = Console(width=None if sys.stdout.isatty() else 120)

BENCH = BenchSpec(
    app="systems.recsys_two_tower.serve:build_app",
    locustfile="benchmarks/recsys/locustfile.py",
    route="recommend",
    slo_p99_ms=50.0,
    target_p99_ms=15.0,
    rate=200.0,
    users=4,
    duration_s=60,
    floor_rate=20.0,
)
BENCH_SCALE = "medium"


def _parser() -> OneLineParser:
    p = OneLineParser(prog="mlsd recsys", description=__doc__)
    p.add_argument("step", choices=SYSTEM.steps)
    p.add_argument(
        "--scale", choices=SCALES, default=None, help="data scale (default: MLSD_SCALE; bench: medium)"
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs")
    p.add_argument("--max-rows", type=int, default=None, help="training watches joined from Feast")
    p.add_argument("--eval-users", type=int, default=1000, help="test users in the offline evaluation")
    p.add_argument("--port", type=int, default=8000, help="serve: port")
    p.add_argument("--duration", type=int, default=None, help="bench: seconds of load")
    p.add_argument("--rate", type=float, default=None, help="bench: requests/s on /recommend")
    p.add_argument("--force", action="store_true", help="redo steps whose artifacts exist")
    return p


def _steps():  # noqa: ANN202 — lazy imports keep `mlsd list` fast
    from systems.recsys_two_tower import data, evaluate, index, train
    from systems.recsys_two_tower.features import repo as features

    return data, features, train, index, evaluate


def step_data(scale: str) -> None:
    data, *_ = _steps()
    t0 = time.perf_counter()
    with console.status(f"generating the {scale} feed"):
        feed = data.generate(data.SCALES[scale])
        data.save(feed, data.workdir(scale))
    train, test = data.temporal_split(feed.events, feed.split_ts)
    _table(f"data ({scale}) in {time.perf_counter() - t0:.1f} s", {
        "users": feed.config.n_users, "videos": feed.config.n_videos, "watch events": len(feed.events),
        "train events (past)": len(train), "test events (future)": len(test),
    })  # fmt: skip


def step_features(scale: str) -> None:
    data, features, *_ = _steps()
    feed = data.load(data.workdir(scale))
    t0 = time.perf_counter()
    with console.status("computing snapshots, feast apply + materialize"):
        counts = features.build_features(feed, data.workdir(scale), scale)
    _table(
        f"features ({get_settings().online_store} online store) in {time.perf_counter() - t0:.1f} s", counts
    )


def step_train(scale: str, epochs: int | None, max_rows: int | None) -> dict:
    data, features, train, *_ = _steps()
    wd = data.workdir(scale)
    feed = data.load(wd)
    tc = train.TrainConfig()
    if epochs:
        tc.epochs = epochs
    if max_rows:
        tc.max_rows = max_rows
    result = train.run_train(feed, features.feature_repo(wd, scale), wd, tc)
    _table(
        "train",
        {k: v for k, v in result.items() if k != "losses"}
        | {"epoch losses": " ".join(f"{x:.3f}" for x in result["losses"])},
    )
    return result


def step_index(scale: str, eval_users: int) -> dict:
    data, features, train, index, evaluate = _steps()
    wd = data.workdir(scale)
    feed = data.load(wd)
    repo = features.feature_repo(wd, scale)
    model = train.load_model(wd / "model")
    users, _, _ = evaluate.eval_users(feed, eval_users, get_settings().seed)
    queries = evaluate.user_vectors(
        model, repo, users, feed.split_ts - 1, np.load(wd / "model" / "seen_videos.npy")
    )
    nlists = (64, 256) if feed.config.n_videos < 100_000 else (1024, 2048)
    summary = index.run_index(model, feed, repo, wd, queries, nlists)
    print_sweep(summary)
    return summary


def print_sweep(summary: dict) -> None:
    table = Table(title=f"ANN sweep over {summary['n_videos']:,} videos (recall@100 vs exact; ms per query)")
    for col in ("index", "nprobe", "distances/query", "recall@100", "ms batch 1", "ms batched", ""):
        table.add_column(col, justify="right" if col not in ("index", "") else "left")
    for r in summary["sweep"]:
        table.add_row(r["index"], str(r["nprobe"] or "-"), f"{r.get('distances_per_query', 0):,}", f"{r['recall_at_100']:.3f}", f"{r['ms_per_query_batch1']:.3f}",
                      f"{r['ms_per_query_batched']:.3f}", "← chosen" if r["chosen"] else "")  # fmt: skip
    console.print(table)


def step_eval(scale: str, eval_users: int) -> dict:
    data, features, train, index, evaluate = _steps()
    wd = data.workdir(scale)
    feed = data.load(wd)
    result = evaluate.run_eval(
        train.load_model(wd / "model"), feed, features.feature_repo(wd, scale), wd, eval_users
    )
    print_eval(result)
    return result


def step_cross(scale: str) -> dict:
    from systems.recsys_two_tower import cross

    data, features, train, index, evaluate = _steps()
    wd = data.workdir(scale)
    feed = data.load(wd)
    repo = features.feature_repo(wd, scale)
    if not (wd / "training_set.npz").exists():
        raise FileNotFoundError(f"{wd / 'training_set.npz'} missing; run `mlsd recsys train --scale {scale}`")
    with console.status("cross model: train, re-rank ANN top 200, score the full catalog"):
        catalog = index.catalog_frame(feed, repo, feed.split_ts)
        result = cross.run_cross_experiment(train.load_model(wd / "model"), feed, repo, wd,
                                            train.load_training_set(wd / "training_set.npz"), catalog)  # fmt: skip
    (wd / "cross.json").write_text(json.dumps(result, indent=2))
    print_cross(result)
    return result


def print_cross(result: dict) -> None:
    table = Table(
        title=f"two-tower vs cross model over {result['catalog']:,} videos ({result['users']} users)"
    )
    for col in ("first stage", "recall@10", "ndcg@10", "recall@100", "ms / request"):
        table.add_column(col, justify="left" if col == "first stage" else "right")
    for name, row in result["table"].items():
        table.add_row(
            name,
            f"{row['recall@10']:.4f}",
            f"{row['ndcg@10']:.4f}",
            f"{row['recall@100']:.4f}",
            f"{row['ms_per_request']:.2f}",
        )
    console.print(table)


def print_eval(result: dict) -> None:
    table = Table(title=f"offline quality on the future split ({result['users']} users; new videos only)")
    cols = list(next(iter(result["table"].values())))
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for name, row in result["table"].items():
        table.add_row(name, *[f"{row[c]:.4f}" for c in cols])
    console.print(table)


def _table(title: str, values: dict) -> None:
    table = Table(title=title, show_header=False)
    for k, v in values.items():
        table.add_row(
            str(k), f"{v:,.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
        )
    console.print(table)


def _have(wd: Path, *names: str) -> bool:
    return all((wd / n).exists() for n in names)


def prepare(scale: str, args) -> None:  # noqa: ANN001
    """Run every step whose artifacts are missing (or all with --force)."""
    data, *_ = _steps()
    wd = data.workdir(scale)
    if args.force or not _have(wd, "events.parquet"):
        step_data(scale)
    if args.force or not _have(wd, "feature_repo/registry.db", "trending.npy"):
        step_features(scale)
    if args.force or not _have(wd, "model/user_tower.onnx"):
        step_train(scale, args.epochs, args.max_rows)
    if args.force or not _have(wd, "index/serving.faiss"):
        step_index(scale, args.eval_users)
    if args.force or not _have(wd, "eval.json"):
        step_eval(scale, args.eval_users)
    if args.force or not _have(wd, "cross.json"):
        step_cross(scale)


def step_bench(scale: str, args) -> int:  # noqa: ANN001
    from infra.bench.harness import run_bench

    data, *_ = _steps()
    t0 = time.perf_counter()
    prepare(scale, args)
    wd = data.workdir(scale)
    evaluation = json.loads((wd / "eval.json").read_text())
    sweep = json.loads((wd / "index" / "sweep.json").read_text())
    model_meta = json.loads((wd / "model" / "config.json").read_text())
    n_users = json.loads((wd / "config.json").read_text())["n_users"]
    spec = BenchSpec(**{**BENCH.__dict__, "env": {"MLSD_SCALE": scale, "MLSD_RECSYS_USERS": str(n_users)}})
    cross_result = json.loads((wd / "cross.json").read_text())
    extra = {"scale": scale, "offline": evaluation, "cross": cross_result, "ann": sweep["chosen"], "n_videos": sweep["n_videos"],
             "train": model_meta.get("metrics", {}), "prepare_seconds": time.perf_counter() - t0}  # fmt: skip
    rc = run_bench(
        "recsys", spec, duration_s=args.duration, rate=args.rate, extra=extra, extra_md=bench_markdown(extra)
    )
    return rc


def bench_markdown(extra: dict) -> str:
    t = extra["offline"]["table"]
    lines = [f"## Offline quality ({extra['scale']} scale: {extra['n_videos']:,} videos; {extra['offline']['users']} test users, "
             "future split, new videos only) — `mlsd recsys eval`", "",
             "| model | recall@10 | ndcg@10 | recall@100 | ndcg@100 |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, row in t.items():
        lines.append(
            f"| {name} | {row['recall@10']:.4f} | {row['ndcg@10']:.4f} | {row['recall@100']:.4f} | {row['ndcg@100']:.4f} |"
        )
    pop = t["most-popular (last 7 days)"]["recall@100"]
    tt = t["two-tower ANN (serving index)"]["recall@100"]
    ann = extra["ann"]
    lines += ["", f"Two-tower ANN recall@100 / most-popular: x{tt / pop:.2f} (target >= 3).",
              f"Serving index: {ann['index']} nprobe={ann['nprobe']}, recall@100 vs exact {ann['recall_at_100']:.3f} "
              f"(target >= 0.95), {ann['ms_per_query_batch1']:.3f} ms per query — `mlsd recsys sweep`."]  # fmt: skip
    cross = extra["cross"]
    lines += ["", f"## Two-tower vs cross model as the first stage ({cross['users']} users) — `mlsd recsys cross`", "",
              "| first stage | recall@10 | ndcg@10 | recall@100 | ms / request |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, row in cross["table"].items():
        lines.append(
            f"| {name} | {row['recall@10']:.4f} | {row['ndcg@10']:.4f} | {row['recall@100']:.4f} | {row['ms_per_request']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.step == "bench":
        scale = args.scale or BENCH_SCALE
    else:
        scale = args.scale or get_settings().scale
    os.environ["MLSD_SCALE"] = scale
    if args.step == "data":
        step_data(scale)
    elif args.step == "features":
        step_features(scale)
    elif args.step == "train":
        step_train(scale, args.epochs, args.max_rows)
    elif args.step == "index":
        step_index(scale, args.eval_users)
    elif args.step == "sweep":
        data, *_ = _steps()
        path = data.workdir(scale) / "index" / "sweep.json"
        if not path.exists():
            step_index(scale, args.eval_users)
        else:
            print_sweep(json.loads(path.read_text()))
    elif args.step == "eval":
        step_eval(scale, args.eval_users)
    elif args.step == "capacity":
        from infra.bench.harness import RESULTS_DIR
        from systems.recsys_two_tower.capacity import Assumptions, capacity, measured_cpu_ms

        a = Assumptions(cpu_ms_per_request=measured_cpu_ms(RESULTS_DIR / "recsys" / "latest" / "report.json"))
        table = Table(title="back-of-envelope: 100M users (`mlsd recsys capacity`)")
        for col in ("quantity", "value", "from"):
            table.add_column(col)
        for row in capacity(a):
            table.add_row(*row)
        console.print(table)
    elif args.step == "cross":
        step_cross(scale)
    elif args.step == "all":
        prepare(scale, args)
    elif args.step == "serve":
        import uvicorn

        prepare(scale, args)
        uvicorn.run(
            "systems.recsys_two_tower.serve:build_app", factory=True, host="127.0.0.1", port=args.port
        )
    elif args.step == "bench":
        return step_bench(scale, args)
    return 0
