"""Offline CTR quality: AUC, log loss, normalized entropy, calibration, reliability; and the Bayes ceiling.

The metric functions are infra.metrics' (shared with fraud_edge, tested against scikit-learn there):
NE = log loss / entropy of the base CTR (He et al. 2014, "Practical lessons from predicting clicks on
ads at Facebook"): 1.0 is no better than always predicting the average CTR; lower is better.
Calibration = mean predicted / observed CTR: 1.0 is calibrated, 1.10 over-predicts clicks by 10%.

The stage after training: it scores what train.py fits (and retrains over seeds for `mlsd ctr eval`), so it
imports train; train never imports it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from infra.metrics import calibration_ratio, log_loss, normalized_entropy, roc_auc
from systems.ctr.features import model_inputs
from systems.ctr.train import FitConfig, Fitted, fit_rows


def recalibrate(p: np.ndarray, negative_keep_rate: float) -> np.ndarray:
    """Undo negative downsampling: q = p / (p + (1 - p) / w), w = share of negatives kept."""
    p = np.asarray(p, dtype=np.float64)
    return p / (p + (1 - p) / negative_keep_rate)


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    """Predicted vs observed CTR in equal-count bins of the prediction."""
    order = np.argsort(p, kind="stable")
    rows = []
    for chunk in np.array_split(order, n_bins):
        if chunk.size:
            rows.append(
                {
                    "predicted": float(np.mean(p[chunk])),
                    "observed": float(np.mean(y[chunk])),
                    "n": int(chunk.size),
                }
            )
    return rows


@dataclass(frozen=True)
class Quality:
    auc: float
    log_loss: float
    ne: float
    calibration: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def quality(y: np.ndarray, p: np.ndarray) -> Quality:
    y = np.asarray(y)
    return Quality(
        auc=roc_auc(y, p),
        log_loss=log_loss(y, p),
        ne=normalized_entropy(y, p),
        calibration=calibration_ratio(y, p),
        n=int(y.size),
    )


def bayes_quality(test_rows: pd.DataFrame, log: pd.DataFrame) -> Quality:
    """The ceiling: each test impression scored with its own true click probability (the log's p_true)."""
    p = test_rows[["request_id"]].merge(log[["request_id", "p_true"]], on="request_id", how="left")["p_true"]
    return quality(test_rows["click"].to_numpy(), p.to_numpy())


def held_out_quality(fitted: Fitted, test_rows: pd.DataFrame) -> Quality:
    """A fitted model's quality on the held-out rows, through the same transform it was trained on."""
    cat, num = model_inputs(test_rows, cat_fields=fitted.config.cat_fields, n_buckets=fitted.config.n_buckets)
    return quality(test_rows["click"].to_numpy(), fitted.predict(cat, num))


def plot_reliability(curves: dict[str, list[dict[str, float]]], out: Path) -> Path:
    fig = Figure(figsize=(5, 5))  # no pyplot: a file, never a window
    ax = fig.subplots()
    top = max(max(r["predicted"], r["observed"]) for rows in curves.values() for r in rows)
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect")
    for name, rows in curves.items():
        ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], marker="o", label=name)
    ax.set_xlabel("mean predicted CTR (decile)")
    ax.set_ylabel("observed CTR")
    ax.set_title("reliability on the held-out days")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def over_seeds(
    train_rows: pd.DataFrame, test_rows: pd.DataFrame, ceiling: Quality, seeds: int, out: Path
) -> list[list[str]]:
    """Train LR and DeepFM with seeds 0..seeds-1 on the same rows; mean ± std of each metric; reliability plot.

    Writes eval.json and reliability.png to `out`; returns the table rows (model, metric "mean ± std" ...)."""
    y = test_rows["click"].to_numpy()
    runs: dict[str, list[dict[str, float]]] = {"lr": [], "deepfm": []}
    curves: dict[str, list[dict[str, float]]] = {}
    for seed in range(seeds):
        for kind in ("lr", "deepfm"):
            fitted = fit_rows(FitConfig(kind=kind, seed=seed), train_rows, progress=True)
            q = held_out_quality(fitted, test_rows)
            cat, num = model_inputs(test_rows)
            p = fitted.predict(cat, num)
            with torch.no_grad():  # the same model without undoing the negative downsampling
                raw = torch.sigmoid(fitted.model(torch.from_numpy(cat), torch.from_numpy(num))).numpy()
            runs[kind].append({**q.as_dict(), "calibration_raw": calibration_ratio(y, raw)})
            if seed == 0:
                curves[kind] = reliability(y, p)
                if kind == "deepfm":
                    curves["deepfm, not recalibrated"] = reliability(y, raw)
    out.mkdir(parents=True, exist_ok=True)
    plot_reliability(curves, out / "reliability.png")
    keys = ["auc", "gap", "log_loss", "ne", "calibration", "calibration_raw"]
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    table = [
        [
            "bayes",
            f"{ceiling.auc:.4f}",
            "0",
            f"{ceiling.log_loss:.4f}",
            f"{ceiling.ne:.4f}",
            f"{ceiling.calibration:.3f}",
            "-",
        ]
    ]
    for kind, rs in runs.items():
        for r in rs:
            r["gap"] = ceiling.auc - r["auc"]
        summary[kind] = {
            k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs]))) for k in keys
        }
        table.append([kind, *[f"{summary[kind][k][0]:.4f} ± {summary[kind][k][1]:.4f}" for k in keys]])
    (out / "eval.json").write_text(
        json.dumps(
            {"seeds": seeds, "bayes": ceiling.as_dict(), "runs": runs, "summary": summary},
            indent=2,
            default=float,
        )
    )
    return table
