"""fraud on the public credit-card CSV (`--data creditcard:<path>`): the same models, budgets and cost model.

The European card-holder data set (September 2013, two days, 284,807 transactions, 492 frauds) has
`Time` (seconds from the first row), `V1..V28` (a PCA of features the bank did not publish), `Amount`
and `Class`. What that means for this design (DESIGN.md, "Real data: the credit-card CSV"):
- no card, terminal or location: none of the velocity features (counts and sums per card and terminal
  over 10 min / 1 h / 1 day, distance from the usual place, time since the last purchase) can be computed,
  and neither can four of the five hard rules. The model sees one transaction at a time: V1..V28 and the
  amount. Whatever history the bank folded into V1..V28 is already baked in, and cannot be recomputed at
  an edge device, so this model could not be served on a terminal as the simulator's can;
- no label timestamps: the chargeback delay cannot be modelled; labels are taken as known at the
  cutoff (optimistic, as the simulator shows);
- the split is by time: train on the first 60% of `Time`, thresholds on the next 20%, test on the last 20%.

Artifacts (in `<MLSD_DATA_DIR>/fraud/data-creditcard-<hash>/`, never the simulator's folder):
transactions.parquet, features.npy (data); model_*.onnx, bundles/ (signed with this feature spec, which the
velocity scorer refuses), train_report.json, lgbm_test_scores.npy (train); eval_report.json (eval).
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra.artifacts import Artifacts
from infra.console import console, print_rows, print_values
from infra.metrics import pr_auc, recall_at_fpr
from infra.monitoring import psi
from infra.serving import create_app
from infra.serving.onnx import make_session
from infra.steps import StepError
from systems.fraud_edge import train as fraud_train
from systems.fraud_edge.bundle import BundleRejected, live_path, verify_bundle, write_bundle
from systems.fraud_edge.config import DataConfig, EvalConfig, FraudSettings, TrainConfig
from systems.fraud_edge.data import FEATURES, TRANSACTIONS, load_creditcard_csv, save_data
from systems.fraud_edge.decision import (
    ACTIONS,
    APPROVE,
    REVIEW,
    Costs,
    Thresholds,
    choose_thresholds,
    model_actions,
    policy_row,
)

FEATURE_NAMES = [*(f"V{i}" for i in range(1, 29)), "log_amount"]
LARGE_AMOUNT_EUR = 2000.0  # the one hard rule a single transaction can still fire (decision.rule_actions)
SPLIT = (0.6, 0.8)  # quantiles of Time: train | valid (thresholds) | test
# What the system's design needs that this file does not have, and what is lost with it.
CANNOT_PROVIDE = [
    ("card id", "card velocity (count and sum 10 min / 1 h / 1 day), amount vs the card's mean, "
                "rules card_testing and amount_spike"),
    ("terminal id", "terminal velocity (a compromised terminal's burst), rule terminal_burst"),
    ("location", "distance from the card's usual place, rule impossible_travel"),
    ("label timestamps", "the chargeback delay: labels taken as known at the cutoff (optimistic)"),
    ("raw features", "V1..V28 are the bank's PCA: an edge device cannot compute them from a transaction"),
]  # fmt: skip


def feature_spec() -> dict:
    """The bundle's feature spec: the edge's velocity scorer refuses it (a different spec_hash), as it should."""
    spec = {"source": "creditcard.csv", "features": FEATURE_NAMES, "dtype": "float32"}
    spec["spec_hash"] = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return spec


def creditcard_features(df: pd.DataFrame) -> np.ndarray:
    """(N, 29) float32: V1..V28 as published, log1p(Amount)."""
    return np.column_stack([df[FEATURE_NAMES[:28]].to_numpy(), np.log1p(df["Amount"].to_numpy())]).astype(
        np.float32
    )


def time_split(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train | valid | test by Time (rows are in Time order)."""
    t = df["Time"].to_numpy()
    lo, hi = np.quantile(t, SPLIT)
    return np.flatnonzero(t < lo), np.flatnonzero((t >= lo) & (t < hi)), np.flatnonzero(t >= hi)


def large_amount_rule(x: np.ndarray) -> np.ndarray:
    """The served floor: review an amount of 2,000 or more (the only rule without history)."""
    return np.where(np.expm1(x[:, -1]) >= LARGE_AMOUNT_EUR, REVIEW, APPROVE).astype(np.int64)


