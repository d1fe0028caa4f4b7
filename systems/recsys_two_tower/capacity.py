"""`mlsd recsys capacity`: the plan for N users, as arithmetic over figures this repo measured.

Inputs are flags (CapacityConfig: users, DAU share, requests per user, catalog size, dimension, index type, p99
budget, RAM per machine); the measured curves come from the reports under benchmarks/results/recsys/:

  sweep/report.json     the catalog curve (`mlsd recsys sweep`): bytes/vector of the index type, and its batch-1
                        p50 at recall@100 >= 0.95 per catalog size, extrapolated to --videos by a power law in n,
                        times the measured p99/p50 ratio for the latency budget
  latest/report.json    the bench (`mlsd recsys bench --ramp`): knee.per_core_rps_at_slo, the /recommend rate one
                        server core holds at p99 <= the SLO; without a knee, 1000 / the mean server ms per request
  */report.json         the first `bytes_per_user` found (the Redis Cluster MEMORY USAGE measurement); without it
                        the online-store line says it is pending

Every row names the report its figure came from; nothing here is a constant pretending to be a measurement.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from systems.recsys_two_tower.config import CapacityConfig

RECALL_TARGET = 0.95


@dataclass(frozen=True)
class Measured:
    value: float
    source: str


@dataclass(frozen=True)
class CatalogCurve:
    """(videos, batch-1 p50 ms) points of one index family at recall@100 >= 0.95, its p99/p50 tail ratio, and
    its bytes per vector.

    The fit runs through p50, not p99: on a shared 2-core machine one preempted query moves a single-threaded
    p99 by milliseconds (the sweep has 0.05 ms p50 rows with 5 ms p99s), while the p50 tracks the work the index
    does. The tail comes back as a measured ratio: the median p99/p50 over the family's passing rows at the
    largest scale measured (at 6,000 videos a 0.05 ms query shows a ~5 ms scheduler tail, an additive noise that a
    ratio would blow up 100x; at 1M videos the work dominates it).
    """

    points: tuple[tuple[int, float], ...]
    tail_ratio: float
    bytes_per_vector: float
    source: str

    def fitted_points(self) -> tuple[tuple[int, float], ...]:
        """The points the fit runs through: catalogs of at least 1/20 of the largest measured. Below that a
        query's fixed cost (the coarse quantizer, the heap, the call) dominates the list scan, and a 6,000-video
        point would bend a curve meant for 50M (it pulled the exponent from ~1.0 to 0.6)."""
        top = self.points[-1][0]
        return tuple(p for p in self.points if p[0] >= top / 20)

    def p50_ms_at(self, n: float) -> float:
        """Power-law fit p50 = a n^b through the fitted points (one point: linear in n, the IVF scan)."""
        points = self.fitted_points()
        if len(points) == 1:
            n0, p0 = points[0]
            return p0 * n / n0
        xs = [math.log(p[0]) for p in points]
        ys = [math.log(p[1]) for p in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        return math.exp(my + b * (math.log(n) - mx))

    def p99_ms_at(self, n: float) -> float:
        return self.p50_ms_at(n) * self.tail_ratio


def catalog_curve(sweep_report: dict, family: str, source: str) -> CatalogCurve | None:
    """The family's cheapest passing setting per scale (by p50), and the bytes/vector at the largest scale."""
    points, ratios, size, largest = [], [], None, 0
    for s in sweep_report.get("scales", []):
        ok = [r for r in s["rows"] if r["family"] == family and r["recall_at_100"] >= RECALL_TARGET]
        if ok:
            best = min(ok, key=lambda r: r["p50_ms"])
            points.append((s["n"], best["p50_ms"]))
            if s["n"] > largest:
                largest, size = s["n"], best["bytes_per_vector"]
                ratios = [r["p99_ms"] / r["p50_ms"] for r in ok]
    if not points or size is None:
        return None
    return CatalogCurve(tuple(sorted(points)), statistics.median(ratios), size, source)


