"""`mlsd recsys sweep`: the catalog curve: each ANN family's recall, latency and memory as the catalog grows.

At each scale the sweep builds IVF-Flat, IVF-SQ8, IVF-PQ (alone, and with its shortlist re-ranked against the
stored fp32 vectors: IndexRefineFlat) and HNSW (only up to --hnsw-max-videos: its build is the slow one), and
measures for every search setting:

  recall@100   against exact inner-product search, on a sample of queries (exact ground truth is a brute-force
               pass over the whole catalog per query, so it is done for --queries queries, not all users)
  batch-1      p50 / p99 ms of one query at a time on ONE thread (the per-core figure serving capacity needs)
  batched      ms per query when all --queries go in one call (all threads)
  bytes/vector the index's serialized size / n (codes + ids + lists), build seconds

and picks, per scale, the setting index.catalog_rule names (recall@100 >= 0.95; within a quarter of Flat's
bytes per vector, the lowest batch-1 p50). The measuring, the rows and the choice are index.py's: the serving
index and this curve are two uses of one module. Then it splits the chosen index over 1, 2 and 4 shards (same
trained quantizer and codec in every shard, the catalog split by id) and measures the fan-out and the merge of
the per-shard top-k.

The vectors: the trained video tower's catalog embeddings when this scale's index step wrote them
(index/catalog_emb.npy); otherwise (no 5M / 10M feed is generated and trained here) vectors drawn from a
Gaussian mixture fitted to the largest trained catalog found (k-means centres + per-cluster diagonal spread,
then unit-normalised), with queries drawn from the same mixture. The report labels which, per scale.
Memory: vectors are drawn and added in batches, PQ and k-means train on a sample, and one family is built at a
time, so xlarge (10M x 64) peaks near three copies of the fp32 catalog (8.1 GB measured, DESIGN.md section 7).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from infra.artifacts import atomic_write
from infra.config import get_settings
from infra.console import print_rows
from systems.recsys_two_tower import layout
from systems.recsys_two_tower.config import SCALES
from systems.recsys_two_tower.index import (
    EXACT,
    FLAT_BYTES_PER_DIM,
    RECALL_TARGET,
    K,
    SweepRow,
    catalog_rule,
    choose,
    exact_top_k,
    index_bytes,
    recall_at_k,
    time_search,
)

ADD_BATCH = 1_000_000  # vectors drawn or added at a time


# ------------------------------------------------------------------------------------------ the vectors
@dataclass(frozen=True)
class Mixture:
    """A diagonal Gaussian mixture over unit vectors: draw a cluster by weight, centre + noise, normalise."""

    centres: np.ndarray  # (C, D)
    spread: np.ndarray  # (C, D) per-cluster std of the residuals
    weights: np.ndarray  # (C,)
    source: str

    def draw(self, n: int, seed: int) -> np.ndarray:
        """(n, D) float32 unit vectors, drawn in batches (peak: the output + one batch)."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.centres.shape[1]), dtype=np.float32)
        for start in range(0, n, ADD_BATCH):
            m = min(ADD_BATCH, n - start)
            c = rng.choice(len(self.weights), size=m, p=self.weights)
            x = self.centres[c] + self.spread[c] * rng.standard_normal(
                (m, self.centres.shape[1]), dtype=np.float32
            )
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[start : start + m] = x
        return out


