"""`mlsd ctr <step>`: data, train, eval, serve, experiment, monitor, skew, bench."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infra.cli import OneLineParser
from infra.config import REPO_ROOT
from infra.features import OnlineStoreUnavailable
from infra.system import BenchSpec

console = Console()
RESULTS = REPO_ROOT / "benchmarks" / "results" / "ctr"  # small reports DESIGN.md quotes (committed)

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
    experiments = run_experiments(None, requests_per_day=6000, days=10, promote=True)
    extra["experiments"] = experiments
    lines += [
        "",
        "## Simulated online A/B (`mlsd ctr experiment`; per-user Welch + CUPED, mSPRT read daily)",
        "",
        "| scenario | offline AUC control | offline AUC treatment | online lift [95% CI] | true lift | mSPRT p | diagnostic |",
        "|---|---:|---:|---:|---:|---:|---|",
        *[
            f"| {r['scenario']} | {r['auc_control']:.4f} | {r['auc_treatment']:.4f} | {r['ab']['lift']:+.2%} "
            f"[{r['ab']['ci'][0]:+.2%}, {r['ab']['ci'][1]:+.2%}] | {r['ab']['true_lift']:+.2%} | "
            f"{min(r['ab']['sequential_p']):.3g} | {r['diagnostic'] or '-'} |"
            for r in experiments
        ],
    ]
    os.environ["MLSD_CTR_ALIAS"] = "champion"
    code = run_bench("ctr", BENCH, out_dir=args.out, duration_s=args.duration, rate=args.rate,
                     extra=extra, extra_md="\n".join(lines))  # fmt: skip
    return code if quality_ok else max(code, 1)


def _scorers() -> tuple:
    """((deepfm scorer, version), (lr scorer, version)): the registered versions `train` logged."""
    from infra.registry import Registry
    from systems.ctr.experiment import onnx_scorer
    from systems.ctr.train import MODEL_NAME, system_dir

    metrics = ensure_trained()
    registry = Registry()
    out = []
    for kind in ("deepfm", "lr"):
        version = metrics[kind]["version"]
        run_id = registry.client.get_model_version(MODEL_NAME, version).run_id
        folder = registry._mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="model", dst_path=str(system_dir() / "registry" / kind),
            tracking_uri=registry.tracking_uri,
        )  # fmt: skip
        out.append((onnx_scorer(Path(folder) / "model.onnx"), version))
    return tuple(out)


def run_experiments(names: list[str] | None, requests_per_day: int, days: int, promote: bool) -> list[dict]:
    from systems.ctr.experiment import run_scenarios
    from systems.ctr.train import load_market, system_dir

    (deepfm, deepfm_version), (lr, _) = _scorers()
    with console.status("simulating A/B tests against the known click model"):
        results = run_scenarios(
            load_market(), deepfm, lr, names, requests_per_day=requests_per_day, days=days
        )
    (system_dir() / "experiments.json").write_text(json.dumps(results, indent=2, default=float))
    rows = []
    for r in results:
        ab = r["ab"]
        rows.append([r["scenario"], f"{r['auc_control']:.4f}", f"{r['auc_treatment']:.4f}",
                     f"{ab['lift']:+.2%} [{ab['ci'][0]:+.2%}, {ab['ci'][1]:+.2%}]", f"{ab['true_lift']:+.2%}",
                     f"{min(ab['sequential_p']):.3g}", f"{ab['srm_p']:.2f}", f"{ab['variance_reduction']:.0%}"])  # fmt: skip
    _table("ctr experiment (per-user A/B, CUPED; lift of treatment over control)",
           ["scenario", "AUC ctl", "AUC trt", "online lift [95% CI]", "true lift", "mSPRT p", "SRM p",
            "CUPED var cut"], rows)  # fmt: skip
    for r in results:
        if r["diagnostic"]:
            mark = "[green]found[/]" if r["flagged"] else "[red]missed[/]"
            console.print(f"  {r['scenario']}: {mark} — {r['diagnostic']}")
    main_ab = next((r for r in results if r["scenario"] == "deepfm-vs-lr"), None)
    if promote and main_ab is not None:
        ab = main_ab["ab"]
        if min(ab["sequential_p"]) < 0.05 and ab["ci"][0] > 0 and ab["srm_p"] >= 0.001:
            from infra.registry import CHAMPION, Registry
            from systems.ctr.train import MODEL_NAME

            Registry().set_alias(MODEL_NAME, CHAMPION, deepfm_version)
            console.print(
                f"challenger won (lift {ab['lift']:+.2%}): {MODEL_NAME} v{deepfm_version} is now champion"
            )
        else:
            console.print("challenger did not win: champion unchanged")
    return results


def step_experiment(argv: list[str]) -> int:
    from systems.ctr.experiment import SCENARIO_NAMES

    p = OneLineParser(
        prog="mlsd ctr experiment", description="simulated online A/B tests and their diagnostics"
    )
    p.add_argument("--scenario", default="all", choices=["all", *SCENARIO_NAMES])
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--requests-per-day", type=int, default=6000)
    p.add_argument(
        "--promote", action="store_true", help="make the challenger champion if it wins deepfm-vs-lr"
    )
    args = p.parse_args(argv)
    if not 2 <= args.days <= 60:
        p.error("--days must be between 2 and 60")
    if not 100 <= args.requests_per_day <= 200_000:
        p.error("--requests-per-day must be between 100 and 200000")
    ensure_trained()
    names = None if args.scenario == "all" else [args.scenario]
    run_experiments(names, args.requests_per_day, args.days, args.promote)
    return 0


def step_monitor(argv: list[str]) -> int:
    p = OneLineParser(
        prog="mlsd ctr monitor", description="drift signals vs real degradation; windowed HTML report"
    )
    p.add_argument("--rows", type=int, default=30_000, help="impressions per window")
    p.add_argument("--out", type=Path, default=RESULTS / "monitoring", help="report folder")
    args = p.parse_args(argv)
    if not 1000 <= args.rows <= 1_000_000:
        p.error("--rows must be between 1000 and 1000000")
    ensure_trained()
    from systems.ctr import monitor
    from systems.ctr.train import load_market

    (deepfm, _), _ = _scorers()
    market = load_market()
    rows = monitor.shift_table(market, deepfm, n=args.rows)
    _table("ctr monitor: injected shifts (harm = gap to Bayes grew)",
           ["shift", "drifted features", "pred PSI", "CBPE AUC drop", "AUC drop", "AUC gap rise", "regret rise",
            "calibration", "harmed", "alerts"],
           [[r["shift"], ",".join(r["features_drifted"]) or "-", r["prediction_psi"], r["cbpe_auc_drop"], r["auc_drop"],
             r["auc_gap_rise"], r["regret_rise"], r["calibration"], r["harmed"], ",".join(r["alerts"]) or "-"]
            for r in rows])  # fmt: skip
    card = monitor.signal_scorecard(rows)
    _table("which signals track real degradation", list(card.columns), card.values.tolist())
    out = args.out
    json_path, html_path, _ = monitor.windowed_report(market, deepfm, out, n=min(args.rows, 20_000))
    (out / "shifts.json").write_text(json.dumps(rows, indent=2, default=float))
    console.print(f"windowed report: {html_path} and {json_path}")
    return 0


def step_skew(argv: list[str]) -> int:
    p = OneLineParser(
        prog="mlsd ctr skew", description="train/serving skew: serving log joined to training rows"
    )
    p.add_argument(
        "--case", default="all", choices=["all", "clean", "missing-default", "timezone", "leaky-join"]
    )
    p.add_argument("--rows", type=int, default=3000, help="logged impressions to replay")
    args = p.parse_args(argv)
    if not 100 <= args.rows <= 100_000:
        p.error("--rows must be between 100 and 100000")
    ensure_trained()
    import pandas as pd

    from systems.ctr import skew
    from systems.ctr.data import EPOCH, activity_snapshots
    from systems.ctr.train import load_market, load_rows, system_dir

    market = load_market()
    rows = load_rows()
    last_day = rows[rows["event_timestamp"] >= EPOCH + pd.Timedelta(days=market.config.n_days - 1)]
    sample = last_day.sample(min(args.rows, len(last_day)), random_state=0)
    cases = list(skew.CASES) if args.case == "all" else [args.case]
    snapshots = activity_snapshots(market)
    reports = []
    for case in cases:
        with console.status(f"replaying {len(sample)} requests through the serving path: {case}"):
            reports.append(
                skew.run_case(case, sample, snapshots, skew.ad_table(market.ads), system_dir() / "skew")
            )
    report = pd.concat(reports, ignore_index=True)
    (system_dir() / "skew.json").write_text(report.to_json(orient="records", indent=2))
    shown = report[(report["mismatch_rate"] > 0) | (report["feature"] == "user_activity")]
    _table("ctr skew: serving log joined to training rows by (request_id, ad_id)",
           ["case", "feature", "joined rows", "mismatch rate", "PSI", "JS"],
           [[r.case, r.feature, r.joined_rows, r.mismatch_rate, r.psi, r.jensen_shannon] for r in shown.itertuples()])  # fmt: skip
    return 0


def step_eval(argv: list[str]) -> int:
    p = OneLineParser(
        prog="mlsd ctr eval", description="LR and DeepFM over seeds: mean ± std; reliability plot"
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="folder for eval.json and reliability.png")
    args = p.parse_args(argv)
    if not 1 <= args.seeds <= 10:
        p.error("--seeds must be between 1 and 10")
    ensure_trained()
    from systems.ctr.evaluate import over_seeds

    out = args.out or RESULTS / "eval"
    table = over_seeds(args.seeds, out)
    _table(f"ctr eval: held-out last 3 days, mean ± std over {args.seeds} seeds",
           ["model", "AUC", "gap to Bayes", "log loss", "NE", "calibration", "calibration w/o recal."], table)  # fmt: skip
    console.print(f"written: {out / 'eval.json'}, {out / 'reliability.png'}")
    return 0


STEPS = {
    "data": step_data,
    "train": step_train,
    "eval": step_eval,
    "serve": step_serve,
    "experiment": step_experiment,
    "monitor": step_monitor,
    "skew": step_skew,
    "bench": step_bench,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        console.print(__doc__)
        return 0
    step = STEPS.get(argv[0])
    if step is None:
        sys.stderr.write(f"mlsd ctr: unknown step '{argv[0]}'; steps: {', '.join(STEPS)}\n")
        return 2
    try:
        return step(argv[1:])
    except (FileNotFoundError, LookupError, OnlineStoreUnavailable) as exc:
        sys.stderr.write(f"mlsd ctr {argv[0]}: {exc}\n")
        return 1
