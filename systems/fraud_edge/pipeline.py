"""The main path, top to bottom: simulate → velocity features → train and sign a bundle → evaluate → serve → bench.

Each step is a few lines calling its stage module and printing a short table; STEPS at the bottom is what
`mlsd fraud <step>` runs (`mlsd fraud all` = data, train, eval). Artifacts, in `<MLSD_DATA_DIR>/fraud/<scale>/`:

    transactions.parquet, features.npy                      data
    model_*.onnx, lgbm_test_scores.npy, train_report.json,  train
    bundles/v0001/, bundles/LIVE
    eval_report.json                                        eval
    bench_stream.json                                       bench
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import pandas as pd
from pydantic import ValidationError

from infra.artifacts import Artifacts
from infra.bench.flags import bench_kwargs
from infra.bench.harness import RESULTS_DIR, run_bench
from infra.config import get_settings
from infra.console import console, print_rows, print_values
from infra.serving import run_server
from infra.steps import Step
from infra.system import BenchSpec
from systems.fraud_edge import realdata
from systems.fraud_edge.bundle import BundleRejected
from systems.fraud_edge.config import (
    AllConfig,
    BenchConfig,
    DataConfig,
    EvalConfig,
    ScoreConfig,
    ServeConfig,
    TrainConfig,
)
from systems.fraud_edge.data import (
    FEATURES,
    TRANSACTIONS,
    SimConfig,
    save_data,
    simulate_transactions,
    temporal_split,
)
from systems.fraud_edge.evaluate import EVAL_REPORT, evaluate, markdown_tables
from systems.fraud_edge.features.store import RedisVelocityStore
from systems.fraud_edge.features.velocity import batch_raw_aggregates, model_features
from systems.fraud_edge.scorer import EdgeScorer
from systems.fraud_edge.serve import ScoreRequest, build_app, score_requests
from systems.fraud_edge.train import LGBM_TEST_SCORES, MODEL_BUDGET_P99_MS, TRAIN_REPORT, train

LIVE = "bundles/LIVE"  # the bundle version the scorer serves (bundle.py)
BENCH_STREAM = "bench_stream.json"
BENCH_STREAM_ROWS = 5000


def data(cfg: DataConfig, art: Artifacts) -> None:
    """Simulate the transaction stream (known truth, label delay) and compute its batch velocity features."""
    if cfg.data:  # --data creditcard:<path>: the public CSV instead (realdata.py)
        return realdata.data(cfg, art)
    sim = SimConfig.for_scale(cfg.scale, cfg.seed)
    sim = dataclasses.replace(
        sim,
        n_cards=cfg.cards or sim.n_cards,
        n_terminals=cfg.terminals or sim.n_terminals,
        days=cfg.days or sim.days,
    )
    t0 = time.perf_counter()
    with console.status(f"simulating the {cfg.scale} stream and computing velocity features"):
        stream = simulate_transactions(sim)  # data.py: one row per transaction, event-time order
        x = model_features(batch_raw_aggregates(stream))  # features/velocity.py, the batch path: (N, D)
        save_data(art, stream, x)
    print_values(
        f"mlsd fraud data ({cfg.scale})",
        {
            "transactions": len(stream),
            "cards": sim.n_cards,
            "terminals": sim.n_terminals,
            "days": sim.days,
            "fraud_rate": float(stream["is_fraud"].mean()),
            "seconds": time.perf_counter() - t0,
        },
    )


def train_step(cfg: TrainConfig, art: Artifacts) -> None:
    """LightGBM (reference) + MLP → ONNX fp32 / int8 dynamic / int8 static → pick → thresholds → signed bundle."""
    if cfg.data:
        realdata.train(cfg, art)
        return
    report = train(cfg, art)
    columns = ("variant", "KB", "p50 ms", "p99 ms", "rows/s b4096", "PR-AUC", "recall@1%FPR", "|dp| p99", "|dp| max")  # fmt: skip
    rows = [
        (name, f"{v['size_kb']:.1f}", v["p50_ms"], v["p99_ms"], round(v["rows_per_s_batch4096"]), v["pr_auc"],
         v["recall_at_1pct_fpr"], v["p99_abs_diff_vs_fp32"], v["max_abs_diff_vs_fp32"])
        for name, v in report["variants"].items()
    ]  # fmt: skip
    lg = report["lightgbm"]
    rows.append(("lightgbm (ref)", "", "", "", "", lg["pr_auc"], lg["recall_at_1pct_fpr"], "", ""))
    print_rows(f"mlsd fraud train — bundle {report['bundle']} serves {report['chosen']}", columns, rows)
    console.print(f"why {report['chosen']}: {report['why']}")
    print_values(
        "mlsd fraud train — data and decisions",
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


def eval_step(cfg: EvalConfig, art: Artifacts) -> None:
    """Quality, cost by policy and drift monitors on the test split (eventual labels), with the LIVE bundle."""
    if cfg.data:
        realdata.evaluate(cfg, art)
        return
    report = evaluate(art)
    columns = ("policy", "cost EUR", "fraud stopped EUR", "decline rate", "review rate", "false declines")
    rows = [
        (
            name,
            round(r["cost_eur"]),
            round(r["fraud_eur_stopped"]),
            r["decline_rate"],
            r["review_rate"],
            r["false_declines"],
        )
        for name, r in report["policies"].items()
    ]
    print_rows(f"mlsd fraud eval — test split, bundle {report['bundle']}", columns, rows)
    quality = [(name, q["pr_auc"], q["recall_at_1pct_fpr"]) for name, q in report["quality"].items()]
    print_rows("quality (test split)", ("model", "PR-AUC", "recall@1%FPR"), quality)
    print_values(
        "cost and monitors",
        {
            "cost saved vs rules only, EUR": round(report["cost_saved_vs_rules_eur"]),
            "cost saved vs rules only, %": report["cost_saved_vs_rules_pct"],
            "score PSI valid → test": report["score_psi_valid_to_test"],
            "score PSI valid → control stream": report["score_psi_valid_to_control"],
            "score PSI valid → attack stream": report["score_psi_valid_to_attack"],
            **{f"share above valid's top-1% score, {k}": v for k, v in report["top1pct_rate"].items()},
        },
    )


def serve(cfg: ServeConfig, art: Artifacts) -> None:
    """POST /score and POST /bundle/reload on --host:--port (the server `make bench` starts is the same app)."""
    run_server(build_app(art, cfg.store), cfg.host, cfg.port)


def score(cfg: ScoreConfig, art: Artifacts) -> int:
    """Score one transaction with the Python edge scorer, no server; by rules alone when no bundle is live."""
    try:
        request = ScoreRequest(**cfg.request_fields())  # the checks POST /score makes
    except ValidationError as exc:  # a value /score would refuse is a bad flag: one line, exit 2
        err = exc.errors()[0]
        sys.stderr.write(f"mlsd fraud score: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}\n")
        return 2
    scorer = EdgeScorer()  # in-process velocity store: this one transaction is its whole history
    try:
        scorer.load_live(art.root / "bundles")
    except (FileNotFoundError, BundleRejected) as exc:
        console.print(f"[yellow]{exc}; deciding by rules alone[/]")
    decision = scorer.score(request.transaction())
    print_values(
        f"mlsd fraud score {decision.tx_id}", {k: v for k, v in decision.__dict__.items() if k != "tx_id"}
    )
    return 0


def bench(cfg: BenchConfig, art: Artifacts) -> int:
    """Load-test POST /score with locust at --rate for --duration, beside the empty /floor route."""
    if cfg.data:
        return bench_realdata(cfg, art)
    namespace = f"bench{int(time.time())}"
    redis_store = (
        RedisVelocityStore(
            get_settings().redis_cluster_url if cfg.store == "redis_cluster" else get_settings().redis_url,
            namespace,
            cluster=cfg.store == "redis_cluster",
        )
        if cfg.store != "memory"
        else None
    )
    df = pd.read_parquet(art.require(TRANSACTIONS, "data"))
    stream = art.path(BENCH_STREAM)  # test-split transactions; locust gives each request a fresh tx_id
    stream.write_text(json.dumps(score_requests(df.iloc[temporal_split(df).test[:BENCH_STREAM_ROWS]])))
    train_report = json.loads(art.require(TRAIN_REPORT, "train").read_text())
    eval_report = json.loads(art.require(EVAL_REPORT, "eval").read_text())
    spec = BenchSpec(
        app="systems.fraud_edge.serve:build_app",
        locustfile="benchmarks/fraud/locustfile.py",
        route="score",
        slo_p99_ms=10.0,
        target_p99_ms=5.0,
        rate=cfg.rate,
        users=4,
        duration_s=cfg.duration,
        ready_timeout_s=120,
        env={
            "MLSD_SCALE": cfg.scale,  # the server serves this scale's LIVE bundle
            "MLSD_FRAUD_STORE": cfg.store,
            "MLSD_FRAUD_NAMESPACE": namespace,
            "MLSD_FRAUD_STREAM": str(stream),
            "MLSD_FRAUD_ACCESS_LOG": "0",
            # the simulated stream is dated from 1970: admit its event times (a replay, not live traffic)
            "MLSD_FRAUD_MAX_LATENESS_S": str(10**10),
        },
    )
    chosen = train_report["chosen"]
    extra = {
        "store": cfg.store,
        "model_variant": chosen,
        "model_p99_ms_batch1": train_report["variants"][chosen]["p99_ms"],
        "model_budget_p99_ms": MODEL_BUDGET_P99_MS,
        "variants": train_report["variants"],
        "quality": eval_report["quality"],
        "policies": eval_report["policies"],
        "cost_saved_vs_rules_eur": eval_report["cost_saved_vs_rules_eur"],
    }
    try:
        code = run_bench(
            "fraud",
            spec,
            **bench_kwargs(cfg),
            extra=extra,
            extra_md=markdown_tables(train_report, eval_report),
        )
    finally:
        if redis_store is not None:
            redis_store.clear()
    model_ok = extra["model_p99_ms_batch1"] <= MODEL_BUDGET_P99_MS
    console.print(
        f"model-only p99 (batch 1, 1 thread): {extra['model_p99_ms_batch1']:.4f} ms "
        f"({'meets' if model_ok else 'MISSES'} the {MODEL_BUDGET_P99_MS} ms target); "
        f"cost saved vs rules only: {eval_report['cost_saved_vs_rules_eur']:,.0f} EUR"
    )
    return code


def bench_realdata(cfg: BenchConfig, art: Artifacts) -> int:
    """`bench --data creditcard:<path>`: POST /score on the credit-card model (no velocity store: no ids)."""
    stream = art.path(BENCH_STREAM)
    stream.write_text(json.dumps(realdata.bench_stream(art, BENCH_STREAM_ROWS)))
    train_report = json.loads(art.require(TRAIN_REPORT, "train").read_text())
    eval_report = json.loads(art.require(EVAL_REPORT, "eval").read_text())
    spec = BenchSpec(app="systems.fraud_edge.realdata:build_app", locustfile="benchmarks/fraud/locustfile.py",
                     route="score", slo_p99_ms=10.0, target_p99_ms=5.0, rate=cfg.rate, users=4,
                     duration_s=cfg.duration, ready_timeout_s=120, env=realdata.bench_env(stream))  # fmt: skip
    extra = {"data": cfg.data, "model_variant": train_report["chosen"], "variants": train_report["variants"],
             "quality": eval_report["quality"], "policies": eval_report["policies"]}  # fmt: skip
    out = cfg.out or RESULTS_DIR / "fraud" / "latest-creditcard"  # never overwrites the simulator's report
    return run_bench("fraud", spec, **{**bench_kwargs(cfg), "out_dir": out}, extra=extra)


ALL_CONFIG = AllConfig
STEPS = [
    Step("data", data, DataConfig, makes=(TRANSACTIONS, FEATURES), help=data.__doc__),
    Step("train", train_step, TrainConfig, needs=(TRANSACTIONS, FEATURES), makes=(TRAIN_REPORT, LIVE, LGBM_TEST_SCORES),
         help=train_step.__doc__),
    Step("eval", eval_step, EvalConfig, needs=(FEATURES, LIVE, LGBM_TEST_SCORES), makes=(EVAL_REPORT,),
         help=eval_step.__doc__),
    Step("serve", serve, ServeConfig, needs=(LIVE,), in_all=False, help=serve.__doc__),
    Step("score", score, ScoreConfig, in_all=False, help=score.__doc__),
    Step("bench", bench, BenchConfig, needs=(TRANSACTIONS, TRAIN_REPORT, LIVE, EVAL_REPORT), in_all=False,
         help=bench.__doc__),
]  # fmt: skip