# ------------------------------------------------------------------------------------------------ steps
def data(cfg: DataConfig, art: Artifacts) -> None:
    """Read and check creditcard.csv; write its rows and (N, 29) features."""
    path = cfg.data_path()
    assert path is not None  # the pipeline calls this only with --data
    with console.status(f"reading and checking {path}"):
        df = load_creditcard_csv(path)
        x = creditcard_features(df)
        save_data(art, df, x)
    days = float(df["Time"].max() - df["Time"].min()) / 86_400
    print_values("mlsd fraud data (creditcard.csv)", {
        "file": str(path), "transactions": len(df), "frauds": int(df["Class"].sum()),
        "fraud_rate": float(df["Class"].mean()), "days": round(days, 2), "features": len(FEATURE_NAMES),
    })  # fmt: skip
    missing = ", ".join(what for what, _ in CANNOT_PROVIDE[:3])
    console.print(f"[yellow]this file has no {missing}: no velocity features, one hard rule of five[/]")


def load(art: Artifacts) -> tuple[pd.DataFrame, np.ndarray]:
    x = np.load(art.require(FEATURES, "data --data creditcard:<path>"))
    return pd.read_parquet(art.require(TRANSACTIONS, "data --data creditcard:<path>")), x


def export_onnx(model: torch.nn.Module, n_features: int, path: Path) -> None:
    """A deliberate copy of train.export_onnx, whose dummy input has the velocity features' width."""
    torch.onnx.export(model, (torch.zeros(1, n_features),), str(path), input_names=["features"],
                      output_names=["fraud_prob"], dynamic_axes={"features": {0: "batch"}, "fraud_prob": {0: "batch"}},
                      opset_version=17, dynamo=False)  # fmt: skip


def train(cfg: TrainConfig, art: Artifacts) -> dict:
    """LightGBM and the MLP on the first 60% of Time; ONNX fp32 / int8; thresholds on the next 20%; a bundle."""
    df, x = load(art)
    tr, va, te = time_split(df)
    y = df["Class"].to_numpy().astype(np.int8)
    if y[tr].sum() == 0 or y[va].sum() == 0 or y[te].sum() == 0:
        raise StepError(f"{cfg.data_path()}: every split needs a fraud (train {y[tr].sum()}, valid {y[va].sum()}, "
                        f"test {y[te].sum()}); use a larger part of the file")  # fmt: skip
    xtr, xva, xte = x[tr], x[va], x[te]
    t0 = time.perf_counter()
    lgbm = fraud_train.train_lightgbm(xtr, y[tr], xva, y[va], cfg)
    # lightgbm's return type also covers sparse input: dense in, dense out
    lgbm_scores = cast(np.ndarray, lgbm.predict_proba(xte))[:, 1]
    mlp, losses = fraud_train.train_mlp(xtr, y[tr], cfg)
    fraud_train.zero_denormals(mlp)
    fp32 = art.path("model_fp32.onnx")
    export_onnx(mlp, x.shape[1], fp32)
    rng = np.random.default_rng(cfg.seed)  # calibrate int8 ranges on ordinary rows and every known fraud
    calib = np.concatenate([xtr[rng.choice(len(xtr), min(2048, len(xtr)), replace=False)], xtr[y[tr] == 1]])
    paths = fraud_train.quantize_variants(fp32, calib, art.root)
    for p in paths.values():
        fraud_train.zero_denormal_initializers(p)
    table = {k: fraud_train.measure_variant(p, xte, y[te]) for k, p in paths.items()}
    fp32_scores = make_session(fp32, threads=1, prefer_gpu=False).run(None, {"features": xte})[0][:, 0]
    for name, p in paths.items():
        diff = np.abs(
            make_session(p, threads=1, prefer_gpu=False).run(None, {"features": xte})[0][:, 0] - fp32_scores
        )
        table[name]["p99_abs_diff_vs_fp32"] = float(np.quantile(diff, 0.99))
        table[name]["max_abs_diff_vs_fp32"] = float(diff.max())
    chosen, why = fraud_train.select_variant(table)
    sess = make_session(paths[chosen], threads=1, prefer_gpu=False)
    valid_scores = sess.run(None, {"features": xva})[0][:, 0]
    costs = Costs()
    amount_va = df["Amount"].to_numpy()[va]
    thresholds, valid_cost = choose_thresholds(valid_scores, y[va], amount_va, costs, large_amount_rule(xva))
    canary = {"features": xte[:8].tolist(), "scores": sess.run(None, {"features": xte[:8]})[0][:, 0].tolist(),
              "atol": 1e-5}  # fmt: skip
    meta = {"variant": chosen, "why": why, "source": "creditcard.csv", "costs": asdict(costs)}
    bundle = write_bundle(art.dir("bundles"), paths[chosen].read_bytes(), feature_spec(),
                          {**thresholds.to_dict(), "costs": asdict(costs), "valid_cost_eur": valid_cost}, canary, meta)  # fmt: skip
    trees = int(lgbm.best_iteration_ or cfg.lgbm_rounds)
    models = fraud_train.models_report(
        y[te], lgbm_scores, trees, losses, table, (chosen, why), thresholds, valid_cost, bundle
    )
    report = {
        "source": str(cfg.data_path()),
        "rows": {"train": len(tr), "valid": len(va), "test": len(te)},
        "frauds": {"train": int(y[tr].sum()), "valid": int(y[va].sum()), "test": int(y[te].sum())},
        **models,
        "cannot_provide": dict(CANNOT_PROVIDE),
        "seconds": time.perf_counter() - t0,
    }
    np.save(art.path(fraud_train.LGBM_TEST_SCORES), lgbm_scores)
    art.path(fraud_train.TRAIN_REPORT).write_text(json.dumps(report, indent=2))
    if cfg.mlflow:
        from infra.registry import Registry  # mlflow takes seconds to import: only when logging

        Registry().log_run("fraud", params={"data": "creditcard", "variant": chosen, "epochs": cfg.epochs},
                           metrics={f"{k}_{m}": v for k, row in table.items() for m, v in row.items()},
                           artifacts={"bundle": bundle}, run_name=f"creditcard-{bundle.name}")  # fmt: skip
    columns = ("variant", "KB", "p50 ms", "p99 ms", "rows/s b4096", "PR-AUC", "recall@1%FPR", "|dp| p99")
    rows: list[tuple[Any, ...]] = [
        (k, f"{v['size_kb']:.1f}", v["p50_ms"], v["p99_ms"], round(v["rows_per_s_batch4096"]), v["pr_auc"],
         v["recall_at_1pct_fpr"], v["p99_abs_diff_vs_fp32"]) for k, v in table.items()
    ]  # fmt: skip
    rows.append(("lightgbm (ref)", "", "", "", "", report["lightgbm"]["pr_auc"],
                 report["lightgbm"]["recall_at_1pct_fpr"], ""))  # fmt: skip
    print_rows(f"mlsd fraud train on creditcard.csv (test: last 20% of Time) — bundle {bundle.name} serves {chosen}",
               columns, rows)  # fmt: skip
    console.print(f"why {chosen}: {why}")
    return report


