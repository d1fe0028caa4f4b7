"""`mlsd recsys capacity`: the back-of-envelope for 100M users, as arithmetic you can re-run with other inputs.

The measured input (server time per request) comes from this repo's own bench report when it exists; the
rest are stated assumptions (CapacityConfig, each a flag), printed beside the results.
"""

from __future__ import annotations

import json
from pathlib import Path

from systems.recsys_two_tower.config import CapacityConfig


def capacity_rows(a: CapacityConfig, cpu_ms_per_request: float | None = None) -> list[tuple[str, str, str]]:
    """(quantity, value, how) rows; cpu_ms_per_request is the bench's mean server time per request."""
    mean_qps = a.users * a.daily_active_share * a.feed_requests_per_dau / 86_400
    peak = mean_qps * a.peak_to_mean
    rows = [
        (
            "mean QPS",
            f"{mean_qps:,.0f}",
            f"{a.users:.0e} users x {a.daily_active_share:.0%} DAU x {a.feed_requests_per_dau:g} req/day / 86,400 s",
        ),
        ("peak QPS", f"{peak:,.0f}", f"x {a.peak_to_mean:g} peak-to-mean"),
        (
            "user embeddings, fp32",
            f"{a.users * a.dim * 4 / 1e9:,.1f} GB",
            f"{a.dim} dims x 4 B — computed on request instead (user tower), so not stored",
        ),
        (
            "user features (online store)",
            f"{a.users * a.user_feature_bytes / 1e9:,.0f} GB",
            f"{a.user_feature_bytes:g} B per user: a Redis cluster, sharded by user id",
        ),
        (
            "catalog vectors, Flat fp32",
            f"{a.videos * a.dim * 4 / 1e9:,.1f} GB",
            f"{a.videos:.0e} videos x {a.dim} x 4 B: fits one GPU; exact search too slow per query",
        ),
        (
            "catalog vectors, IVF-PQ",
            f"{a.videos * a.pq_bytes_per_vector / 1e9:,.1f} GB",
            f"{a.pq_bytes_per_vector} B per vector: every replica holds the whole index in RAM",
        ),
    ]
    if cpu_ms_per_request:
        cores = peak * cpu_ms_per_request / 1000
        rows.append(
            (
                "serving cores at peak",
                f"{cores:,.0f}",
                f"peak QPS x {cpu_ms_per_request:.2f} ms server time per request (mean, this repo's bench; one request at a time per core), before headroom",
            )
        )
    return rows


def measured_cpu_ms(report: Path) -> float | None:
    """Mean server-side ms per /recommend request in a bench report.json (None when there is no report)."""
    if not report.exists():
        return None
    stages = json.loads(report.read_text()).get("stages", {}).get("/recommend", {})
    return stages.get("total", {}).get("mean_ms")
