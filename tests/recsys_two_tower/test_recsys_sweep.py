"""The catalog curve (sweep.py) and the capacity plan (capacity.py): choice, shards, arithmetic. All fast."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np
import pytest

from infra.steps import ConfigError
from systems.recsys_two_tower.capacity import Inputs, Measured, capacity_rows, catalog_curve, measured_inputs
from systems.recsys_two_tower.config import CapacityConfig
from systems.recsys_two_tower.index import (
    Rule,
    SweepRow,
    catalog_rule,
    choose,
    exact_top_k,
    index_bytes,
    recall_at_k,
)
from systems.recsys_two_tower.sweep import (
    build_shards,
    plan_for,
    search_shards,
    sweep_scale,
    synthetic_mixture,
    write_report,
)


def _row(family: str, recall_at_100: float, p50: float, bpv: float) -> SweepRow:
    return SweepRow(
        family, family, "nprobe=1", recall_at_100, p50, p50 * 2, p50 / 4, 1.0, bpv, scale="t", n=1000
    )


def test_choose_takes_the_fastest_passing_row_within_the_memory_budget() -> None:
    rows = [
        _row("flat", 1.0, 9.0, 256),  # exact: never "chosen"
        _row("ivf_flat", 0.99, 0.5, 264),  # fastest passing, but over the budget
        _row("ivf_sq8", 0.96, 0.8, 72),  # passing and within budget: chosen
        _row("ivf_sq8", 0.97, 1.2, 72),
        _row("ivf_pq", 0.90, 0.1, 40),  # fastest of all, misses recall
    ]
    assert catalog_rule(dim=64).max_bytes_per_vector == 64  # a quarter of Flat's 256 B at d=64
    best, why = choose(rows, Rule(max_bytes_per_vector=80, ivf_flat_by_distances=False))
    assert best is rows[2] and best.chosen and "0.960" in why
    assert sum(r.chosen for r in rows) == 1
    best, why = choose(
        rows, Rule(max_bytes_per_vector=10, ivf_flat_by_distances=False)
    )  # nothing fits: the fastest passing, and it says so
    assert best is rows[1] and "fit" in why
    assert choose([_row("ivf_pq", 0.5, 0.1, 40)], catalog_rule(64)) == (
        None,
        "no setting reached recall@100 >= 0.95",
    )


def test_exact_top_k_in_batches_matches_one_pass() -> None:
    m = synthetic_mixture(dim=16, clusters=8)
    base, queries = m.draw(3000, 0), m.draw(20, 1)
    _, want = faiss.knn(queries, base, 100, faiss.METRIC_INNER_PRODUCT)
    assert recall_at_k(exact_top_k(base, queries, batch=700), want) == 1.0  # 5 catalog batches


def test_sweep_picks_the_cheapest_passing_setting_on_a_small_catalog(tmp_path: Path) -> None:
    m = synthetic_mixture(dim=16, clusters=16)
    base, queries = m.draw(4000, 0), m.draw(40, 1)
    plan = plan_for(len(base), 16, hnsw_max_videos=0, families=("ivf_flat", "ivf_sq8"))
    res = sweep_scale(
        "t", base, queries, plan, "synthetic", n_single=5, shard_counts=(1, 2), log=lambda _: None
    )
    budget = 16 * 4 / 4
    chosen = [r for r in res.rows if r.chosen]
    assert len(chosen) == 1 and res.chosen is not None
    c = chosen[0]
    assert c.recall_at_100 >= 0.95
    passing = [r for r in res.rows if r.recall_at_100 >= 0.95 and r.family != "flat"]
    within = [r for r in passing if r.bytes_per_vector <= budget] or passing
    assert c.p50_ms == min(r.p50_ms for r in within)
    assert [s["shards"] for s in res.shards] == [1, 2]
    assert res.shards[0]["recall_at_100"] == pytest.approx(res.shards[1]["recall_at_100"])
    write_report({"k": 100, "recall_target": 0.95, "scales": [asdict(res)], "load_average": [0, 0, 0], "threads": 1},
                 tmp_path)  # fmt: skip
    assert json.loads((tmp_path / "report.json").read_text())["scales"][0]["chosen"]["chosen"]
    assert "← chosen" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "frontier.png").exists() and (tmp_path / "catalog_curve.png").exists()


@pytest.mark.parametrize(
    "family", ["ivf_flat", "ivf_sq8", pytest.param("ivf_pq_refine", marks=pytest.mark.slow)]
)  # PQ training (32 sub-quantizers) is the slow part on a loaded machine
def test_shards_give_the_same_top_k_as_one_index(family: str) -> None:
    """Same trained quantizer and codec in each shard + the same nprobe => the same lists are scanned."""
    m = synthetic_mixture(dim=16, clusters=8)
    base, queries = m.draw(3000, 0), m.draw(25, 1)
    plan = plan_for(len(base), 16, hnsw_max_videos=0)
    quantizer = faiss.IndexFlatIP(16)
    clus = faiss.Clustering(16, plan.nlist)
    clus.seed = 0
    clus.train(base, quantizer)
    _, assign = quantizer.search(base, 1)
    assign = assign.ravel().astype(np.int64)
    (one,) = build_shards(family, base, quantizer, assign, base, plan, 1)
    faiss.extract_index_ivf(one.index).nprobe = 4
    _, want = one.index.search(queries, 100)
    for n_shards in (2, 4):
        shards = build_shards(family, base, quantizer, assign, base, plan, n_shards)
        for s in shards:
            faiss.extract_index_ivf(s.index).nprobe = 4
        _, got = search_shards(shards, queries)
        assert np.array_equal(np.sort(got, axis=1), np.sort(want, axis=1)), n_shards


def test_index_bytes_counts_what_serialize_writes() -> None:
    m = synthetic_mixture(dim=16, clusters=8)
    base = m.draw(2000, 0)
    ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(16), 16, 8, faiss.ScalarQuantizer.QT_8bit)
    ivf.train(base)
    ivf.add(base)
    assert index_bytes(ivf) == faiss.serialize_index(ivf).size > 2000 * 16  # codes + ids + quantizer


def test_plan_caps_nlist_and_takes_an_nprobe_grid() -> None:
    assert plan_for(1_000_000, 64, 0).nlist == 4096  # ~4 sqrt(n), as the medium report was built
    assert plan_for(10_000_000, 64, 0).nlist == 8192  # 4 sqrt(1e7) -> 16,384, capped
    assert plan_for(10_000_000, 64, 0, max_nlist=4096).nlist == 4096
    plan = plan_for(5_000_000, 64, 1_000_000, nprobes=(16, 64, 512, 16384))
    assert plan.nprobes == (16, 64, 512) and not plan.build_hnsw  # nprobe > nlist dropped; HNSW over its cap
    assert plan_for(1_000_000, 64, 0).nprobes[-1] == 256


def test_a_new_scale_merges_into_the_report_and_keeps_each_scales_threads(tmp_path: Path) -> None:
    """`sweep --scales large` on a folder with small + medium: the old scales and their run's threads stay."""
    m = synthetic_mixture(dim=16, clusters=8)
    plan = plan_for(2000, 16, hnsw_max_videos=0, families=("ivf_flat",), nprobes=(4, 8))
    runs = {}
    for scale, n in (("small", 1000), ("large", 2000)):
        runs[scale] = asdict(sweep_scale(scale, m.draw(n, 0), m.draw(20, 1), plan, "synthetic", n_single=3,
                                         shard_counts=(1,), log=lambda _: None))  # fmt: skip
    before = {
        k: v for k, v in runs["small"].items() if k not in ("threads", "load_average")
    }  # an older report
    old = {
        "k": 100,
        "recall_target": 0.95,
        "scales": [before],
        "load_average": [14.0, 9.0, 5.5],
        "threads": 2,
    }
    (tmp_path / "report.json").write_text(json.dumps(old))
    new = runs["large"] | {"threads": 1, "load_average": [3.0, 2.0, 1.0], "wall_s": 120.0, "note": "shared"}
    write_report({"k": 100, "recall_target": 0.95, "scales": [new], "load_average": [3.0, 2.0, 1.0],
                  "threads": 1}, tmp_path)  # fmt: skip
    merged = json.loads((tmp_path / "report.json").read_text())
    assert [(s["scale"], s["threads"], s["load_average"]) for s in merged["scales"]] == [
        ("small", 2, [14.0, 9.0, 5.5]),
        ("large", 1, [3.0, 2.0, 1.0]),
    ]
    md = (tmp_path / "report.md").read_text()
    assert "batched on 2 thread(s); load average 14.0, 9.0, 5.5" in md
    assert "batched on 1 thread(s); load average 3.0, 2.0, 1.0; whole scale 2 min; shared" in md
    assert "## small: 1,000 videos" in md and "## large: 2,000 videos" in md