def evaluate(cfg: EvalConfig, art: Artifacts) -> dict:
    """The LIVE bundle on the test split: PR-AUC, recall at 1% FPR, the cost table, fp32 vs int8."""
    df, x = load(art)
    _, va, te = time_split(df)
    art.require("bundles/LIVE", "train --data creditcard:<path>")
    bundle = verify_bundle(live_path(art.root / "bundles"), feature_spec()["spec_hash"])
    sess = make_session(bundle.model_onnx, threads=1, prefer_gpu=False, name=f"bundle {bundle.version}")
    y, amount = df["Class"].to_numpy().astype(np.int8), df["Amount"].to_numpy()
    scores = sess.run(None, {"features": x[te]})[0][:, 0]
    valid_scores = sess.run(None, {"features": x[va]})[0][:, 0]
    lgbm_scores = np.load(art.require(fraud_train.LGBM_TEST_SCORES, "train --data creditcard:<path>"))
    train_report = json.loads(
        art.require(fraud_train.TRAIN_REPORT, "train --data creditcard:<path>").read_text()
    )
    t = Thresholds(float(bundle.thresholds["review"]), float(bundle.thresholds["decline"]))
    costs = Costs(**bundle.thresholds["costs"])
    floor = large_amount_rule(x[te])
    policies = {
        "approve all": np.full(len(te), APPROVE),
        "large-amount rule only": floor,
        "model + rule (served)": np.maximum(model_actions(scores, t), floor),
    }
    cost_table = {name: policy_row(a, y[te], amount[te], costs) for name, a in policies.items()}
    variant = bundle.manifest["meta"]["variant"]
    quality = {"lightgbm (reference)": {"pr_auc": pr_auc(y[te], lgbm_scores),
                                        "recall_at_1pct_fpr": recall_at_fpr(y[te], lgbm_scores)}}  # fmt: skip
    for name, v in train_report["variants"].items():
        quality[f"mlp {name}" + (" (served)" if name == variant else "")] = {
            "pr_auc": v["pr_auc"], "recall_at_1pct_fpr": v["recall_at_1pct_fpr"], "size_kb": v["size_kb"],
            "p99_ms": v["p99_ms"], "p99_abs_diff_vs_fp32": v["p99_abs_diff_vs_fp32"]}  # fmt: skip
    base = cost_table["large-amount rule only"]["cost_eur"]
    report = {
        "source": train_report["source"], "bundle": bundle.version, "variant": variant, "quality": quality,
        "thresholds": t.to_dict(), "costs": bundle.thresholds["costs"], "policies": cost_table,
        "cost_saved_vs_rule_eur": base - cost_table["model + rule (served)"]["cost_eur"],
        "score_psi_valid_to_test": psi(valid_scores, scores), "test_rows": int(len(te)),
        "test_frauds": int(y[te].sum()), "cannot_provide": dict(CANNOT_PROVIDE),
    }  # fmt: skip
    art.path("eval_report.json").write_text(json.dumps(report, indent=2))
    print_rows(f"mlsd fraud eval on creditcard.csv — test split ({len(te):,} rows, {int(y[te].sum())} frauds)",
               ("model", "PR-AUC", "recall@1%FPR", "KB", "|dp| p99 vs fp32"),
               [(k, q["pr_auc"], q["recall_at_1pct_fpr"], f"{q.get('size_kb', 0):.1f}" if "size_kb" in q else "",
                 q.get("p99_abs_diff_vs_fp32", "")) for k, q in quality.items()])  # fmt: skip
    print_rows("cost by policy (EUR; Amount taken as EUR)",
               ("policy", "cost EUR", "fraud stopped EUR", "decline rate", "review rate", "false declines"),
               [(k, round(r["cost_eur"]), round(r["fraud_eur_stopped"]), r["decline_rate"], r["review_rate"],
                 r["false_declines"]) for k, r in cost_table.items()])  # fmt: skip
    print_rows("what creditcard.csv cannot provide", ("missing", "so the design loses"), CANNOT_PROVIDE)
    return report


