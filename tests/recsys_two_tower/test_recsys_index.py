"""The index step's sweep (index.py): IVF-Flat, IVF fast-scan PQ + refine and HNSW on one catalog, the SERVING
rule's choice between them, and the serving file keeping the chosen setting. Synthetic unit vectors from
sweep.synthetic_mixture (clustered, like a trained catalog); all fast."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np

from systems.recsys_two_tower.index import (
    HNSW_EF_SEARCH,
    PQFS_K_FACTORS,
    SERVING,
    SweepRow,
    ann_setting,
    apply_setting,
    choose,
    exact_index,
    maybe_gpu,
    query_gap,
    sweep,
)
from systems.recsys_two_tower.sweep import synthetic_mixture


def _row(family: str, recall: float, ms: float, distances: int, nlist: int = 256) -> SweepRow:
    ef = 256 if family == "hnsw" else 0
    return SweepRow(family, family, "", recall, ms, 2 * ms, ms / 2, distances_per_query=distances,
                    nlist=0 if ef else nlist, nprobe=0 if ef else 8, ef_search=ef)  # fmt: skip


def _pick(rows: list[SweepRow]) -> SweepRow:
    """What the index step serves: the SERVING rule's pick, else exact (rows[0])."""
    return choose(rows, SERVING)[0] or rows[0]


def test_choose_fewest_distances_within_ivf_flat_else_the_clock_then_the_faster_family() -> None:
    exact = _row("flat", 1.0, 9.0, 100_000, nlist=0)
    ivf_cheap = _row("ivf_flat", 0.96, 2.0, 5_000)
    ivf_dear = _row("ivf_flat", 0.99, 1.5, 9_000)  # faster by the clock, more distances: clock noise
    pq_slow = _row("ivf_pqfs_refine", 0.97, 1.2, 3_000)  # fewest distances, but a code is not a vector
    pq_fast = _row("ivf_pqfs_refine", 0.96, 0.6, 8_000)
    hnsw = _row("hnsw", 0.97, 0.8, 7_000)
    miss = _row("hnsw", 0.90, 0.1, 900)  # fastest of all, misses recall
    assert _pick([exact, ivf_cheap, ivf_dear, pq_slow, pq_fast, hnsw, miss]) is pq_fast
    assert _pick([exact, ivf_cheap, ivf_dear, hnsw]) is hnsw  # 0.8 ms beats ivf_flat's pick at 2.0 ms
    assert _pick([exact, ivf_cheap, ivf_dear]) is ivf_cheap  # one family: the deterministic count decides
    assert _pick([exact, miss]) is exact  # nothing passes: exact search


def test_sweep_of_every_family_counts_distances_and_saves_the_chosen_setting(tmp_path: Path) -> None:
    m = synthetic_mixture(dim=16, clusters=16)
    emb, queries = m.draw(4000, 0), m.draw(30, 1)
    rows, info = sweep(emb, queries, (128,), families=("ivf_flat", "ivf_pqfs_refine", "hnsw"))
    assert {r.family for r in rows} == {"flat", "ivf_flat", "ivf_pqfs_refine", "hnsw"}
    pq = [r for r in rows if r.family == "ivf_pqfs_refine"]
    assert {r.k_factor for r in pq} == set(PQFS_K_FACTORS) and pq[0].build_s > 0
    # at one nprobe a longer exactly re-scored shortlist never loses recall
    by_nprobe = {(r.nprobe, r.k_factor): r.recall_at_100 for r in pq}
    assert all(by_nprobe[(n, 8)] >= by_nprobe[(n, 4)] for n, _ in by_nprobe)
    hnsw = [r for r in rows if r.ef_search]
    assert [r.ef_search for r in hnsw] == list(HNSW_EF_SEARCH)
    # the walk's distance count comes from faiss, is below a full scan and grows with efSearch
    counts = [r.distances_per_query for r in hnsw]
    assert 0 < counts[0] < len(emb) and counts == sorted(counts)
    assert hnsw[0].build_s > 0 and all(r.build_s == 0 for r in hnsw[1:])
    assert sum(r.chosen for r in rows) == 1
    # every row carries its setting as text and its memory; batch-1 timed as the server searches (p50 <= p99)
    assert all(r.param == ann_setting(asdict(r)) for r in rows[1:]) and all(
        r.bytes_per_vector > 0 for r in rows
    )
    assert all(0 < r.p50_ms <= r.p99_ms for r in rows)
    best = info["best"]
    assert best["recall_at_100"] >= 0.95
    # whichever family won, the saved index searches with the chosen setting and gives the swept recall
    _, want = faiss.knn(queries, emb, 100, faiss.METRIC_INNER_PRODUCT)
    for row in (r for r in rows if r.family != "flat" and r.recall_at_100 >= 0.95):
        # any family: the saved file searches with the row's setting and gives the swept recall at the server's k
        index = info["indexes"][row.index]
        apply_setting(index, {"ef_search": row.ef_search, "nlist": row.nlist, "nprobe": row.nprobe,
                              "k_factor": row.k_factor})  # fmt: skip
        path = tmp_path / "serving.faiss"
        faiss.write_index(index, str(path))
        _, got = faiss.read_index(str(path)).search(queries, 250)
        hits = sum(len(np.intersect1d(g[:100], w)) for g, w in zip(got, want, strict=True))
        assert abs(hits / want.size - row.recall_at_100) < 1e-9, row


def test_hnsw_stays_on_the_cpu_and_settings_read_as_text() -> None:
    m = synthetic_mixture(dim=8, clusters=4)
    index = faiss.IndexHNSWFlat(8, 8, faiss.METRIC_INNER_PRODUCT)
    index.add(m.draw(200, 0))
    assert maybe_gpu(index) is index  # faiss has no GPU HNSW: never handed to index_cpu_to_gpu
    assert ann_setting({"ef_search": 384, "nlist": 0, "nprobe": 0}) == "efSearch=384"
    assert ann_setting({"ef_search": 0, "nlist": 4096, "nprobe": 96}) == "nprobe=96"
    assert ann_setting({"nlist": 2048, "nprobe": 256, "k_factor": 8}) == "nprobe=256, k_factor=8"
    assert ann_setting({"nlist": 0, "nprobe": 0}) == "exact"


def test_query_gap_tells_in_distribution_queries_from_far_ones() -> None:
    m = synthetic_mixture(dim=16, clusters=8)
    emb = m.draw(3000, 0)
    near = query_gap(emb, m.draw(50, 1), exact_index(emb))  # queries drawn like the videos
    far = np.random.default_rng(2).standard_normal((50, 16)).astype(np.float32)
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    gap = query_gap(emb, far, exact_index(emb))  # random directions: not like any video
    assert near["video_100th_neighbour_score_median"] == gap["video_100th_neighbour_score_median"]
    assert near["query_best_score_median"] > gap["query_best_score_median"]
    assert 0 < gap["query_best_score_median"] < near["query_best_score_median"] <= 1.0 + 1e-6
