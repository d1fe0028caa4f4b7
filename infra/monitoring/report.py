"""Windowed monitoring: every signal for each live window against one reference window, as JSON and HTML.

Per window: per-feature drift (PSI, KS, normalised Wasserstein, Jensen-Shannon for numeric features;
chi-square / Cramér's V, category PSI and Jensen-Shannon for categoricals), prediction drift (PSI of
the scores), label-free performance (CBPE expected AUC), and, when the labels have arrived,
AUC / log loss / calibration. A signal alerts when it crosses the threshold in distances.THRESHOLDS
(or the performance thresholds below).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infra.monitoring.distances import (
    THRESHOLDS,
    categorical_psi,
    category_counts,
    chi_square_categorical,
    jensen_shannon,
    wasserstein_normalized,
)
from infra.monitoring.drift import ks_statistic, psi
from infra.monitoring.performance import expected_auc, labelled_metrics

PERFORMANCE_THRESHOLDS = {"prediction_psi": 0.1, "cbpe_auc_drop": 0.01, "auc_drop": 0.01, "calibration": 0.05}


@dataclass
class Window:
    """One slice of traffic: its features, the model's scores and (maybe) its delayed labels."""

    name: str
    features: pd.DataFrame
    scores: np.ndarray
    labels: np.ndarray | None = None


def feature_drift(ref: pd.Series, live: pd.Series, categorical: bool) -> dict[str, Any]:
    if categorical:
        r, lv = ref.to_numpy(np.int64), live.to_numpy(np.int64)
        _, p, v = chi_square_categorical(r, lv)
        rc, lc = category_counts(r, lv)
        out = {"cramers_v": v, "chi2_p": p, "categorical_psi": categorical_psi(rc, lc),
               "jensen_shannon": jensen_shannon(r, lv, categorical=True)}  # fmt: skip
        out["alert"] = bool(
            v > THRESHOLDS["cramers_v"] or out["categorical_psi"] > THRESHOLDS["categorical_psi"]
        )
        return out
    r, lv = ref.to_numpy(np.float64), live.to_numpy(np.float64)
    r, lv = r[~np.isnan(r)], lv[~np.isnan(lv)]
    out = {"psi": psi(r, lv), "ks": ks_statistic(r, lv), "wasserstein": wasserstein_normalized(r, lv),
           "jensen_shannon": jensen_shannon(r, lv)}  # fmt: skip
    out["alert"] = bool(out["psi"] > THRESHOLDS["psi"] or out["ks"] > THRESHOLDS["ks"])
    return out


def window_signals(
    reference: Window, live: Window, numeric: list[str], categorical: list[str]
) -> dict[str, Any]:
    features = {c: feature_drift(reference.features[c], live.features[c], False) for c in numeric}
    features |= {c: feature_drift(reference.features[c], live.features[c], True) for c in categorical}
    ref_cbpe, live_cbpe = expected_auc(reference.scores), expected_auc(live.scores)
    out: dict[str, Any] = {
        "window": live.name,
        "n": len(live.scores),
        "features": features,
        "features_drifted": sorted(c for c, f in features.items() if f["alert"]),
        "prediction_psi": psi(reference.scores, live.scores),
        "mean_score": float(np.mean(live.scores)),
        "cbpe_auc": live_cbpe,
        "cbpe_auc_drop": ref_cbpe - live_cbpe,
    }
    if live.labels is not None and reference.labels is not None:
        ref_m, live_m = (
            labelled_metrics(reference.labels, reference.scores),
            labelled_metrics(live.labels, live.scores),
        )
        out |= {
            "auc": live_m["auc"],
            "auc_drop": ref_m["auc"] - live_m["auc"],
            "log_loss": live_m["log_loss"],
            "log_loss_rise": live_m["log_loss"] - ref_m["log_loss"],
            "calibration": live_m["calibration"],
        }
    alerts = [f"feature:{c}" for c in out["features_drifted"]]
    if out["prediction_psi"] > PERFORMANCE_THRESHOLDS["prediction_psi"]:
        alerts.append("prediction_drift")
    if out["cbpe_auc_drop"] > PERFORMANCE_THRESHOLDS["cbpe_auc_drop"]:
        alerts.append("cbpe")
    if "auc_drop" in out and out["auc_drop"] > PERFORMANCE_THRESHOLDS["auc_drop"]:
        alerts.append("auc")
    if "calibration" in out and abs(out["calibration"] - 1) > PERFORMANCE_THRESHOLDS["calibration"]:
        alerts.append("calibration")
    out["alerts"] = alerts
    return out


