"""`mlsd ctr monitor`: drift signals on injected shifts, against the true change in AUC and log loss.

Reference window: the held-out days the model was evaluated on. Live windows: a fresh day of traffic
with one shift injected each (data.Shift). Because the truth is known, each signal's alert can be
set beside the real damage: some drifts are harmless (the model already knows the feature), some
hurt without moving any feature (concept drift), and label-free estimates miss exactly those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from infra.monitoring import labelled_metrics
from infra.monitoring.report import Window, monitor, write_report
from systems.ctr.data import Market, Shift, simulate_day
from systems.ctr.features import logged_features

NUMERIC = ["user_activity", "ad_quality"]
CATEGORICAL = ["device", "hour", "advertiser_id", "ad_category", "site_id", "user_segment"]

SHIFTS: dict[str, Shift] = {
    "none": Shift(),
    "device-mix": Shift(device_mix=(0.2, 0.3, 0.5)),
    "activity-up": Shift(activity_offset=1.0),
    "new-advertisers": Shift(new_advertisers=0.6),
    "concept-drift": Shift(concept_drift=0.8),
}
HARM_AUC, HARM_LOGLOSS = 0.005, 0.002  # real degradation: the gap to Bayes grows by this much


def window(
    market: Market, day: int, scorer, n: int, shift: Shift = Shift(), name: str | None = None
) -> Window:  # noqa: ANN001
    frame = logged_features(simulate_day(market, day, n, shift=shift, seed=day))
    frame["user_activity"] = frame["user_activity"].astype(np.float64)
    return Window(name or f"day {day}", frame, scorer(frame), frame["click"].to_numpy())


def gap(w: Window, metric: str) -> float:
    """How far the model is from the Bayes-optimal score on this window (AUC: below; log loss: above)."""
    if w.labels is None:
        raise ValueError(f"window {w.name!r} has no labels yet: the model's gap to Bayes needs them")
    model = labelled_metrics(w.labels, w.scores)[metric]
    bayes = labelled_metrics(w.labels, w.features["p_true"].to_numpy())[metric]
    return bayes - model if metric == "auc" else model - bayes


def shift_table(market: Market, scorer, n: int = 30_000, reference_day: int = 13) -> list[dict]:  # noqa: ANN001
    """For each injected shift: every signal's alert, and the true change in AUC / log loss."""
    reference = window(market, reference_day, scorer, n, name="reference")
    rows = []
    for i, (name, shift) in enumerate(SHIFTS.items()):
        live = window(market, 14 + i, scorer, n, shift, name)
        s = monitor(reference, [live], NUMERIC, CATEGORICAL)[0]
        # real degradation = the model fell further behind the Bayes-optimal score in the same window
        # (raw AUC and log loss also move when the base rate or the mix moves, model or no model)
        auc_gap_rise = gap(live, "auc") - gap(reference, "auc")
        regret_rise = gap(live, "log_loss") - gap(reference, "log_loss")
        harmed = auc_gap_rise > HARM_AUC or regret_rise > HARM_LOGLOSS
        rows.append(
            {
                "shift": name,
                "features_drifted": s["features_drifted"],
                "max_feature_psi": max(
                    f.get("psi", f.get("categorical_psi", 0.0)) for f in s["features"].values()
                ),
                "prediction_psi": s["prediction_psi"],
                "cbpe_auc_drop": s["cbpe_auc_drop"],
                "auc_drop": s["auc_drop"],
                "log_loss_rise": s["log_loss_rise"],
                "calibration": s["calibration"],
                "auc_gap_rise": auc_gap_rise,
                "regret_rise": regret_rise,
                "alerts": s["alerts"],
                "harmed": bool(harmed),
            }
        )
    return rows


def signal_scorecard(rows: list[dict]) -> pd.DataFrame:
    """Per signal: how often its alert agreed with real harm over the shift scenarios."""
    signals = {
        "any feature drift": lambda r: bool(r["features_drifted"]),
        "prediction drift": lambda r: "prediction_drift" in r["alerts"],
        "CBPE (no labels)": lambda r: "cbpe" in r["alerts"],
        "calibration (labels)": lambda r: "calibration" in r["alerts"],
        "AUC (labels)": lambda r: "auc" in r["alerts"],
    }
    out = []
    for name, fired in signals.items():
        hits = [fired(r) for r in rows]
        harm = [r["harmed"] for r in rows]
        out.append(
            {
                "signal": name,
                "alerts": sum(hits),
                "true_alarms": sum(h and g for h, g in zip(hits, harm, strict=True)),
                "false_alarms": sum(h and not g for h, g in zip(hits, harm, strict=True)),
                "missed": sum(g and not h for h, g in zip(hits, harm, strict=True)),
            }
        )
    return pd.DataFrame(out)


def windowed_report(market: Market, scorer, out_dir: Path, n: int = 20_000) -> tuple[Path, Path, list[dict]]:  # noqa: ANN001
    """Seven daily windows; new advertisers ramp in from the fourth day (0%, 0%, 0%, 20%, 40%, 60%, 80%)."""
    reference = window(market, 13, scorer, n, name="reference (day 13)")
    ramp = [0.0, 0.0, 0.0, 0.2, 0.4, 0.6, 0.8]
    windows = [
        window(market, 14 + i, scorer, n, Shift(new_advertisers=r), f"day {14 + i}")
        for i, r in enumerate(ramp)
    ]
    signals = monitor(reference, windows, NUMERIC, CATEGORICAL)
    json_path, html_path = write_report(signals, reference, windows, NUMERIC, CATEGORICAL, out_dir,
                                        title="ctr: new advertisers ramp in from day 17")  # fmt: skip
    return json_path, html_path, signals
