"""`mlsd recsys capacity`: the back-of-envelope for 100M users, as arithmetic you can re-run with other inputs.

Measured inputs (server CPU ms per request, index bytes) come from this repo's own bench report and
index when they exist; the rest are stated assumptions, printed beside the results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Assumptions:
    users: float = 100e6
    daily_active_share: float = 0.3
    feed_requests_per_dau: float = 20.0
    peak_to_mean: float = 3.0
    videos: float = 50e6
    dim: int = 64
    user_feature_bytes: float = 400.0  # ~40 scalar features and 20 history ids, serialized
    pq_bytes_per_vector: int = 16  # IVF-PQ m=16, 8 bits
    cpu_ms_per_request: float | None = None  # measured: server-side total per request


def capacity(a: Assumptions) -> list[tuple[str, str, str]]:
    """(quantity, value, how) rows."""
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
    if a.cpu_ms_per_request:
        cores = peak * a.cpu_ms_per_request / 1000
        rows.append(
            (
                "serving cores at peak",
                f"{cores:,.0f}",
                f"peak QPS x {a.cpu_ms_per_request:.2f} ms server time per request (mean, this repo's bench; one request at a time per core), before headroom",
            )
        )
    return rows


def measured_cpu_ms(report: Path) -> float | None:
    if not report.exists():
        return None
    stages = json.loads(report.read_text()).get("stages", {}).get("/recommend", {})
    return stages.get("total", {}).get("mean_ms")
