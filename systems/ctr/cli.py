"""`mlsd ctr <step>`: data, train, eval, serve, experiment, monitor, skew, bench."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infra.cli import OneLineParser
from infra.system import BenchSpec

console = Console()

BENCH = BenchSpec(
    app="systems.ctr.serve:build_app",
    locustfile="benchmarks/ctr/locustfile.py",
    route="predict",
    slo_p99_ms=30.0,
    target_p99_ms=15.0,
    rate=40.0,
    users=4,
    duration_s=60,
    ready_timeout_s=180,
)


def _table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == columns[0] else "right")
    for row in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


def step_data(argv: list[str]) -> int:
    p = OneLineParser(
        prog="mlsd ctr data", description="simulate the impression log and fill the feature store"
    )
    p.parse_args(argv)
    from systems.ctr.train import run_data

    with console.status("simulating impressions, filling Feast, point-in-time join"):
        info = run_data()
    _table("ctr data", ["impressions", "CTR", "days"], [[info["impressions"], info["ctr"], info["days"]]])
    return 0


def _quality_rows(results: dict) -> list[list[object]]:
    bayes = results["bayes"]
    rows = []
    for name in ("bayes", "lr", "deepfm"):
        if name in results:
            r = results[name]
            rows.append([name, r["auc"], bayes["auc"] - r["auc"], r["log_loss"], r["ne"], r["calibration"]])
    return rows


QUALITY_COLUMNS = ["model", "AUC", "gap to Bayes", "log loss", "NE", "calibration"]


def step_train(argv: list[str]) -> int:
    p = OneLineParser(
        prog="mlsd ctr train", description="train LR and DeepFM, export ONNX, register in MLflow"
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs per model (default 3)")
    args = p.parse_args(argv)
    if args.epochs is not None and not 1 <= args.epochs <= 50:
        p.error("--epochs must be between 1 and 50")
    from systems.ctr.train import run_train

    results = run_train(epochs=args.epochs)
    _table("ctr train (held-out last 3 days)", QUALITY_COLUMNS, _quality_rows(results))
    return 0


def step_serve(argv: list[str]) -> int:
    p = OneLineParser(prog="mlsd ctr serve", description="serve POST /predict with uvicorn")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--alias", default="champion", choices=["champion", "challenger"])
    args = p.parse_args(argv)
    import uvicorn

    os.environ["MLSD_CTR_ALIAS"] = args.alias
    uvicorn.run("systems.ctr.serve:build_app", factory=True, host="127.0.0.1", port=args.port)
    return 0


def ensure_trained() -> dict:
    """Run data and train when their artifacts are missing; return the training metrics."""
    from systems.ctr.train import run_train, system_dir

    out = system_dir()
    if not (out / "rows.parquet").exists():
        step_data([])
    if not (out / "train_metrics.json").exists():
        run_train()
    return json.loads((out / "train_metrics.json").read_text())


def step_bench(argv: list[str]) -> int:
    p = OneLineParser(
        prog="mlsd ctr bench", description="train if needed, A/B, serve the champion, load-test"
    )
    p.add_argument("--duration", type=int, default=BENCH.duration_s)
    p.add_argument("--rate", type=float, default=BENCH.rate)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 3600:
        p.error("--duration must be between 1 and 3600 seconds")
    if args.rate <= 0:
        p.error("--rate must be positive")
    from infra.bench.harness import run_bench

    results = ensure_trained()
    _table("offline quality (held-out last 3 days)", QUALITY_COLUMNS, _quality_rows(results))
    extra: dict = {"offline": results}
    gap = results["bayes"]["auc"] - results["deepfm"]["auc"]
    calib = results["deepfm"]["calibration"]
    quality_ok = gap <= 0.01 and abs(calib - 1) <= 0.02
    lines = [
        "## Offline quality (held-out last 3 days; `mlsd ctr train`)",
        "",
        "| model | AUC | gap to Bayes | log loss | NE | calibration |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.4f} | {r[5]:.3f} |"
            for r in _quality_rows(results)
        ],
        "",
        f"Targets: DeepFM AUC within 0.01 of Bayes (gap {gap:.4f}), calibration within 2% ({calib:.3f}): "
        f"**{'met' if quality_ok else 'MISSED'}**",
    ]
    code = run_bench("ctr", BENCH, out_dir=args.out, duration_s=args.duration, rate=args.rate,
                     extra=extra, extra_md="\n".join(lines))  # fmt: skip
    return code if quality_ok else max(code, 1)


STEPS = {
    "data": step_data,
    "train": step_train,
    "serve": step_serve,
    "bench": step_bench,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        console.print(__doc__)
        return 0
    step = STEPS.get(argv[0])
    if step is None:
        console.print(f"mlsd ctr: unknown step '{argv[0]}'; steps: {', '.join(STEPS)}", style="red")
        return 2
    try:
        return step(argv[1:])
    except (FileNotFoundError, LookupError) as exc:
        console.print(f"mlsd ctr {argv[0]}: {exc}", style="red")
        return 1