def monitor(
    reference: Window, windows: list[Window], numeric: list[str], categorical: list[str]
) -> list[dict]:
    return [window_signals(reference, w, numeric, categorical) for w in windows]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_report(
    signals: list[dict], reference: Window, windows: list[Window], numeric: list[str], categorical: list[str],
    out_dir: Path, title: str = "drift report",
) -> tuple[Path, Path]:  # fmt: skip
    """monitoring.json (every number) and monitoring.html (tables and plots, one self-contained file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "monitoring.json"
    json_path.write_text(json.dumps(signals, indent=2, default=float))
    names = [s["window"] for s in signals]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    axes[0].plot(names, [s["prediction_psi"] for s in signals], marker="o", label="prediction PSI")
    axes[0].plot(names, [max((f.get("psi", f.get("categorical_psi", 0)) for f in s["features"].values()), default=0)
                         for s in signals], marker="o", label="max feature PSI")  # fmt: skip
    axes[0].axhline(0.25, color="grey", linestyle=":")
    axes[0].set_title("drift")
    axes[0].legend(fontsize=7)
    axes[1].plot(names, [s["cbpe_auc"] for s in signals], marker="o", label="CBPE (no labels)")
    if "auc" in signals[0]:
        axes[1].plot(names, [s["auc"] for s in signals], marker="o", label="AUC (delayed labels)")
    axes[1].set_title("performance")
    axes[1].legend(fontsize=7)
    if "calibration" in signals[0]:
        axes[2].plot(names, [s["calibration"] for s in signals], marker="o")
        axes[2].axhspan(0.95, 1.05, color="green", alpha=0.1)
    axes[2].set_title("calibration (pred / obs)")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    timeline = _png(fig)
    last = windows[-1]
    cols = [*numeric, *categorical]
    fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 2.4))
    for ax, c in zip(np.atleast_1d(axes), cols, strict=True):
        ref, live = reference.features[c].dropna(), last.features[c].dropna()
        if c in categorical:
            cats = np.union1d(ref.unique(), live.unique())
            ax.bar(
                np.arange(cats.size) - 0.2, [np.mean(ref == k) for k in cats], width=0.4, label="reference"
            )
            ax.bar(np.arange(cats.size) + 0.2, [np.mean(live == k) for k in cats], width=0.4, label=last.name)
        else:
            bins = np.histogram_bin_edges(np.concatenate([ref, live]), 30)
            ax.hist(ref, bins, density=True, alpha=0.5, label="reference")
            ax.hist(live, bins, density=True, alpha=0.5, label=last.name)
        ax.set_title(c, fontsize=8)
        ax.tick_params(labelsize=6)
    np.atleast_1d(axes)[0].legend(fontsize=6)
    fig.tight_layout()
    features_png = _png(fig)
    rows = "".join(
        f"<tr><td>{s['window']}</td><td>{s['n']}</td><td>{s['prediction_psi']:.3f}</td><td>{s['cbpe_auc']:.4f}</td>"
        f"<td>{s.get('auc', float('nan')):.4f}</td><td>{s.get('calibration', float('nan')):.3f}</td>"
        f"<td>{', '.join(s['alerts']) or '-'}</td></tr>"
        for s in signals
    )
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style></head>
<body><h1>{title}</h1><p>reference: {reference.name} ({len(reference.scores)} rows); thresholds: {THRESHOLDS} {PERFORMANCE_THRESHOLDS}</p>
<table><tr><th>window</th><th>n</th><th>prediction PSI</th><th>CBPE AUC</th><th>AUC</th><th>calibration</th><th>alerts</th></tr>{rows}</table>
<h2>signals over time</h2><img src="data:image/png;base64,{timeline}">
<h2>features: reference vs {last.name}</h2><img src="data:image/png;base64,{features_png}">
</body></html>"""
    html_path = out_dir / "monitoring.html"
    html_path.write_text(html)
    return json_path, html_path