def _find_key(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj and isinstance(obj[key], int | float):
            return obj[key]
        for v in obj.values():
            if (found := _find_key(v, key)) is not None:
                return found
    if isinstance(obj, list):
        for v in obj:
            if (found := _find_key(v, key)) is not None:
                return found
    return None


@dataclass(frozen=True)
class Inputs:
    """What the reports gave: each None when its report is missing."""

    sweep: dict | None = None
    sweep_source: str = ""
    per_core_rps: Measured | None = None
    bytes_per_user: Measured | None = None


def _shown(path: Path, results: Path) -> str:
    """A report's path as a reader finds it: from the repository root (benchmarks/results/recsys/...)."""
    try:
        return str(path.relative_to(results.parents[2]))
    except (ValueError, IndexError):
        return str(path)


def measured_inputs(results: Path) -> Inputs:
    """Read the sweep, bench and online-store figures from benchmarks/results/recsys (see the module doc)."""
    sweep_path = results / "sweep" / "report.json"
    sweep = json.loads(sweep_path.read_text()) if sweep_path.exists() else None
    per_core = None
    bench = results / "latest" / "report.json"
    # the knee: latest's when it has one, else any other bench folder's (e.g. a small-scale --ramp run)
    for path in [bench, *sorted(p for p in results.glob("*/report.json") if p != bench)]:
        knee = (json.loads(path.read_text()).get("knee") or {}) if path.exists() else {}
        if knee.get("per_core_rps_at_slo"):
            per_core = Measured(
                float(knee["per_core_rps_at_slo"]), f"{_shown(path, results)}: knee.per_core_rps_at_slo"
            )
            break
    if per_core is None and bench.exists():
        mean_ms = (
            json.loads(bench.read_text())
            .get("stages", {})
            .get("/recommend", {})
            .get("total", {})
            .get("mean_ms")
        )
        if mean_ms:
            per_core = Measured(
                1000 / mean_ms,
                f"{_shown(bench, results)}: 1000 / mean server ms {mean_ms:.2f} (no --ramp knee held)",
            )
    bytes_per_user = None
    for path in sorted(results.glob("*/report.json")):
        value = _find_key(json.loads(path.read_text()), "bytes_per_user")
        if value:
            bytes_per_user = Measured(float(value), f"{_shown(path, results)}: bytes_per_user")
            break
    return Inputs(sweep, _shown(sweep_path, results), per_core, bytes_per_user)


def _ceil(x: float) -> int:
    """ceil that ignores float dust (200.0000001 / 20 is 10 shards, not 11)."""
    return math.ceil(round(x, 6))


def capacity_rows(a: CapacityConfig, m: Inputs) -> list[tuple[str, str, str]]:
    """(quantity, value, from) rows."""
    mean_qps = a.users * a.daily_active_share * a.feed_requests_per_dau / 86_400
    peak = mean_qps * a.peak_to_mean
    rows = [
        ("mean QPS", f"{mean_qps:,.0f}",
         f"{a.users:,.0f} users x {a.daily_active_share:.0%} DAU x {a.feed_requests_per_dau:g} req/day / 86,400 s"),
        ("peak QPS", f"{peak:,.0f}", f"x {a.peak_to_mean:g} peak-to-mean (flag)"),
    ]  # fmt: skip
    if m.bytes_per_user:
        gb = a.users * m.bytes_per_user.value / 1e9
        rows.append(("online store (user features)", f"{gb:,.0f} GB",
                     f"{m.bytes_per_user.value:,.0f} B/user measured ({m.bytes_per_user.source}); Redis Cluster, "
                     f"{math.ceil(gb / a.machine_ram_gb)} masters of {a.machine_ram_gb:g} GB, + replicas"))  # fmt: skip
    else:
        rows.append(("online store (user features)", "pending",
                     "no bytes_per_user in benchmarks/results/recsys/*/report.json yet: pending the Redis Cluster "
                     "MEMORY USAGE measurement"))  # fmt: skip
    curve = catalog_curve(m.sweep, a.index_type, m.sweep_source) if m.sweep else None
    flat_gb = a.videos * a.dim * 4 / 1e9
    if curve is None:
        rows.append(("index memory per replica", "pending",
                     f"no {a.index_type} row with recall@100 >= {RECALL_TARGET} in {m.sweep_source or 'sweep/report.json'}: "
                     f"run `mlsd recsys sweep`; Flat would be {flat_gb:,.1f} GB"))  # fmt: skip
        shards = 1
    else:
        bpv = curve.bytes_per_vector * a.dim / 64  # the sweep's vectors are 64-d: codes scale with dim
        index_gb = a.videos * bpv / 1e9
        ram_shards = _ceil(index_gb / (a.machine_ram_gb * a.index_ram_share))
        ann_budget = a.p99_budget_ms * a.ann_budget_share
        p99_full = curve.p99_ms_at(a.videos)
        latency_shards = _ceil(p99_full / ann_budget)
        shards = max(1, ram_shards, latency_shards)
        pts = ", ".join(f"{n:,}: {p:.2f} ms" for n, p in curve.fitted_points())
        tail = f"x {curve.tail_ratio:.1f}, the median p99/p50 of its passing rows at {max(curve.points)[0]:,}"
        rows += [
            ("index memory per replica", f"{index_gb:,.1f} GB",
             f"{a.videos:,.0f} x {bpv:.0f} B/vector measured for {a.index_type} ({curve.source}); Flat: {flat_gb:,.1f} GB"),
            (f"ANN p99, one shard of {a.videos:,.0f}", f"{p99_full:,.1f} ms",
             f"power law through the sweep's batch-1 p50 at recall >= {RECALL_TARGET} ({pts}; {curve.source}), "
             f"{tail}"),
            ("shards", f"{shards}",
             f"max(memory: {index_gb:,.1f} GB / ({a.machine_ram_gb:g} GB x {a.index_ram_share:.0%}) -> {ram_shards}, "
             f"latency: {p99_full:,.1f} ms / ANN budget {ann_budget:g} ms ({a.ann_budget_share:.0%} of {a.p99_budget_ms:g}) "
             f"-> {latency_shards}); a shard scans 1/shards of the lists, the root merges shards x 100 ids"),
        ]  # fmt: skip
        per_shard_ms = curve.p50_ms_at(a.videos / shards)
        ann_cores = peak * shards * per_shard_ms / 1000
        rows.append(("ANN cores at peak (all shards)", f"{ann_cores:,.0f}",
                     f"peak QPS x {shards} shards x {per_shard_ms:.2f} ms per shard search (the p50 fit: the "
                     "typical cost of a query, which is what cores are spent on), one query per core at a time"))  # fmt: skip
    if m.per_core_rps:
        cores = peak / m.per_core_rps.value
        rows.append(("serving cores at peak (/recommend)", f"{cores:,.0f}",
                     f"peak QPS / {m.per_core_rps.value:,.1f} req/s per core ({m.per_core_rps.source}), before headroom"))  # fmt: skip
    else:
        rows.append(("serving cores at peak (/recommend)", "pending",
                     "no bench report: run `mlsd recsys bench --ramp` for the knee"))  # fmt: skip
    return rows