SWEEP = {"scales": [
    {"n": 1_000_000, "rows": [
        {"family": "ivf_sq8", "recall_at_100": 0.96, "p50_ms": 1.0, "p99_ms": 2.0, "bytes_per_vector": 72},
        {"family": "ivf_sq8", "recall_at_100": 0.90, "p50_ms": 0.5, "p99_ms": 1.0, "bytes_per_vector": 72}]},
    {"n": 10_000_000, "rows": [
        {"family": "ivf_sq8", "recall_at_100": 0.97, "p50_ms": 10.0, "p99_ms": 30.0, "bytes_per_vector": 72}]},
]}  # fmt: skip


def test_catalog_curve_fits_a_power_law_through_the_measured_points() -> None:
    curve = catalog_curve(SWEEP, "ivf_sq8", "sweep")
    # the p50 of the cheapest passing row per scale
    assert curve is not None and curve.points == ((1_000_000, 1.0), (10_000_000, 10.0))
    assert curve.p50_ms_at(100_000_000) == pytest.approx(100.0)  # exactly linear through these two
    assert curve.tail_ratio == pytest.approx(3.0)  # p99/p50 of the passing rows at the largest scale
    assert curve.p99_ms_at(100_000_000) == pytest.approx(300.0)
    assert catalog_curve(SWEEP, "hnsw", "sweep") is None


