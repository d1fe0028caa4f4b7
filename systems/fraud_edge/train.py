"""The train step: features -> LightGBM (quality reference) + MLP -> ONNX fp32 / int8 -> pick -> thresholds -> bundle.

LightGBM is the quality yardstick: no converter to ONNX is installed (skl2onnx / onnxmltools), so the
deployable path is the PyTorch MLP, exported with torch.onnx and quantized with ONNX Runtime.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import cast

import lightgbm as lgb
import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from infra.artifacts import Artifacts
from infra.console import progress as progress_of
from infra.metrics import pr_auc, recall_at_fpr
from infra.serving.onnx import make_session
from systems.fraud_edge.bundle import write_bundle
from systems.fraud_edge.config import TrainConfig
from systems.fraud_edge.data import labels_known_at, load_data, temporal_split
from systems.fraud_edge.decision import Costs, Thresholds, choose_thresholds, rule_actions
from systems.fraud_edge.features.velocity import FEATURE_NAMES, N_FEATURES, feature_spec
from systems.fraud_edge.model import FraudMLP, zero_denormals

MODEL_BUDGET_P99_MS = 0.2  # model-only, batch 1, one thread
MODEL_BUDGET_KB = 64.0  # what an over-the-air update to a terminal may weigh
PRAUC_TOLERANCE = 0.005  # quality loss we accept for a smaller artifact
PARITY_P99 = 0.02  # |p_int8 - p_fp32| at the 99th percentile of test rows
PARITY_MAX = 0.4  # ... and on the worst row (static int8 saturates on rows beyond its calibration range)
TRAIN_REPORT = "train_report.json"
LGBM_TEST_SCORES = "lgbm_test_scores.npy"


# ---------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------


def train_lightgbm(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, cfg: TrainConfig
) -> lgb.LGBMClassifier:
    model = lgb.LGBMClassifier(
        n_estimators=cfg.lgbm_rounds, learning_rate=0.05, num_leaves=31, min_child_samples=20,
        subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=cfg.seed, n_jobs=2, verbose=-1,
    )  # fmt: skip
    model.fit(
        x, y, eval_X=(xv,), eval_y=(yv,), eval_metric="binary_logloss",
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )  # fmt: skip
    return model


def train_mlp(
    x: np.ndarray, y: np.ndarray, cfg: TrainConfig, progress: bool = True
) -> tuple[FraudMLP, list[float]]:
    """BCE with pos_weight (fraud is ~0.5% of rows); returns the model and the per-epoch loss."""
    torch.manual_seed(cfg.seed)
    model = FraudMLP(x.shape[1], cfg.hidden)
    model.fit_scaler(x)
    pos = max(1, int(y.sum()))
    pos_weight = torch.tensor([min(50.0, (len(y) - pos) / pos)])
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))[:, None]
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for _ in progress_of(range(cfg.epochs), "mlp epochs", disable=not progress):
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            loss = loss_fn(model.logits(xt[idx]), yt[idx])  # (B, 1) vs (B, 1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(xt))
    return model.eval(), losses


# ---------------------------------------------------------------------------------------------------
# ONNX export, quantization, measurement
# ---------------------------------------------------------------------------------------------------


def export_onnx(model: FraudMLP, path: Path) -> None:
    dummy = torch.zeros(1, N_FEATURES)
    torch.onnx.export(
        model, (dummy,), str(path), input_names=["features"], output_names=["fraud_prob"],
        dynamic_axes={"features": {0: "batch"}, "fraud_prob": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip


def zero_denormal_initializers(path: Path, tiny: float = 1e-30) -> int:
    """Zero float initializers with 0 < |w| < tiny in an ONNX file (in place); returns how many."""
    model = onnx.load(str(path))
    n = 0
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype not in (np.float32, np.float64):
            continue
        mask = (arr != 0) & (np.abs(arr) < tiny)
        if mask.any():
            n += int(mask.sum())
            init.CopyFrom(numpy_helper.from_array(np.where(mask, 0, arr).astype(arr.dtype), init.name))
    if n:
        onnx.save(model, str(path))
    return n


class _Calibration(CalibrationDataReader):
    """Static quantization reads activation ranges from these rows."""

    def __init__(self, x: np.ndarray, batch: int = 256) -> None:
        self.batches = iter([{"features": x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def quantize_variants(fp32: Path, calib: np.ndarray, out: Path) -> dict[str, Path]:
    """fp32 -> int8 dynamic (weights int8, activations quantized per batch) and int8 static (QDQ, calibrated)."""
    dyn, sta = out / "model_int8_dynamic.onnx", out / "model_int8_static.onnx"
    quantize_dynamic(str(fp32), str(dyn), weight_type=QuantType.QInt8)
    quantize_static(
        str(fp32), str(sta), _Calibration(calib), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return {"fp32": fp32, "int8_dynamic": dyn, "int8_static": sta}


def measure_variant(
    path: Path, x_test: np.ndarray, y_test: np.ndarray, n_runs: int = 2000
) -> dict[str, float]:
    """Size, batch-1 latency on one thread, batched throughput, and quality on the test split."""
    sess = make_session(path, threads=1, prefer_gpu=False)
    rows = x_test[:n_runs]
    for i in range(200):
        sess.run(None, {"features": rows[i % len(rows) : i % len(rows) + 1]})
    times = np.empty(n_runs)
    for i in range(n_runs):
        row = rows[i % len(rows) : i % len(rows) + 1]
        t0 = time.perf_counter()
        sess.run(None, {"features": row})
        times[i] = time.perf_counter() - t0
    batch = x_test[:4096]
    batch_s = []
    for _ in range(21):  # median of 21: other processes share these cores
        t0 = time.perf_counter()
        sess.run(None, {"features": batch})
        batch_s.append(time.perf_counter() - t0)
    throughput = len(batch) / float(np.median(batch_s))
    scores = sess.run(None, {"features": x_test})[0][:, 0]
    return {
        "size_kb": path.stat().st_size / 1024,
        "p50_ms": float(np.percentile(times, 50) * 1000),
        "p99_ms": float(np.percentile(times, 99) * 1000),
        "rows_per_s_batch4096": float(throughput),
        "pr_auc": pr_auc(y_test, scores),
        "recall_at_1pct_fpr": recall_at_fpr(y_test, scores),
    }


def _misses(v: dict[str, float]) -> list[str]:
    """The budgets one variant misses, in words."""
    checks = [
        (v["p99_ms"], MODEL_BUDGET_P99_MS, "batch-1 p99 {:.4f} ms > {:g}"),
        (v["size_kb"], MODEL_BUDGET_KB, "size {:.1f} KB > {:g}"),
        (v.get("p99_abs_diff_vs_fp32", 0.0), PARITY_P99, "parity p99 |dp| {:.3f} > {:g}"),
        (v.get("max_abs_diff_vs_fp32", 0.0), PARITY_MAX, "parity max |dp| {:.3f} > {:g}"),
    ]
    return [fmt.format(got, limit) for got, limit, fmt in checks if got > limit]


def select_variant(table: dict[str, dict[str, float]]) -> tuple[str, str]:
    """Within the latency, size and fp32-parity budgets: the smallest file whose PR-AUC is within tolerance."""
    ref = table["fp32"]["pr_auc"]
    misses = {k: _misses(v) for k, v in table.items()}
    fits = {k: v for k, v in table.items() if not misses[k]}
    excluded = "; ".join(f"{k} excluded: {', '.join(m)}" for k, m in misses.items() if m)
    excluded = f" ({excluded})" if excluded else ""
    if not fits:
        best = min(table, key=lambda k: table[k]["p99_ms"])
        return best, f"no variant met every budget on this machine; kept the fastest{excluded}"
    close = {k: v for k, v in fits.items() if ref - v["pr_auc"] <= PRAUC_TOLERANCE}
    if close:
        best = min(close, key=lambda k: close[k]["size_kb"])
        why = (
            f"the smallest file that meets p99 <= {MODEL_BUDGET_P99_MS} ms, <= {MODEL_BUDGET_KB:g} KB and fp32 "
            f"parity with PR-AUC within {PRAUC_TOLERANCE} of fp32 ({ref - table[best]['pr_auc']:+.4f} loss){excluded}"
        )
        return best, why
    best = min(fits, key=lambda k: ref - fits[k]["pr_auc"])
    return best, f"meets the budgets with the smallest PR-AUC loss (none was within tolerance){excluded}"


def models_report(y_test: np.ndarray, lgbm_scores: np.ndarray, lgbm_trees: int, losses: list[float],
                  table: dict[str, dict], choice: tuple[str, str], thresholds: Thresholds, valid_cost: float,
                  bundle: Path) -> dict:  # fmt: skip
    """The models' part of train_report.json: the same keys for the simulator and the public CSV (realdata)."""
    return {
        "lightgbm": {
            "pr_auc": pr_auc(y_test, lgbm_scores),
            "recall_at_1pct_fpr": recall_at_fpr(y_test, lgbm_scores),
            "trees": lgbm_trees,
        },
        "mlp_loss_per_epoch": losses,
        "variants": table,
        "chosen": choice[0],
        "why": choice[1],
        "thresholds": thresholds.to_dict(),
        "valid_cost_eur": valid_cost,
        "bundle": bundle.name,
    }