def fit_mixture(emb: np.ndarray, clusters: int = 64, seed: int = 0, source: str = "") -> Mixture:
    """k-means centres, per-cluster diagonal spread and cluster shares of a trained catalog's embeddings."""
    clusters = max(1, min(clusters, len(emb) // 40))
    km = faiss.Kmeans(emb.shape[1], clusters, niter=20, seed=seed, spherical=False)
    km.train(np.ascontiguousarray(emb, dtype=np.float32))
    _, assign = km.index.search(emb, 1)
    assign = assign.ravel()
    centroids = km.centroids
    assert centroids is not None  # set by train()
    spread = np.stack([
        (emb[assign == c] - centroids[c]).std(axis=0) if (assign == c).sum() > 1 else np.full(emb.shape[1], 0.05)
        for c in range(clusters)
    ]).astype(np.float32)  # fmt: skip
    weights = np.bincount(assign, minlength=clusters).astype(np.float64)
    return Mixture(centroids.astype(np.float32), spread, weights / weights.sum(), source)


def synthetic_mixture(dim: int = 64, clusters: int = 64, seed: int = 0) -> Mixture:
    """A fixed clustered mixture, for tests and for a machine with no trained catalog at all."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = np.full((clusters, dim), 0.6 / math.sqrt(dim), dtype=np.float32)
    weights = rng.pareto(1.5, clusters) + 1
    return Mixture(
        centres, spread, weights / weights.sum(), f"synthetic: {clusters} random clusters in {dim} d"
    )


def trained_catalog(data_root: Path, scale: str) -> np.ndarray | None:
    """This scale's trained catalog embeddings when its index step ran (mmap: not copied)."""
    path = data_root / scale / layout.CATALOG_EMB
    return np.load(path, mmap_mode="r") if path.exists() else None


def largest_trained_catalog(data_root: Path) -> tuple[str, np.ndarray] | None:
    """(scale, embeddings) of the biggest catalog any index step wrote under <data>/recsys/."""
    found = [(s, e) for s in SCALES if (e := trained_catalog(data_root, s)) is not None]
    return max(found, key=lambda se: len(se[1])) if found else None


# ------------------------------------------------------------------------------------------ the plan
@dataclass
class SweepPlan:
    nlist: int
    nprobes: tuple[int, ...]
    pq_m: int
    refine_k_factor: int
    hnsw_m: int
    ef_searches: tuple[int, ...]
    build_hnsw: bool
    hnsw_max_videos: int = 0
    train_points: int = 64  # vectors per list for k-means (sampled)
    families: tuple[str, ...] = ("ivf_flat", "ivf_sq8", "ivf_pq", "ivf_pq_refine", "hnsw")


MAX_NLIST = 8192
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def plan_for(
    n: int,
    dim: int,
    hnsw_max_videos: int,
    families: tuple[str, ...] | None = None,
    max_nlist: int = MAX_NLIST,
    nprobes: tuple[int, ...] = (),
) -> SweepPlan:
    """nlist ~ 4 sqrt(n) rounded to a power of two (at least 16 vectors a list), capped at max_nlist; PQ with 2
    dims per sub-quantizer.

    The cap bounds the build on one core: k-means (64 x nlist sampled points) and the coarse assignment of all n
    vectors both cost n x nlist distance computations, so 16,384 lists at 10M would double the slowest part for
    lists of 610 instead of 1,220 vectors. --nprobes replaces the default grid (e.g. drop settings far below the
    recall target at 5M, where each costs a pass over every query)."""
    nlist = min(max_nlist, 2 ** round(math.log2(max(16.0, min(4 * math.sqrt(n), n / 16)))))
    nprobes = tuple(p for p in (nprobes or NPROBES) if p <= nlist)
    plan = SweepPlan(nlist=nlist, nprobes=nprobes, pq_m=max(1, dim // 2), refine_k_factor=8, hnsw_m=32,
                     ef_searches=(100, 160, 256), build_hnsw=n <= hnsw_max_videos,
                     hnsw_max_videos=hnsw_max_videos)  # fmt: skip
    if families:
        plan.families = families
    return plan


@dataclass
class ScaleResult:
    scale: str
    n: int
    dim: int
    vectors: str  # where the vectors came from
    queries: int
    nlist: int
    rows: list[SweepRow]
    chosen: dict | None
    why: str
    shards: list[dict] = field(default_factory=list)
    hnsw_skipped: str = ""
    exact_s: float = 0.0
    peak_rss_gb: float = 0.0
    threads: int = 0  # the batched timing's threads (batch-1 is always one)
    load_average: list[float] = field(default_factory=list)  # 1/5/15-min load at the end of this scale
    wall_s: float = 0.0  # this scale's whole sweep: vectors, ground truth, every family, shards
    note: str = ""  # what else ran on the machine (--note)


def _ivf(kind: str, quantizer: faiss.Index, dim: int, nlist: int, pq_m: int) -> faiss.IndexIVF:
    ip = faiss.METRIC_INNER_PRODUCT
    q = faiss.clone_index(quantizer)  # trained: the IVF's train() then trains only its codec
    if kind == "ivf_flat":
        return faiss.IndexIVFFlat(q, dim, nlist, ip)
    if kind == "ivf_sq8":
        return faiss.IndexIVFScalarQuantizer(q, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
    return faiss.IndexIVFPQ(q, dim, nlist, pq_m, 8, ip)


def _add_preassigned(index: faiss.IndexIVF, base: np.ndarray, assign: np.ndarray) -> None:
    """add in batches with the coarse assignment computed once for all IVF families (the expensive part)."""
    for start in range(0, len(base), ADD_BATCH):
        x = np.ascontiguousarray(base[start : start + ADD_BATCH], dtype=np.float32)
        a = np.ascontiguousarray(assign[start : start + len(x)])
        ids = np.arange(start, start + len(x), dtype=np.int64)
        index.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(a))
    index.ntotal = len(base)


def peak_rss_gb() -> float:
    """This process's peak resident memory (Linux ru_maxrss is KiB)."""
    import resource  # here: Linux-only, and only the report needs it

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def sweep_scale(
    scale: str,
    base: np.ndarray,
    queries: np.ndarray,
    plan: SweepPlan,
    vectors: str,
    n_single: int = 200,
    seed: int = 0,
    shard_counts: tuple[int, ...] = (1, 2, 4),
    log=print,
) -> ScaleResult:
    """Every family's settings on this catalog, the choice, and the chosen index over 1/2/4 shards."""
    n, dim = base.shape
    t0 = time.perf_counter()
    truth = exact_top_k(base, queries, K, ADD_BATCH)
    exact_s = time.perf_counter() - t0
    log(f"[{scale}] exact top-{K} for {len(queries)} queries over {n:,} vectors in {exact_s:.1f} s")
    rows: list[SweepRow] = []
    flat_p50 = float("nan")
    rng = np.random.default_rng(seed)
    sample = np.ascontiguousarray(
        base[np.sort(rng.choice(n, size=min(n, plan.train_points * plan.nlist), replace=False))]
    )

    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(dim)
    clus = faiss.Clustering(dim, plan.nlist)
    clus.seed, clus.niter = seed, 10
    clus.train(sample, quantizer)
    assign = np.empty(n, dtype=np.int64)
    for start in range(0, n, ADD_BATCH):
        _, a = quantizer.search(np.ascontiguousarray(base[start : start + ADD_BATCH]), 1)
        assign[start : start + len(a)] = a.ravel()
    coarse_s = time.perf_counter() - t0
    log(
        f"[{scale}] k-means nlist={plan.nlist} + coarse assignment in {coarse_s:.1f} s (shared by the IVF families)"
    )

    for kind in ("ivf_flat", "ivf_sq8", "ivf_pq"):
        if kind not in plan.families and not (kind == "ivf_pq" and "ivf_pq_refine" in plan.families):
            continue
        t0 = time.perf_counter()
        index = _ivf(kind, quantizer, dim, plan.nlist, plan.pq_m)
        index.train(sample)
        _add_preassigned(index, base, assign)
        build_s = coarse_s + time.perf_counter() - t0
        names = {
            "ivf_flat": f"IVF{plan.nlist},Flat",
            "ivf_sq8": f"IVF{plan.nlist},SQ8",
            "ivf_pq": f"IVF{plan.nlist},PQ{plan.pq_m}",
        }
        variants: list[tuple[str, faiss.Index, str]] = (
            [(kind, index, names[kind])] if kind in plan.families else []
        )
        if kind == "ivf_pq" and "ivf_pq_refine" in plan.families:
            refine = faiss.IndexRefineFlat(
                index, faiss.swig_ptr(np.ascontiguousarray(base, dtype=np.float32))
            )
            refine.k_factor = plan.refine_k_factor
            variants.append(("ivf_pq_refine", refine, f"{names[kind]} + RFlat x{plan.refine_k_factor}"))
        for family, idx, name in variants:
            size = index_bytes(idx) / n
            for nprobe in plan.nprobes:
                faiss.extract_index_ivf(idx).nprobe = nprobe
                p50, p99, batched, ids = time_search(idx, queries, K, n_single)
                rows.append(SweepRow(family, name, f"nprobe={nprobe}", recall_at_k(ids, truth), p50, p99, batched,
                                     build_s, size, nlist=plan.nlist, nprobe=nprobe, scale=scale, n=n))  # fmt: skip
                log(
                    f"[{scale}] {name:28s} nprobe={nprobe:<4d} recall {rows[-1].recall_at_100:.3f} p50 {p50:.2f} ms"
                )
                if rows[-1].recall_at_100 >= 0.999:
                    break
        del variants, index, idx  # one family in memory at a time (the shards rebuild from the quantizer)

    hnsw_skipped = ""
    if "hnsw" in plan.families and plan.build_hnsw:
        t0 = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, plan.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 40
        for start in range(0, n, ADD_BATCH):
            hnsw.add(np.ascontiguousarray(base[start : start + ADD_BATCH]))
        build_s = time.perf_counter() - t0
        size = index_bytes(hnsw) / n
        for ef in plan.ef_searches:
            hnsw.hnsw.efSearch = ef
            p50, p99, batched, ids = time_search(hnsw, queries, K, n_single)
            rows.append(SweepRow("hnsw", f"HNSW{plan.hnsw_m},Flat", f"efSearch={ef}", recall_at_k(ids, truth), p50,
                                 p99, batched, build_s, size, ef_search=ef, scale=scale, n=n))  # fmt: skip
            log(
                f"[{scale}] HNSW{plan.hnsw_m} efSearch={ef} recall {rows[-1].recall_at_100:.3f} p50 {p50:.2f} ms"
            )
            if rows[-1].recall_at_100 >= 0.999:
                break
        del hnsw
    elif "hnsw" in plan.families:
        hnsw_skipped = (
            f"HNSW not built at {n:,} vectors (over --hnsw-max-videos {plan.hnsw_max_videos:,}): its graph build "
            "(efConstruction 40, M 32) is the slow one here and would not fit the sweep's time"
        )

    flat = faiss.IndexFlatIP(dim)
    flat.add(np.ascontiguousarray(base[: min(n, ADD_BATCH)]))
    flat_p50, flat_p99, _, _ = time_search(flat, queries, K, min(n_single, 50))
    scale_f = (
        n / flat.ntotal
    )  # brute force is linear in n: time 1M and scale (the full pass is the ground truth)
    rows.append(SweepRow(EXACT, "Flat (exact)", f"timed on {flat.ntotal:,}, x{scale_f:.0f}", 1.0, flat_p50 * scale_f,
                         flat_p99 * scale_f, exact_s * 1000 / len(queries), 0.0, dim * FLAT_BYTES_PER_DIM,
                         distances_per_query=n, scale=scale, n=n))  # fmt: skip
    del flat

    best, why = choose(rows, catalog_rule(dim))
    log(f"[{scale}] chosen: {why}")
    shards = []
    if best is not None and best.family.startswith("ivf"):
        shards = measure_shards(
            best, base, queries, quantizer, assign, sample, plan, truth, shard_counts, n_single
        )
    return ScaleResult(scale, n, dim, vectors, len(queries), plan.nlist, rows, asdict(best) if best else None,
                       why, shards, hnsw_skipped, exact_s, peak_rss_gb())  # fmt: skip


# ------------------------------------------------------------------------------------------ shards
@dataclass
class Shard:
    """One shard: an index over catalog rows [offset, offset + ntotal), numbered locally from 0."""

    index: faiss.Index
    offset: int


def build_shards(
    family: str,
    base: np.ndarray,
    quantizer: faiss.Index,
    assign: np.ndarray,
    sample: np.ndarray,
    plan: SweepPlan,
    n_shards: int,
) -> list[Shard]:
    """The catalog split by id into n_shards contiguous ranges, each an IVF with the SAME trained quantizer and
    codec: a shard searched with the same nprobe probes the same lists as the whole index, so the merged top k
    equals the single index's (tests/recsys: test_shards_match_one_index)."""
    kind = "ivf_pq" if family == "ivf_pq_refine" else family
    template = _ivf(kind, quantizer, base.shape[1], plan.nlist, plan.pq_m)
    template.train(sample)
    bounds = np.linspace(0, len(base), n_shards + 1).astype(int)
    shards = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        shard = faiss.clone_index(template)
        # clone_index hands back the concrete class (its stub says Index)
        assert isinstance(shard, faiss.IndexIVF)
        _add_preassigned(shard, base[lo:hi], assign[lo:hi])
        if family == "ivf_pq_refine":
            shard = faiss.IndexRefineFlat(
                shard, faiss.swig_ptr(np.ascontiguousarray(base[lo:hi], dtype=np.float32))
            )
            shard.k_factor = plan.refine_k_factor
        shards.append(Shard(shard, int(lo)))
    return shards


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    faiss.extract_index_ivf(index).nprobe = nprobe


def merge_top_k(dists: list[np.ndarray], ids: list[np.ndarray], k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """The k best (highest inner product) of the shards' top-k lists (global ids): the fan-out's merge step."""
    d_all, i_all = np.hstack(dists), np.hstack(ids)
    top = np.argsort(-d_all, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d_all, top, 1), np.take_along_axis(i_all, top, 1)


def _global(ids: np.ndarray, offset: int) -> np.ndarray:
    return np.where(ids >= 0, ids + offset, -1)


def search_shards(shards: list[Shard], queries: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Fan-out (each shard's top k, local ids made global) + merge: what a root server does over shard servers."""
    parts = [(s.index.search(queries, k), s.offset) for s in shards]
    return merge_top_k([d for (d, _), _ in parts], [_global(i, off) for (_, i), off in parts], k)


def measure_shards(
    best: SweepRow,
    base: np.ndarray,
    queries: np.ndarray,
    quantizer: faiss.Index,
    assign: np.ndarray,
    sample: np.ndarray,
    plan: SweepPlan,
    truth: np.ndarray,
    shard_counts: tuple[int, ...],
    n_single: int,
) -> list[dict]:
    """Per shard count: the slowest shard's batch-1 p50/p99 (the wall time when shards sit on separate
    machines and run in parallel), the merge's ms, recall, and each shard's memory."""
    nprobe = best.nprobe
    out = []
    threads = faiss.omp_get_max_threads()
    for s in shard_counts:
        shards = build_shards(best.family, base, quantizer, assign, sample, plan, s)
        for sh in shards:
            set_nprobe(sh.index, nprobe)
        faiss.omp_set_num_threads(1)
        per_shard = np.zeros((s, min(n_single, len(queries))))
        merge_ms = []
        for qi, q in enumerate(queries[:n_single]):
            parts = []
            for si, sh in enumerate(shards):
                t0 = time.perf_counter()
                d, i = sh.index.search(q[None, :], K)
                per_shard[si, qi] = (time.perf_counter() - t0) * 1000
                parts.append((d, _global(i, sh.offset)))
            t0 = time.perf_counter()
            merge_top_k([p[0] for p in parts], [p[1] for p in parts])
            merge_ms.append((time.perf_counter() - t0) * 1000)
        faiss.omp_set_num_threads(threads)
        _, ids = search_shards(shards, queries)
        slowest = per_shard.max(axis=0)
        out.append({
            "shards": s, "recall_at_100": recall_at_k(ids, truth),
            "slowest_shard_p50_ms": float(np.percentile(slowest, 50)),
            "slowest_shard_p99_ms": float(np.percentile(slowest, 99)),
            "serial_fanout_p50_ms": float(np.percentile(per_shard.sum(axis=0), 50)),
            "merge_p50_ms": float(np.percentile(merge_ms, 50)), "merge_p99_ms": float(np.percentile(merge_ms, 99)),
            "gb_per_shard": max(index_bytes(sh.index) for sh in shards) / 1e9,
        })  # fmt: skip
        del shards
    return out


# ------------------------------------------------------------------------------------------ the whole sweep
def vectors_for(
    scale: str, n: int, data_root: Path, seed: int
) -> tuple[np.ndarray, np.ndarray | None, str, Mixture | None]:
    """(catalog, None, label, None) from the trained tower, or (catalog drawn, None, label, mixture)."""
    trained = trained_catalog(data_root, scale)
    if trained is not None and len(trained) == n:
        return trained, None, f"trained video tower ({scale} index step, {n:,} videos)", None
    found = largest_trained_catalog(data_root)
    mixture = (
        fit_mixture(np.asarray(found[1][:200_000], dtype=np.float32), seed=seed,
                    source=f"fitted to the {found[0]} scale's trained video-tower embeddings ({len(found[1]):,} videos)")
        if found else synthetic_mixture(seed=seed)
    )  # fmt: skip
    label = f"drawn from a 64-cluster diagonal Gaussian mixture {mixture.source}"
    return mixture.draw(n, seed), None, label, mixture


def run_sweep(
    scales: list[str],
    n_queries: int,
    hnsw_max_videos: int,
    out: Path,
    seed: int = 0,
    families: tuple[str, ...] | None = None,
    n_single: int = 200,
    sizes: dict[str, int] | None = None,
    log=print,
    max_nlist: int = MAX_NLIST,
    nprobes: tuple[int, ...] = (),
    note: str = "",
) -> dict:
    """Sweep each scale in turn (freeing its catalog before the next), write out/report.json + report.md + plots.

    The report folder keeps the scales this run did not sweep (write_report merges by scale), so
    `--scales large` adds the large rows and the plots' large point to a report that already has small + medium."""
    data_root = get_settings().data_dir / "recsys"
    results = []
    for scale in scales:
        t0 = time.perf_counter()
        n = (sizes or {}).get(scale) or SCALES[scale].n_videos
        base, _, label, mixture = vectors_for(scale, n, data_root, seed)
        queries = (mixture.draw(n_queries, seed + 1) if mixture is not None else
                   np.ascontiguousarray(base[np.random.default_rng(seed + 1).choice(n, n_queries, replace=False)]))  # fmt: skip
        if mixture is None:
            label += "; queries: catalog vectors as queries (the user vectors are not saved per scale)"
        else:
            label += "; queries drawn from the same mixture"
        plan = plan_for(n, base.shape[1], hnsw_max_videos, families, max_nlist, nprobes)
        res = sweep_scale(scale, base, queries, plan, label, n_single=n_single, seed=seed, log=log)
        del base
        res.threads, res.load_average = faiss.omp_get_max_threads(), list(os.getloadavg())
        res.wall_s, res.note = time.perf_counter() - t0, note
        results.append(res)
        report = {"k": K, "recall_target": RECALL_TARGET, "scales": [asdict(r) for r in results],
                  "load_average": res.load_average, "threads": res.threads}  # fmt: skip
        write_report(report, out)
    return report


def print_catalog_curve(report: dict, out: Path) -> None:
    """The choice per scale, where the whole report went."""
    print_rows(f"catalog curve -> {out}/report.md", ("scale", "videos", "chosen", "why"),
               [(s["scale"], s["n"], s["chosen"]["index"] + " " + s["chosen"]["param"] if s["chosen"] else "-",
                 s["why"]) for s in report["scales"]])  # fmt: skip


def write_report(report: dict, out: Path) -> None:
    """report.json, report.md (tables per scale) and the two plots, merged with scales already in the folder."""
    out.mkdir(parents=True, exist_ok=True)
    old = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    # a scale written before threads/load were kept per scale takes its report's run-wide values
    kept = [{"threads": old.get("threads", 0), "load_average": old.get("load_average", [])} | s
            for s in old.get("scales", [])]  # fmt: skip
    by_scale = {s["scale"]: s for s in kept} | {s["scale"]: s for s in report["scales"]}
    order = sorted(by_scale, key=lambda s: by_scale[s]["n"])
    merged = report | {"scales": [by_scale[s] for s in order]}
    for name, text in (("report.json", json.dumps(merged, indent=2)), ("report.md", report_markdown(merged))):
        with atomic_write(out / name, "w") as f:
            f.write(text)
    plot(merged, out)


def report_markdown(report: dict) -> str:
    lines = [
        "# recsys catalog curve (`mlsd recsys sweep`)",
        "",
        f"recall@{report['k']} vs exact inner product; batch-1 p50/p99 on one thread; batched = all queries in "
        "one call (threads and the 1/5/15-min load average at the end of each scale in its heading).",
        "",
        "## chosen per scale (cheapest with recall@100 >= 0.95)",
        "",
        "| scale | videos | vectors | chosen | why |",
        "|---|---|---|---|---|",
    ]
    for s in report["scales"]:
        c = s["chosen"]
        lines.append(
            f"| {s['scale']} | {s['n']:,} | {s['vectors']} | {c['index'] + ' ' + c['param'] if c else '-'} | {s['why']} |"
        )
    for s in report["scales"]:
        lines += [
            "",
            f"## {s['scale']}: {s['n']:,} videos, {s['queries']} queries, nlist {s['nlist']}, "
            f"exact ground truth {s['exact_s']:.0f} s, peak RSS {s['peak_rss_gb']:.1f} GB",
            "",
            f"batched on {s['threads']} thread(s); load average {', '.join(f'{x:.1f}' for x in s['load_average'])}"
            + (f"; whole scale {s['wall_s'] / 60:.0f} min" if s.get("wall_s") else "")
            + (f"; {s['note']}" if s.get("note") else ""),
            "",
        ]
        if s["hnsw_skipped"]:
            lines += [s["hnsw_skipped"], ""]
        lines += [
            "| index | setting | recall@100 | p50 ms | p99 ms | batched ms/q | B/vector | build s | |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in s["rows"]:
            lines.append(
                f"| {r['index']} | {r['param']} | {r['recall_at_100']:.3f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['batched_ms']:.3f} | {r['bytes_per_vector']:.0f} | "
                f"{r['build_s']:.0f} | {'← chosen' if r['chosen'] else ''} |"
            )
        if s["shards"]:
            lines += ["", "shards of the chosen index (one thread; 'slowest shard' = the wall time with shards on "
                      "separate machines searched in parallel, before the network):", "",
                      "| shards | recall@100 | slowest shard p50 / p99 ms | serial fan-out p50 ms | merge p50 / p99 ms | GB per shard |",
                      "|---|---|---|---|---|---|"]  # fmt: skip
            for sh in s["shards"]:
                lines.append(
                    f"| {sh['shards']} | {sh['recall_at_100']:.3f} | {sh['slowest_shard_p50_ms']:.2f} / "
                    f"{sh['slowest_shard_p99_ms']:.2f} | {sh['serial_fanout_p50_ms']:.2f} | "
                    f"{sh['merge_p50_ms']:.3f} / {sh['merge_p99_ms']:.3f} | {sh['gb_per_shard']:.2f} |"
                )
    lines += [
        "",
        "![recall vs latency](frontier.png)",
        "",
        "![latency vs catalog size](catalog_curve.png)",
        "",
    ]
    return "\n".join(lines)


FAMILY_LABEL = {"ivf_flat": "IVF-Flat", "ivf_sq8": "IVF-SQ8", "ivf_pq": "IVF-PQ", "ivf_pq_refine": "IVF-PQ + refine",
                "hnsw": "HNSW", "flat": "Flat"}  # fmt: skip


def plot(report: dict, out: Path) -> None:
    """frontier.png (recall vs batch-1 p50, one panel per scale) and catalog_curve.png (best passing p50 per
    family vs catalog size)."""
    import matplotlib  # here, not at the top: slow to import and only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use (a headless backend)

    scales = report["scales"]
    fig, axes = plt.subplots(1, len(scales), figsize=(5 * len(scales), 4), squeeze=False)
    for ax, s in zip(axes[0], scales, strict=True):
        for fam in FAMILY_LABEL:
            rows = [r for r in s["rows"] if r["family"] == fam and fam != "flat"]
            if rows:
                ax.plot(
                    [r["p50_ms"] for r in rows],
                    [r["recall_at_100"] for r in rows],
                    "o-",
                    label=FAMILY_LABEL[fam],
                )
        ax.axhline(report["recall_target"], color="grey", ls="--", lw=0.8)
        ax.set(
            xscale="log",
            xlabel="batch-1 p50 ms (1 thread)",
            ylabel="recall@100",
            title=f"{s['scale']}: {s['n']:,}",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "frontier.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for fam in FAMILY_LABEL:
        pts = []
        for s in scales:
            ok = [
                r for r in s["rows"] if r["family"] == fam and r["recall_at_100"] >= report["recall_target"]
            ]
            if ok:
                pts.append((s["n"], min(r["p50_ms"] for r in ok)))
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=FAMILY_LABEL[fam])
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="videos in the catalog",
        ylabel="batch-1 p50 ms at recall@100 >= 0.95",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "catalog_curve.png", dpi=90)
    plt.close(fig)
