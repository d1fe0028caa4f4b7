"""`mlsd ctr skew`: train/serving skew, found by joining the serving log to the training rows.

Replays logged impressions through the serving path (serve.request_frame + features.model_inputs,
the code /predict runs), writes them to a serving log (serve.ServingLog), then joins that log to the
point-in-time training rows by (request_id, ad_id) and counts, per feature, the rows whose values
differ (feature skew); it also measures the distance between the two distributions (distribution
skew). Two real causes ship as cases, plus a clean control:

  clean            the serving path and the training join agree            -> no mismatches
  missing-default  serving fills a missing activity with 0, training with the -3 sentinel
  timezone         serving derives the hour in the server's local time (UTC-5), training in UTC
  leaky-join       training joined each user's *latest* snapshot instead of the one as of the
                   impression (the online store at serving time has only the past)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from infra.monitoring import jensen_shannon, psi
from systems.ctr.data import EPOCH, MISSING_ACTIVITY, Market
from systems.ctr.serve import (
    AD_COLUMNS,
    AdTable,
    OnlinePath,
    PredictRequest,
    ServingLog,
    loggable,
    read_serving_log,
    request_frame,
)

CASES: dict[str, tuple[OnlinePath, bool]] = {  # (serving path, training rows joined leakily)
    "clean": (OnlinePath(), False),
    "missing-default": (OnlinePath(missing_fill=0.0), False),
    "timezone": (OnlinePath(hour_offset_h=-5), False),
    "leaky-join": (OnlinePath(), True),
}
COMPARED = [
    "user_segment",
    "user_activity",
    "advertiser_id",
    "ad_category",
    "ad_quality",
    "hour",
    "site_id",
    "device",
]


def online_user_table(snapshots: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """What the online store holds at `as_of`: each user's latest snapshot at or before it."""
    past = snapshots[snapshots["event_timestamp"] <= as_of]
    return past.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")


def leaky_rows(rows: pd.DataFrame, snapshots: pd.DataFrame) -> pd.DataFrame:
    """The bug: join users on id alone, taking the newest snapshot, whenever the impression happened."""
    latest = snapshots.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    out = rows.copy()
    out["user_activity"] = latest["user_activity"].reindex(out["user_id"]).to_numpy()
    return out


def replay(
    rows: pd.DataFrame, snapshots: pd.DataFrame, ads: AdTable, path: OnlinePath, log_path: Path
) -> pd.DataFrame:
    """Serve every logged impression (one candidate per request) through the online path; log it."""
    log = ServingLog(log_path)
    for day, day_rows in rows.groupby(rows["event_timestamp"].dt.floor("D")):
        users = online_user_table(snapshots, day)  # the online store as of the start of that day
        for r in day_rows.itertuples(index=False):
            req = PredictRequest(request_id=r.request_id, user_id=int(r.user_id), site_id=int(r.site_id),
                                 device=int(r.device), timestamp=r.event_timestamp.to_pydatetime(),
                                 candidates=[int(r.ad_id)])  # fmt: skip
            user = users.loc[r.user_id].to_dict() if r.user_id in users.index else {}
            if user and pd.isna(user.get("user_activity")):
                user["user_activity"] = None
            frame = request_frame(req, user, ads, path)
            log.append({"request_id": r.request_id, "ts": 0.0, "model_version": "replay",
                        "features": loggable(frame), "scores": [0.0]})  # fmt: skip
    log.close()
    return read_serving_log(log_path)


def compare(training: pd.DataFrame, served: pd.DataFrame) -> pd.DataFrame:
    """Per feature: share of joined rows that differ (feature skew) and PSI / JS between the two (distribution skew)."""
    joined = training.merge(served, on=["request_id", "ad_id"], suffixes=("_train", "_serve"), how="inner")
    out = []
    for c in COMPARED:
        a = joined[f"{c}_train"].to_numpy(dtype=np.float64)
        b = joined[f"{c}_serve"].to_numpy(dtype=np.float64)
        same = np.isclose(a, b, atol=1e-5) | (np.isnan(a) & np.isnan(b))
        fa, fb = np.nan_to_num(a, nan=MISSING_ACTIVITY), np.nan_to_num(b, nan=MISSING_ACTIVITY)
        categorical = c != "user_activity" and c != "ad_quality"
        out.append(
            {
                "feature": c,
                "joined_rows": len(joined),
                "mismatch_rate": float(1 - same.mean()),
                "psi": float(psi(fa, fb)) if not categorical else float("nan"),
                "jensen_shannon": float(
                    jensen_shannon(fa.astype(np.int64), fb.astype(np.int64), categorical=True)
                )
                if categorical
                else float(jensen_shannon(fa, fb)),
            }
        )
    return pd.DataFrame(out)


def run_case(
    name: str, rows: pd.DataFrame, snapshots: pd.DataFrame, ads: AdTable, out_dir: Path
) -> pd.DataFrame:
    path, leaky = CASES[name]
    training = leaky_rows(rows, snapshots) if leaky else rows
    log_path = out_dir / f"serving_log_{name}.jsonl"
    log_path.unlink(missing_ok=True)  # the serving log appends; a rerun starts a fresh one
    served = replay(rows, snapshots, ads, path, log_path)
    report = compare(training, served)
    report.insert(0, "case", name)
    return report


def ad_table(ads: pd.DataFrame) -> AdTable:
    return AdTable(ads.set_index("ad_id")[AD_COLUMNS])


def last_day_sample(rows: pd.DataFrame, market: Market, n: int) -> pd.DataFrame:
    """`n` training rows of the last simulated day (what the serving log would hold for a day)."""
    last_day = rows[rows["event_timestamp"] >= EPOCH + pd.Timedelta(days=market.config.n_days - 1)]
    return last_day.sample(min(n, len(last_day)), random_state=0)