# ------------------------------------------------------------------------------------------------ serving
class RowRequest(BaseModel):
    """One credit-card row as the model sees it: V1..V28 and log1p(Amount)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"tx_id": "cc-1", "features": [*[0.0] * 28, 3.0]}]}
    )

    tx_id: str = Field(min_length=1, max_length=64)
    features: list[float] = Field(min_length=len(FEATURE_NAMES), max_length=len(FEATURE_NAMES))


@dataclass
class RowScorer:
    """The LIVE credit-card bundle: its ONNX session (one thread) and thresholds."""

    session: ort.InferenceSession
    thresholds: Thresholds
    version: str

    def score(self, features: list[float]) -> dict[str, object]:
        x = np.asarray([features], dtype=np.float32)  # (1, 29)
        p = float(self.session.run(None, {"features": x})[0][0, 0])
        action = max(int(model_actions(np.array([p]), self.thresholds)[0]), int(large_amount_rule(x)[0]))
        return {"score": p, "action": ACTIONS[action], "bundle_version": self.version}


def build_app(art: Artifacts | None = None) -> FastAPI:
    """POST /score for credit-card rows, on the LIVE bundle of `art`.

    Started by the bench (no `art`): the artifact folder is the one holding MLSD_FRAUD_STREAM, the rows it
    replays (`bench --data` writes them there)."""
    stream = FraudSettings().stream
    if art is None and stream is None:
        raise SystemExit("MLSD_FRAUD_STREAM is not set: start this server through `mlsd fraud bench --data`")
    root = art.root if art is not None else stream.parent  # type: ignore[union-attr]

    def load() -> RowScorer:
        try:
            bundle = verify_bundle(live_path(Path(root) / "bundles"), feature_spec()["spec_hash"])
        except (BundleRejected, FileNotFoundError) as exc:
            raise SystemExit(f"no credit-card bundle to serve: {exc}") from exc
        t = Thresholds(float(bundle.thresholds["review"]), float(bundle.thresholds["decline"]))
        scorer = RowScorer(make_session(bundle.model_onnx, threads=1, prefer_gpu=False), t, bundle.version)
        gc.collect()
        gc.freeze()
        return scorer

    app = create_app("fraud-creditcard", load=load, access_log_enabled=FraudSettings().access_log)
    state = app.state.resources

    @app.post("/score")
    async def score(request: Request) -> JSONResponse:
        scorer: RowScorer = state.get()  # 503 while loading
        try:
            req = RowRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        return JSONResponse({"tx_id": req.tx_id, **scorer.score(req.features)})

    return app


def bench_stream(art: Artifacts, rows: int = 5000) -> list[dict]:
    """/score bodies for the test split's rows (the bench replays them)."""
    df, x = load(art)
    _, _, te = time_split(df)
    return [{"tx_id": f"cc{i}", "features": x[i].tolist()} for i in te[:rows]]


def bench_env(stream: Path) -> dict[str, str]:
    """The server's and locust's environment: the stream (in the artifact folder whose bundle is served)."""
    return {"MLSD_FRAUD_STREAM": str(stream), "MLSD_FRAUD_ACCESS_LOG": "0"}
