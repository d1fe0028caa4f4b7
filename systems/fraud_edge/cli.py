"""`mlsd fraud <step>`: data, train, eval, serve, score, bench."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infra.cli import OneLineParser
from infra.config import SCALES, get_settings
from infra.system import BenchSpec

console = Console()


def _table(title: str, rows: dict[str, object]) -> None:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", justify="right")
    for k, v in rows.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)


def step_data(argv: list[str]) -> int:
    from systems.fraud_edge.data import SimConfig
    from systems.fraud_edge.train import build_data

    p = OneLineParser(prog="mlsd fraud data", description="simulate transactions and compute batch features")
    p.add_argument("--scale", choices=SCALES, default=get_settings().scale)
    p.add_argument("--seed", type=int, default=get_settings().seed)
    args = p.parse_args(argv)
    with console.status(f"simulating the {args.scale} stream and computing velocity features"):
        stats = build_data(SimConfig.for_scale(args.scale, args.seed))
    _table("fraud data", stats)
    return 0


def step_train(argv: list[str]) -> int:
    from systems.fraud_edge.train import TrainConfig, train

    p = OneLineParser(prog="mlsd fraud train", description="train, export, quantize, publish a bundle")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--no-mlflow", action="store_true", help="skip logging the run to MLflow")
    args = p.parse_args(argv)
    if not 1 <= args.epochs <= 200:
        p.error("--epochs must be between 1 and 200")
    try:
        report = train(
            TrainConfig(epochs=args.epochs, seed=get_settings().seed), log_mlflow=not args.no_mlflow
        )
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    table = Table(title=f"fraud train — bundle {report['bundle']} serves {report['chosen']}")
    for col in (
        "variant",
        "KB",
        "p50 ms",
        "p99 ms",
        "rows/s b4096",
        "PR-AUC",
        "recall@1%FPR",
        "|dp| p99/max",
    ):
        table.add_column(col, justify="right")
    for name, v in report["variants"].items():
        table.add_row(
            name, f"{v['size_kb']:.1f}", f"{v['p50_ms']:.4f}", f"{v['p99_ms']:.4f}",
            f"{v['rows_per_s_batch4096']:,.0f}", f"{v['pr_auc']:.4f}", f"{v['recall_at_1pct_fpr']:.4f}",
            f"{v['p99_abs_diff_vs_fp32']:.3f}/{v['max_abs_diff_vs_fp32']:.3f}",
        )  # fmt: skip
    lg = report["lightgbm"]
    table.add_row("lightgbm (ref)", "", "", "", "", f"{lg['pr_auc']:.4f}", f"{lg['recall_at_1pct_fpr']:.4f}")
    console.print(table)
    console.print(f"why {report['chosen']}: {report['why']}")
    _table(
        "fraud train — data and decisions",
        {
            "rows train / valid / test": " / ".join(str(v) for v in report["rows"].values()),
            "fraud rate train (labels known at cutoff)": report["fraud_rate"]["train_known"],
            "fraud rate test (eventual truth)": report["fraud_rate"]["test_true"],
            "frauds in train+valid hidden by label delay": (
                f"{report['label_delay_missed']} of {report['frauds_in_train_valid']}"
            ),
            "denormal weights zeroed (torch, onnx files)": sum(report["denormals_zeroed"].values()),
            "threshold review / decline": " / ".join(f"{v:.4f}" for v in report["thresholds"].values()),
            "valid cost at those thresholds, EUR": report["valid_cost_eur"],
            "seconds": report["seconds"],
        },
    )
    return 0


def step_eval(argv: list[str]) -> int:
    from systems.fraud_edge.evaluate import evaluate

    OneLineParser(prog="mlsd fraud eval", description="quality, cost by policy, drift").parse_args(argv)
    try:
        report = evaluate()
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    table = Table(title=f"fraud eval — test split, bundle {report['bundle']}")
    for col in ("policy", "cost EUR", "fraud stopped EUR", "decline rate", "review rate", "false declines"):
        table.add_column(col, justify="right")
    for name, r in report["policies"].items():
        table.add_row(
            name, f"{r['cost_eur']:,.0f}", f"{r['fraud_eur_stopped']:,.0f}", f"{r['decline_rate']:.4f}",
            f"{r['review_rate']:.4f}", str(r["false_declines"]),
        )  # fmt: skip
    console.print(table)
    for name, q in report["quality"].items():
        console.print(f"{name}: PR-AUC {q['pr_auc']:.4f}, recall@1%FPR {q['recall_at_1pct_fpr']:.4f}")
    console.print(
        f"cost saved vs rules only: {report['cost_saved_vs_rules_eur']:,.0f} EUR "
        f"({report['cost_saved_vs_rules_pct']:.1f}%); score PSI valid->test {report['score_psi_valid_to_test']:.3f}, "
        f"valid->control stream {report['score_psi_valid_to_control']:.3f}, "
        f"valid->attack stream {report['score_psi_valid_to_attack']:.3f}"
    )
    console.print(
        "share above valid's top-1% score: "
        + ", ".join(f"{k} {v:.4f}" for k, v in report["top1pct_rate"].items())
    )
    return 0


def step_serve(argv: list[str]) -> int:
    import uvicorn

    p = OneLineParser(prog="mlsd fraud serve", description="serve POST /score")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--store", choices=("redis", "memory"), default=None)
    args = p.parse_args(argv)
    if args.store:
        os.environ["MLSD_FRAUD_STORE"] = args.store
    uvicorn.run("systems.fraud_edge.serve:build_app", factory=True, host="127.0.0.1", port=args.port)
    return 0


def step_score(argv: list[str]) -> int:
    """Score one transaction with the Python edge scorer, no server (in-process store)."""
    from systems.fraud_edge.bundle import BundleRejected
    from systems.fraud_edge.scorer import EdgeScorer
    from systems.fraud_edge.serve import ScoreRequest
    from systems.fraud_edge.train import system_dir

    p = OneLineParser(prog="mlsd fraud score", description=step_score.__doc__)
    p.add_argument("--card", required=True)
    p.add_argument("--terminal", default="t00001")
    p.add_argument("--amount", type=float, required=True)
    p.add_argument("--currency", default="EUR")
    p.add_argument("--lat", type=float, default=48.86)
    p.add_argument("--lon", type=float, default=2.35)
    p.add_argument("--tx-id", default=f"cli{int(time.time() * 1000)}")
    args = p.parse_args(argv)
    from pydantic import ValidationError

    try:
        req = ScoreRequest(
            tx_id=args.tx_id, card_id=args.card, terminal_id=args.terminal, amount=args.amount,
            currency=args.currency, lat=args.lat, lon=args.lon,
        )  # fmt: skip
    except ValidationError as exc:
        err = exc.errors()[0]
        p.error(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}")
    scorer = EdgeScorer()
    try:
        scorer.load_live(system_dir() / "bundles")
    except (FileNotFoundError, BundleRejected) as exc:
        console.print(f"[yellow]{exc}; deciding by rules alone[/]")
    d = scorer.score(req.transaction())
    _table(f"fraud score {d.tx_id}", {k: v for k, v in d.__dict__.items() if k != "tx_id"})
    return 0


def bootstrap(console_status: bool = True) -> None:
    """data -> train -> eval, each only when its output is missing."""
    from systems.fraud_edge.train import system_dir

    out = system_dir()
    if not (out / "features.npy").exists():
        step_data([])
    if not (out / "bundles" / "LIVE").exists() or not (out / "train_report.json").exists():
        step_train([])
    if not (out / "eval_report.json").exists():
        step_eval([])


def write_bench_stream(n: int = 5000) -> Path:
    """Test-split transactions for locust to replay against /score (fresh tx_ids are added per request)."""
    import pandas as pd

    from systems.fraud_edge.data import temporal_split
    from systems.fraud_edge.train import system_dir

    out = system_dir()
    df = pd.read_parquet(out / "transactions.parquet")
    rows = df.iloc[temporal_split(df).test[:n]]
    stream = [
        {
            "tx_id": r.tx_id,
            "card_id": r.card_id,
            "terminal_id": r.terminal_id,
            "amount": r.amount_cents / 100,
            "currency": "EUR",
            "lat": r.lat_e6 / 1e6,
            "lon": r.lon_e6 / 1e6,
            "ts": int(r.ts),
        }  # fmt: skip
        for r in rows.itertuples()
    ]
    path = out / "bench_stream.json"
    path.write_text(json.dumps(stream))
    return path


def step_bench(argv: list[str]) -> int:
    from infra.bench.harness import run_bench
    from systems.fraud_edge.evaluate import markdown_tables
    from systems.fraud_edge.features.store import RedisVelocityStore, StoreUnavailable
    from systems.fraud_edge.train import system_dir

    p = OneLineParser(prog="mlsd fraud bench", description="bootstrap, then load-test POST /score")
    p.add_argument("--duration", type=int, default=60)
    p.add_argument("--rate", type=float, default=300.0)
    p.add_argument("--store", choices=("redis", "memory"), default="redis")
    p.add_argument(
        "--out", type=Path, default=None, help="report folder (default benchmarks/results/fraud/latest)"
    )
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 3600:
        p.error("--duration must be between 1 and 3600 seconds")
    if args.rate <= 0:
        p.error("--rate must be positive")
    namespace = f"bench{int(time.time())}"
    redis_store = None
    if args.store == "redis":
        try:
            redis_store = RedisVelocityStore(get_settings().redis_url, namespace)
        except StoreUnavailable as exc:
            console.print(f"[red]{exc}[/]")
            return 1
    bootstrap()
    stream = write_bench_stream()
    out = system_dir()
    train_report = json.loads((out / "train_report.json").read_text())
    eval_report = json.loads((out / "eval_report.json").read_text())
    spec = BenchSpec(
        app="systems.fraud_edge.serve:build_app",
        locustfile="benchmarks/fraud/locustfile.py",
        route="score",
        slo_p99_ms=10.0,
        target_p99_ms=5.0,
        rate=args.rate,
        users=4,
        duration_s=args.duration,
        ready_timeout_s=120,
        env={
            "MLSD_FRAUD_STORE": args.store,
            "MLSD_FRAUD_NAMESPACE": namespace,
            "MLSD_FRAUD_STREAM": str(stream),
            "MLSD_ACCESS_LOG": "0",
        },
    )
    extra = {
        "store": args.store,
        "model_variant": train_report["chosen"],
        "model_p99_ms_batch1": train_report["variants"][train_report["chosen"]]["p99_ms"],
        "model_budget_p99_ms": 0.2,
        "variants": train_report["variants"],
        "quality": eval_report["quality"],
        "policies": eval_report["policies"],
        "cost_saved_vs_rules_eur": eval_report["cost_saved_vs_rules_eur"],
    }
    try:
        code = run_bench(
            "fraud", spec, out_dir=args.out, extra=extra, extra_md=markdown_tables(train_report, eval_report)
        )
    finally:
        if redis_store is not None:
            redis_store.clear()
    model_ok = extra["model_p99_ms_batch1"] <= extra["model_budget_p99_ms"]
    console.print(
        f"model-only p99 (batch 1, 1 thread): {extra['model_p99_ms_batch1']:.4f} ms "
        f"({'meets' if model_ok else 'MISSES'} the 0.2 ms target); "
        f"cost saved vs rules only: {eval_report['cost_saved_vs_rules_eur']:,.0f} EUR"
    )
    return code


STEPS = {
    "data": step_data,
    "train": step_train,
    "eval": step_eval,
    "serve": step_serve,
    "score": step_score,
    "bench": step_bench,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STEPS:
        p = OneLineParser(prog="mlsd fraud")
        p.error(
            f"unknown step {argv[0]!r}; steps: {', '.join(STEPS)}" if argv else f"steps: {', '.join(STEPS)}"
        )
    return int(STEPS[argv[0]](argv[1:]) or 0)