def test_catalog_curve_leaves_out_catalogs_too_small_to_be_dominated_by_the_scan() -> None:
    tiny = {"n": 6_000, "rows": [{"family": "ivf_sq8", "recall_at_100": 0.99, "p50_ms": 0.5, "p99_ms": 9.0,
                                  "bytes_per_vector": 80}]}  # fmt: skip
    curve = catalog_curve({"scales": [tiny, *SWEEP["scales"]]}, "ivf_sq8", "sweep")
    assert curve is not None and curve.points[0] == (6_000, 0.5)  # kept in the report's points...
    assert curve.fitted_points() == ((1_000_000, 1.0), (10_000_000, 10.0))  # ...not in the fit
    assert curve.p50_ms_at(100_000_000) == pytest.approx(100.0)
    assert curve.tail_ratio == pytest.approx(3.0) and curve.bytes_per_vector == 72


def test_capacity_arithmetic_on_known_inputs() -> None:
    cfg = CapacityConfig(users=86_400_000, daily_active_share=0.5, feed_requests_per_dau=10, peak_to_mean=2,
                         videos=100_000_000, dim=64, index_type="ivf_sq8", p99_budget_ms=50, ann_budget_share=0.4,
                         machine_ram_gb=10, index_ram_share=0.5)  # fmt: skip
    m = Inputs(SWEEP, "sweep.json", Measured(100.0, "bench knee"), Measured(1000.0, "redis"))
    rows = {q: (v, how) for q, v, how in capacity_rows(cfg, m)}
    assert rows["mean QPS"][0] == "5,000"  # 86.4M x 0.5 x 10 / 86,400
    assert rows["peak QPS"][0] == "10,000"
    assert (
        rows["online store (user features)"][0] == "86 GB"
        and "redis" in rows["online store (user features)"][1]
    )
    assert rows["index memory per replica"][0] == "7.2 GB"  # 1e8 x 72 B
    # memory: 7.2 / (10 x 0.5) -> 2; latency: p99 100 ms x 3 = 300 ms / (50 x 0.4 = 20 ms) -> 15
    assert rows["shards"][0] == "15"
    assert (
        rows["serving cores at peak (/recommend)"][0] == "100"
        and "bench knee" in rows["serving cores at peak (/recommend)"][1]
    )
    # each query visits 15 shards of 100M/15, p50 100/15 ms each: 10,000 x 15 x 100/15 / 1000 = 1,000
    assert rows["ANN cores at peak (all shards)"][0] == "1,000"


def test_capacity_says_pending_without_reports() -> None:
    rows = {q: v for q, v, _ in capacity_rows(CapacityConfig(), Inputs())}
    assert rows["online store (user features)"] == "pending" and rows["index memory per replica"] == "pending"
    assert rows["serving cores at peak (/recommend)"] == "pending"


def test_measured_inputs_read_the_knee_and_bytes_per_user(tmp_path: Path) -> None:
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "report.json").write_text(json.dumps({"knee": {"per_core_rps_at_slo": 42.0}}))
    (tmp_path / "redis_cluster").mkdir()
    (tmp_path / "redis_cluster" / "report.json").write_text(json.dumps({"online": {"bytes_per_user": 512}}))
    m = measured_inputs(tmp_path)
    assert m.per_core_rps is not None and m.per_core_rps.value == 42.0
    # named from the repository root (here: three levels above the results folder), not as an absolute path
    assert (
        m.per_core_rps.source
        == f"{tmp_path.relative_to(tmp_path.parents[2])}/latest/report.json: knee.per_core_rps_at_slo"
    )
    assert m.bytes_per_user is not None and m.bytes_per_user.value == 512 and m.sweep is None


def test_capacity_rejects_an_unknown_index_type() -> None:
    with pytest.raises(ConfigError, match="--index-type"):
        CapacityConfig(index_type="annoy")