# ---------------------------------------------------------------------------------------------------
# the train step
# ---------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, art: Artifacts, progress: bool = True) -> dict:
    """Train both models, export + quantize, pick the edge variant, choose thresholds, publish a bundle."""
    df, x = load_data(art)
    split = temporal_split(df)
    y_known = labels_known_at(df, split.label_cutoff)  # what the training job can see
    y_true = df["is_fraud"].to_numpy().astype(np.int8)  # the eventual truth, for evaluation only
    xtr, ytr = x[split.train], y_known[split.train]
    xva, yva = x[split.valid], y_known[split.valid]
    xte, yte = x[split.test], y_true[split.test]

    t0 = time.perf_counter()
    lgbm = train_lightgbm(xtr, ytr, xva, yva, cfg)
    # lightgbm's return type also covers sparse input: dense in, dense out
    lgbm_scores = cast(np.ndarray, lgbm.predict_proba(xte))[:, 1]
    mlp, losses = train_mlp(xtr, ytr, cfg, progress)
    denormals_torch = zero_denormals(mlp)
    fp32 = art.path("model_fp32.onnx")
    export_onnx(mlp, fp32)
    # Calibrate static ranges on ordinary rows AND every known fraud: frauds are the outliers (bursts,
    # spikes) whose activations would otherwise saturate the int8 range — exactly the rows that matter.
    rng = np.random.default_rng(cfg.seed)
    calib = np.concatenate([xtr[rng.choice(len(xtr), min(2048, len(xtr)), replace=False)], xtr[ytr == 1]])
    paths = quantize_variants(fp32, calib, art.root)
    denormals_onnx = {k: zero_denormal_initializers(p) for k, p in paths.items()}
    table = {k: measure_variant(p, xte, yte) for k, p in paths.items()}
    fp32_scores = make_session(fp32, threads=1, prefer_gpu=False).run(None, {"features": xte})[0][:, 0]
    for name, path in paths.items():  # parity with fp32 on the test rows
        q = make_session(path, threads=1, prefer_gpu=False).run(None, {"features": xte})[0][:, 0]
        diff = np.abs(q - fp32_scores)
        table[name]["p99_abs_diff_vs_fp32"] = float(np.quantile(diff, 0.99))
        table[name]["max_abs_diff_vs_fp32"] = float(diff.max())
    chosen, why = select_variant(table)

    # Thresholds for the served policy (chosen model + hard rules), on validation labels known at cutoff.
    sess = make_session(paths[chosen], threads=1, prefer_gpu=False)
    valid_scores = sess.run(None, {"features": xva})[0][:, 0]
    amount_va = df["amount_cents"].to_numpy()[split.valid] / 100.0
    costs = Costs()
    thresholds, valid_cost = choose_thresholds(valid_scores, yva, amount_va, costs, rule_actions(xva)[0])

    canary_x = xte[:8]
    canary_scores = sess.run(None, {"features": canary_x})[0][:, 0]
    meta = {
        "variant": chosen,
        "why": why,
        "trained_at_label_cutoff": split.label_cutoff,
        "test_pr_auc": table[chosen]["pr_auc"],
        "costs": asdict(costs),
    }
    bundle = write_bundle(
        art.dir("bundles"),
        paths[chosen].read_bytes(),
        feature_spec(),
        {**thresholds.to_dict(), "costs": asdict(costs), "valid_cost_eur": valid_cost},
        {"features": canary_x.tolist(), "scores": canary_scores.tolist(), "atol": 1e-5},
        meta,
    )
    # Label delay: frauds in the train+valid window whose chargeback had not arrived at the cutoff.
    window = np.concatenate([split.train, split.valid])
    trees = int(lgbm.best_iteration_ or cfg.lgbm_rounds)
    models = models_report(
        yte, lgbm_scores, trees, losses, table, (chosen, why), thresholds, valid_cost, bundle
    )
    report = {
        "rows": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
        "fraud_rate": {"train_known": float(ytr.mean()), "test_true": float(yte.mean())},
        "label_delay_missed": int(y_true[window].sum() - y_known[window].sum()),
        "frauds_in_train_valid": int(y_true[window].sum()),
        "denormals_zeroed": {"torch": denormals_torch, **denormals_onnx},
        **models,
        "seconds": time.perf_counter() - t0,
    }
    np.save(art.path(LGBM_TEST_SCORES), lgbm_scores)
    art.path(TRAIN_REPORT).write_text(json.dumps(report, indent=2))
    if cfg.mlflow:
        # imported only when logging: mlflow takes seconds to import, and tests and --no-mlflow skip it
        from infra.registry import Registry

        flat = {f"{k}_{m}": v for k, row in table.items() for m, v in row.items()}
        params = {k: v for k, v in asdict(cfg).items() if k not in ("force", "mlflow")}
        Registry().log_run(
            "fraud",
            params={**params, "variant": chosen, "features": len(FEATURE_NAMES)},
            metrics={**flat, "lgbm_pr_auc": report["lightgbm"]["pr_auc"]},
            artifacts={"bundle": bundle},
            run_name=bundle.name,
            step_metrics={"mlp_loss": losses},
        )
    return report
