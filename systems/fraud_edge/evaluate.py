"""Offline evaluation on the test split (eventual labels): quality, cost by policy, score drift.

The tables DESIGN.md quotes come from here (`mlsd fraud eval`) and from train_report.json (`mlsd fraud train`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from infra.artifacts import Artifacts
from infra.metrics import pr_auc, recall_at_fpr
from infra.monitoring import psi
from infra.serving.onnx import make_session
from systems.fraud_edge.bundle import live_path, verify_bundle
from systems.fraud_edge.data import (
    DAY,
    SimConfig,
    labels_known_at,
    load_data,
    simulate_transactions,
    temporal_split,
)
from systems.fraud_edge.decision import (
    APPROVE,
    Costs,
    Thresholds,
    combined_actions,
    policy_row,
    rule_actions,
)
from systems.fraud_edge.features.velocity import batch_raw_aggregates, feature_spec, model_features
from systems.fraud_edge.train import LGBM_TEST_SCORES

EVAL_REPORT = "eval_report.json"


def evaluate(art: Artifacts) -> dict[str, Any]:
    """Score the test split with the LIVE bundle: quality, cost by policy, drift; writes eval_report.json."""
    df, x = load_data(art)
    split = temporal_split(df)
    art.require("bundles/LIVE", "train")
    bundle = verify_bundle(live_path(art.root / "bundles"), feature_spec()["spec_hash"])
    sess = make_session(bundle.model_onnx, threads=1, prefer_gpu=False, name=f"bundle {bundle.version}")
    y = df["is_fraud"].to_numpy().astype(np.int8)
    amount = df["amount_cents"].to_numpy() / 100.0
    xte, yte, ate = x[split.test], y[split.test], amount[split.test]
    scores = sess.run(None, {"features": xte})[0][:, 0]
    valid_scores = sess.run(None, {"features": x[split.valid]})[0][:, 0]
    lgbm_scores = np.load(art.require(LGBM_TEST_SCORES, "train"))
    t = Thresholds(float(bundle.thresholds["review"]), float(bundle.thresholds["decline"]))
    costs = Costs(**bundle.thresholds["costs"])

    policies = {
        "approve all": np.full(len(yte), APPROVE),
        "rules only": rule_actions(xte)[0],
        "model + rules": combined_actions(scores, xte, t),
    }
    cost_table = {name: policy_row(a, yte, ate, costs) for name, a in policies.items()}
    rules_cost = cost_table["rules only"]["cost_eur"]
    served_cost = cost_table["model + rules"]["cost_eur"]

    # Monitoring: score drift between the validation window and the test window, and daily fraud rate
    # as it looks at the end of the test window (recent days look cleaner: chargebacks still arriving).
    ts_test = df["ts"].to_numpy()[split.test]
    known_now = labels_known_at(df, int(df["ts"].max()))[split.test]
    days = (ts_test - split.test_start) // DAY
    daily = [
        {
            "day": int(d),
            "true": float(yte[days == d].mean()),
            "known_by_end": float(known_now[days == d].mean()),
        }
        for d in np.unique(days)
    ]

    # An adversary adapts: a fresh draw of the same population with four times the incidents, against a
    # control draw with the usual mix. Does the score PSI move before the chargebacks (days later) arrive?
    def fresh_stream_scores(incidents: float) -> tuple[np.ndarray, float]:
        cfg = SimConfig(
            n_cards=int(df["card_id"].nunique()), n_terminals=int(df["terminal_id"].nunique()), days=14,
            seed=99, incidents_per_1k_cards_day=incidents,
        )  # fmt: skip
        stream = simulate_transactions(cfg)
        warm = stream["ts"].to_numpy() >= 2 * DAY  # skip the cold-start days, as the split does
        xs = model_features(batch_raw_aggregates(stream))[warm]
        return sess.run(None, {"features": xs})[0][:, 0], float(stream["is_fraud"].to_numpy()[warm].mean())

    control_scores, _ = fresh_stream_scores(SimConfig.incidents_per_1k_cards_day)
    attack_scores, attack_rate = fresh_stream_scores(4 * SimConfig.incidents_per_1k_cards_day)
    report = {
        "bundle": bundle.version,
        "score_psi_valid_to_control": psi(valid_scores, control_scores),
        "score_psi_valid_to_attack": psi(valid_scores, attack_scores),
        "attack_fraud_rate": attack_rate,
        # The tail monitor: share of scores above validation's 99th percentile (1% by construction).
        "top1pct_rate": {
            name: float(np.mean(sc >= np.quantile(valid_scores, 0.99)))
            for name, sc in (
                ("valid", valid_scores),
                ("test", scores),
                ("control", control_scores),
                ("attack", attack_scores),
            )
        },
        "variant": bundle.manifest["meta"]["variant"],
        "quality": {
            "lightgbm (reference)": {
                "pr_auc": pr_auc(yte, lgbm_scores),
                "recall_at_1pct_fpr": recall_at_fpr(yte, lgbm_scores),
            },
            f"mlp {bundle.manifest['meta']['variant']} (served)": {
                "pr_auc": pr_auc(yte, scores),
                "recall_at_1pct_fpr": recall_at_fpr(yte, scores),
            },
        },
        "thresholds": t.to_dict(),
        "costs": bundle.thresholds["costs"],
        "policies": cost_table,
        "cost_saved_vs_rules_eur": rules_cost - served_cost,
        "cost_saved_vs_rules_pct": (rules_cost - served_cost) / rules_cost * 100 if rules_cost else 0.0,
        "score_psi_valid_to_test": psi(valid_scores, scores),
        "daily_fraud_rate": daily,
        "test_rows": int(len(yte)),
        "test_frauds": int(yte.sum()),
    }
    art.path(EVAL_REPORT).write_text(json.dumps(report, indent=2))
    return report


def markdown_tables(train_report: dict[str, Any], eval_report: dict[str, Any]) -> str:
    """The model micro-benchmark and the quality/cost tables, for the bench report and DESIGN.md."""
    lines = [
        "## Model micro-benchmark (ONNX Runtime, 1 thread; test split)",
        "",
        "| variant | size KB | batch-1 p50 ms | batch-1 p99 ms | rows/s (batch 4096) | PR-AUC | recall @1% FPR "
        "| p99 / max abs diff vs fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in train_report["variants"].items():
        mark = " (served)" if name == train_report["chosen"] else ""
        lines.append(
            f"| {name}{mark} | {v['size_kb']:.1f} | {v['p50_ms']:.4f} | {v['p99_ms']:.4f} | "
            f"{v['rows_per_s_batch4096']:,.0f} | {v['pr_auc']:.4f} | {v['recall_at_1pct_fpr']:.4f} | "
            f"{v['p99_abs_diff_vs_fp32']:.3f} / {v['max_abs_diff_vs_fp32']:.3f} |"
        )
    lines += ["", f"Chosen: **{train_report['chosen']}** — {train_report['why']}.", ""]
    lines += [
        "## Quality (test split, eventual labels)",
        "",
        "| model | PR-AUC | recall @1% FPR |",
        "|---|---:|---:|",
    ]
    for name, q in eval_report["quality"].items():
        lines.append(f"| {name} | {q['pr_auc']:.4f} | {q['recall_at_1pct_fpr']:.4f} |")
    lines += [
        "",
        f"## Cost by policy (test split, {eval_report['test_rows']} transactions, {eval_report['test_frauds']} frauds; EUR)",
        "",
        "| policy | total cost | fraud stopped | decline rate | review rate | false declines |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, p in eval_report["policies"].items():
        lines.append(
            f"| {name} | {p['cost_eur']:,.0f} | {p['fraud_eur_stopped']:,.0f} | {p['decline_rate']:.4f} | "
            f"{p['review_rate']:.4f} | {p['false_declines']} |"
        )
    lines += [
        "",
        f"Cost saved vs rules only: **{eval_report['cost_saved_vs_rules_eur']:,.0f} EUR "
        f"({eval_report['cost_saved_vs_rules_pct']:.1f}%)**; score PSI valid→test "
        f"{eval_report['score_psi_valid_to_test']:.3f}; valid→fresh stream, same fraud mix "
        f"{eval_report['score_psi_valid_to_control']:.3f}; valid→attack stream (4x incidents, fraud rate "
        f"{eval_report['attack_fraud_rate']:.4f}) {eval_report['score_psi_valid_to_attack']:.3f}.",
        "",
        "Tail monitor — share of scores above validation's 99th percentile: "
        + ", ".join(f"{k} {v:.4f}" for k, v in eval_report["top1pct_rate"].items()),
        "",
        "## Fraud rate by test day: the truth vs what is known at the end of the window (label delay)",
        "",
        "| day | true | known by end |",
        "|---:|---:|---:|",
        *[
            f"| {d['day']} | {d['true']:.4f} | {d['known_by_end']:.4f} |"
            for d in eval_report["daily_fraud_rate"]
        ],
    ]
    return "\n".join(lines)
