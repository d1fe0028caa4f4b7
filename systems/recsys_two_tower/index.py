"""Building, measuring and choosing ANN indexes, for the system's two uses of them:

- the `index` step (`run_index`): embed the whole catalog with the video tower, sweep the serving families on it,
  save the setting the SERVING rule picks as the server's index;
- the catalog curve (`mlsd recsys sweep`, sweep.py): the same measurement at each catalog size, the pick by
  `catalog_rule` (a memory budget first).

Both measure a setting the same way (`time_search`: batch-1 p50/p99 on one thread, as a server core searches, and
batched; `recall_at_k` against exact inner product) into the same `SweepRow`, and pick with the same `choose`;
each use's rule is stated once, beside `Rule`.

The index step's queries are user-tower vectors of held-out users as of the split (`user_vectors`; evaluation
asks the same). Exact IndexFlatIP is the reference (and what evaluation uses). The serving families
(INDEX_FAMILIES):
- ivf_flat: IVF-Flat at each nlist and nprobe;
- ivf_pqfs_refine: IVF with 4-bit fast-scan PQ codes (one sub-quantizer per dimension) whose shortlist of
  k_factor x k is re-scored against the stored fp32 vectors (IndexRefineFlat): a cheap scan of many lists, an
  exact order at the end;
- hnsw: an HNSW32 graph at several efSearch.
Every row is timed at the server's k (SERVE_K). IVF-Flat moves to the GPU when faiss sees one; the others stay
on the CPU.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch

from infra.console import console, print_rows, progress
from systems.recsys_two_tower import layout
from systems.recsys_two_tower.config import INDEX_FAMILIES
from systems.recsys_two_tower.data import Feed
from systems.recsys_two_tower.features.definitions import USER_COLS
from systems.recsys_two_tower.features.repo import RecsysFeatures
from systems.recsys_two_tower.features.transform import user_inputs, video_inputs
from systems.recsys_two_tower.model import TwoTower

log = logging.getLogger("mlsd.recsys")

RECALL_TARGET = 0.95
K = 100  # recall@K against exact search
EXACT = "flat"  # the family of the exact (Flat) rows: the reference, never chosen by a rule
FLAT_BYTES_PER_DIM = 4  # fp32
SERVE_K = 250  # what /recommend asks the index for: rank.CANDIDATES + serve.MARGIN (the seen filter's margin)
IVF_NPROBES = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512)
PQFS_NPROBES = (64, 128, 192, 256, 384, 512)
PQFS_K_FACTORS = (4, 8)  # the shortlist re-scored exactly: k_factor x k
HNSW_M = 32
# efSearch values the HNSW family sweeps. faiss's HNSW explores efSearch nodes whatever k is, so an efSearch under
# SERVE_K would fill the candidate list's tail with whatever the walk happened to visit: the sweep starts at 256.
HNSW_EF_SEARCH = (256, 384, 512, 768, 1024)


def catalog_frame(feed: Feed, features: RecsysFeatures, as_of_ts: int) -> pd.DataFrame:
    """Every video's content and popularity features as of as_of_ts (a point-in-time read from Feast)."""
    entity_df = pd.DataFrame(
        {"video_id": feed.videos["video_id"].to_numpy(),
         "event_timestamp": pd.Timestamp(as_of_ts, unit="s", tz="UTC")}
    )  # fmt: skip
    frame = features.repo.historical(entity_df, features.catalog)
    return frame.fillna({"topic": 0, "creator_id": 0, "duration_s": 1, "upload_ts": as_of_ts})


@torch.no_grad()
def embed_catalog(
    model: TwoTower,
    frame: pd.DataFrame,
    seen: np.ndarray,
    as_of_ts: int,
    batch: int = 65_536,
    quiet: bool = False,
) -> np.ndarray:
    """(n_videos, D) float32 unit vectors, row i = video i."""
    out = np.empty((len(frame), model.cfg.out_dim), dtype=np.float32)
    for start in progress(range(0, len(frame), batch), "embed catalog (batches)", disable=quiet):
        part = frame.iloc[start : start + batch]
        tensors = [torch.from_numpy(a) for a in video_inputs(part, model.cfg, seen, as_of_ts)]
        out[start : start + len(part)] = model.video(*tensors).numpy()
    return out


def user_frame(features: RecsysFeatures, users: np.ndarray, as_of_ts: int) -> pd.DataFrame:
    """The users' user_stats rows as of as_of_ts (point-in-time: nothing later)."""
    entity_df = pd.DataFrame(
        {"user_id": users, "event_timestamp": pd.Timestamp(as_of_ts, unit="s", tz="UTC")}
    )
    return features.repo.historical(entity_df, features.user_serving)


def embed_users(model: TwoTower, frame: pd.DataFrame, seen_videos: np.ndarray) -> np.ndarray:
    """(len(frame), D) user-tower vectors from user_stats rows."""
    inputs = user_inputs({c: frame[c] for c in ["user_id", *USER_COLS]}, model.cfg, seen_videos)
    with torch.no_grad():
        return model.user(*[torch.from_numpy(a) for a in inputs]).numpy()


def user_vectors(
    model: TwoTower, features: RecsysFeatures, users: np.ndarray, as_of_ts: int, seen_videos: np.ndarray
) -> np.ndarray:
    """(len(users), D) user-tower vectors from features as of as_of_ts (point-in-time: nothing later)."""
    return embed_users(model, user_frame(features, users, as_of_ts), seen_videos)


def maybe_gpu(index: faiss.Index) -> faiss.Index:
    """The same index on GPU 0 when faiss was built with GPU support and sees a device. Only IVF-Flat and exact
    Flat move: faiss has no GPU HNSW, no GPU fast-scan PQ; the others stay on the CPU. Logs which is in use."""
    if not isinstance(index, (faiss.IndexIVFFlat, faiss.IndexFlat)):
        log.info("FAISS %s: %s over %d vectors (%s), on the CPU (%d threads)", faiss.__version__,
                 type(index).__name__, index.ntotal, setting_of(index), faiss.omp_get_max_threads())  # fmt: skip
        return index
    nprobe = getattr(faiss.try_extract_index_ivf(index), "nprobe", None)
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        if nprobe is not None:
            faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", nprobe)
        log.info(
            "FAISS %s: %s over %d vectors, nprobe %s, on GPU 0",
            faiss.__version__,
            type(gpu).__name__,
            index.ntotal,
            nprobe,
        )
        return gpu
    log.info("FAISS %s: %s over %d vectors, nprobe %s, on the CPU (%d threads)", faiss.__version__,
             type(index).__name__, index.ntotal, nprobe, faiss.omp_get_max_threads())  # fmt: skip
    return index


def exact_index(emb: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    return index


def ivf_index(emb: np.ndarray, nlist: int, seed: int = 0, train_points: int = 128) -> faiss.IndexIVFFlat:
    """IVF-Flat with inner product; k-means on at most train_points * nlist sampled vectors."""
    quantizer = faiss.IndexFlatIP(emb.shape[1])
    index = faiss.IndexIVFFlat(quantizer, emb.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = emb[rng.choice(len(emb), size=min(len(emb), train_points * nlist), replace=False)]
    index.cp.seed = seed
    index.train(sample)
    index.add(emb)
    return index


def setting_of(index: faiss.Index) -> str:
    """The search setting a loaded index carries, as text (for logs)."""
    if isinstance(index, faiss.IndexHNSW):
        return f"efSearch={index.hnsw.efSearch}"
    parts = []
    if (ivf := faiss.try_extract_index_ivf(index)) is not None:
        parts.append(f"nprobe={ivf.nprobe}")
    if isinstance(index, faiss.IndexRefine):
        parts.append(f"k_factor={index.k_factor:g}")
    return ", ".join(parts) or "exact"


def pqfs_refine_index(
    emb: np.ndarray, nlist: int, seed: int = 0, train_points: int = 128
) -> faiss.IndexRefineFlat:
    """IVF + 4-bit fast-scan PQ (one sub-quantizer per dimension), shortlist re-scored against fp32 vectors."""
    index = faiss.index_factory(
        emb.shape[1], f"IVF{nlist},PQ{emb.shape[1]}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT
    )
    rng = np.random.default_rng(seed)
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(emb[rng.choice(len(emb), size=min(len(emb), train_points * nlist), replace=False)])
    index.add(emb)
    assert isinstance(index, faiss.IndexRefineFlat)  # index_factory hands back the IndexRefineFlat itself
    return index  # so k_factor is set on it


def hnsw_index(emb: np.ndarray, m: int, ef_construction: int = 40) -> faiss.IndexHNSWFlat:
    """HNSW (M links per node, inner product) over every vector; the build is the graph, there is no training."""
    index = faiss.IndexHNSWFlat(emb.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    for start in progress(range(0, len(emb), 100_000), f"HNSW{m} build (100k vectors)"):
        index.add(emb[start : start + 100_000])
    return index


# ------------------------------------------------------------------------------------------ measuring and choosing
# Both uses of this module measure a setting the same way and pick with one function; only their rule differs.
@dataclass
class SweepRow:
    """One search setting of one index, measured: recall@100 against exact search, batch-1 latency on one thread
    (the server's way), batched latency, memory. `param` is the setting as text (nprobe=32, efSearch=256)."""

    family: str  # INDEX_FAMILIES or the catalog curve's (ivf_flat, ivf_sq8, ivf_pq, ivf_pq_refine, hnsw), or exact
    index: str  # the factory-style name, e.g. IVF4096,Flat
    param: str
    recall_at_100: float
    p50_ms: float  # one query at a time on one thread
    p99_ms: float
    batched_ms: float  # per query, all queries in one call on all threads
    build_s: float = 0.0  # the index's build (k-means + adds, or the graph), on its first row
    bytes_per_vector: float = 0.0  # the serialized index over its vectors: what a replica holds in RAM
    distances_per_query: int = 0  # counted, so deterministic (IVF: centroids + probed lists [+ re-scored])
    nlist: int = 0
    nprobe: int = 0
    ef_search: int = 0  # HNSW rows only
    k_factor: int = 0  # refine rows only: the shortlist re-scored exactly is k_factor x k
    scale: str = ""  # the catalog curve's rows: which scale, how many vectors
    n: int = 0
    chosen: bool = False


@dataclass(frozen=True)
class Rule:
    """How a use of this module picks among the settings with recall@100 >= RECALL_TARGET (exact rows never)."""

    max_bytes_per_vector: float | None  # settings over it are passed over while a passing one fits
    ivf_flat_by_distances: bool  # within IVF-Flat, the fewest distances per query instead of the clock


# The serving index (`index` step): within IVF-Flat the fewest distance computations per query (the same work
# costs the same, so a count beats a noisy clock), within the other families and across families the lower batch-1
# p50, as a code scan, a re-scoring and a graph walk cost differently per distance. No memory budget: one
# machine's catalog.
SERVING = Rule(max_bytes_per_vector=None, ivf_flat_by_distances=True)


def catalog_rule(dim: int) -> Rule:
    """The catalog curve (`sweep` step): within a quarter of Flat's bytes per vector, the lowest batch-1 p50.
    Memory first because every serving replica holds the whole index in RAM (it multiplies by replicas x shards);
    among those that fit, latency, because that is the p99 budget's scarce part."""
    return Rule(max_bytes_per_vector=dim * FLAT_BYTES_PER_DIM / 4, ivf_flat_by_distances=False)


def choose(rows: list[SweepRow], rule: Rule) -> tuple[SweepRow | None, str]:
    """The row `rule` picks (marked chosen) and why; (None, why) when no setting reaches RECALL_TARGET. With no
    passing row within the memory budget, the rule's pick among all passing rows, and the reason says so."""
    passing = [r for r in rows if r.recall_at_100 >= RECALL_TARGET and r.family != EXACT]
    if not passing:
        return None, f"no setting reached recall@100 >= {RECALL_TARGET}"
    budget = rule.max_bytes_per_vector
    fits = [r for r in passing if budget is None or r.bytes_per_vector <= budget]
    pool = fits or passing
    families: dict[str, list[SweepRow]] = {}
    for r in pool:
        families.setdefault(r.family, []).append(r)
    per_family = [
        min(rs, key=lambda r: r.distances_per_query)
        if family == "ivf_flat" and rule.ivf_flat_by_distances
        else min(rs, key=lambda r: (r.p50_ms, r.bytes_per_vector))
        for family, rs in families.items()
    ]
    best = min(per_family, key=lambda r: (r.p50_ms, r.bytes_per_vector))
    best.chosen = True
    faster = [r for r in rows if r.p50_ms < best.p50_ms and r.family != EXACT]
    within = budget is not None and bool(fits)
    why = (
        f"{best.index} {best.param}: recall@100 {best.recall_at_100:.3f} >= {RECALL_TARGET}, "
        f"{best.bytes_per_vector:.0f} B/vector"
        + (f" (<= budget {budget:.0f})" if within else "")
        + f", batch-1 p50 {best.p50_ms:.2f} ms, the pick of {len(pool)} passing settings"
        + (" within the memory budget" if within else "")
        + (
            f"; none of the {len(passing)} passing settings fit {budget:.0f} B/vector"
            if budget and not fits
            else ""
        )
        + (
            f"; the {len(faster)} faster settings miss recall or memory, or lose on distances"
            if faster
            else ""
        )
    )
    return best, why


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approx top k ∩ exact top k| / k (approx may hold -1 for "no result")."""
    return float(
        np.mean([len(np.intersect1d(a[a >= 0], e)) / e.size for a, e in zip(approx, exact, strict=True)])
    )


def time_search(
    index: faiss.Index, queries: np.ndarray, k: int, n_single: int
) -> tuple[float, float, float, np.ndarray]:
    """(p50 ms, p99 ms) of one query at a time on ONE thread (what a server core does), batched ms per query with
    all queries in one call on all threads, and the batched search's ids (k per query)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    lat = []
    try:
        for q in queries[:n_single]:
            t0 = time.perf_counter()
            index.search(q[None, :], k)
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    _, ids = index.search(queries, k)
    batched = (time.perf_counter() - t0) * 1000 / len(queries)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), batched, ids


def index_bytes(index: faiss.Index) -> int:
    """The index's serialized size: what a replica holds in RAM (codes, ids, lists, quantizer).

    Counted as faiss writes it, not with faiss.serialize_index: that builds the whole byte string (a growing
    buffer, then a numpy copy), up to ~2.5 extra copies of the index at the moment memory peaks (the 5M run
    peaked at 6.4 GB on it; a 10M IVF-Flat would need ~6 GB for the count alone)."""
    size = 0

    def count(chunk: bytes) -> int:
        nonlocal size
        size += len(chunk)
        return len(chunk)

    # faiss's stub omits PyCallbackIOWriter (the module has it, from its Python callbacks)
    writer = faiss.PyCallbackIOWriter(count)  # type: ignore[attr-defined]
    faiss.write_index(index, writer)
    return size


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int = K, batch: int = 1_000_000) -> np.ndarray:
    """(nq, k) ids of the exact inner-product top k (brute force, in catalog batches to bound memory)."""
    best_d = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(base), batch):
        d, i = faiss.knn(
            queries, np.ascontiguousarray(base[start : start + batch]), k, faiss.METRIC_INNER_PRODUCT
        )
        d_all, i_all = np.hstack([best_d, d]), np.hstack([best_i, i + start])
        top = np.argsort(-d_all, axis=1)[:, :k]
        best_d, best_i = np.take_along_axis(d_all, top, 1), np.take_along_axis(i_all, top, 1)
    return best_i


# ------------------------------------------------------------------------------------------ the serving index
def sweep(
    emb: np.ndarray,
    queries: np.ndarray,
    nlists: tuple[int, ...],
    k: int = K,
    families: tuple[str, ...] = ("ivf_flat",),
    serve_k: int = SERVE_K,
    n_single: int = 200,
) -> tuple[list[SweepRow], dict]:
    """Every setting of each family, measured at the server's k (recall@k on the first k of a search for
    serve_k), and the one the SERVING rule picks (exact when none reaches RECALL_TARGET)."""
    if bad := [f for f in families if f not in INDEX_FAMILIES]:
        raise ValueError(f"unknown index families {bad}; supported: {', '.join(INDEX_FAMILIES)}")
    exact = exact_index(emb)
    _, exact_ids = exact.search(queries, k)
    flat_bytes = emb.shape[1] * FLAT_BYTES_PER_DIM
    p50, p99, batched, _ = time_search(exact, queries, serve_k, n_single=min(n_single, 50))
    rows = [SweepRow(EXACT, "Flat (exact)", "exact", 1.0, p50, p99, batched, bytes_per_vector=flat_bytes,
                     distances_per_query=len(emb))]  # fmt: skip
    built: dict[str, faiss.Index] = {}

    def measure(index: faiss.Index, row: SweepRow) -> SweepRow:
        row.p50_ms, row.p99_ms, row.batched_ms, ids = time_search(index, queries, serve_k, n_single)
        row.recall_at_100 = recall_at_k(ids[:, :k], exact_ids)
        row.param = ann_setting(asdict(row))
        return row

    for family in families:
        if family == "hnsw":
            name = f"HNSW{HNSW_M},Flat"
            t0 = time.perf_counter()
            graph = hnsw_index(emb, HNSW_M)
            build_s, size = time.perf_counter() - t0, index_bytes(graph) / len(emb)
            built[name] = graph
            for ef in HNSW_EF_SEARCH:
                graph.hnsw.efSearch = ef
                row = measure(graph, SweepRow(family, name, "", 0.0, 0.0, 0.0, 0.0, ef_search=ef, bytes_per_vector=size,
                                              build_s=build_s if ef == HNSW_EF_SEARCH[0] else 0.0))  # fmt: skip
                # the walk's distances, counted by faiss over one batched search (faiss's stub omits hnsw_stats)
                faiss.cvar.hnsw_stats.reset()  # type: ignore[attr-defined]
                graph.search(queries, serve_k)
                row.distances_per_query = faiss.cvar.hnsw_stats.ndis // len(queries)  # type: ignore[attr-defined]
                rows.append(row)
            continue
        for nlist in nlists:
            if nlist * 8 > len(emb):
                continue
            t0 = time.perf_counter()
            index: faiss.Index
            if family == "ivf_flat":
                index, name, grid = ivf_index(emb, nlist), f"IVF{nlist},Flat", [(n, 0) for n in IVF_NPROBES]
            else:
                index, name = pqfs_refine_index(emb, nlist), f"IVF{nlist},PQ{emb.shape[1]}x4fs,RFlat"
                grid = [(n, f) for n in PQFS_NPROBES for f in PQFS_K_FACTORS]
            build_s, size = time.perf_counter() - t0, index_bytes(index) / len(emb)
            built[name] = index
            ivf = faiss.extract_index_ivf(index)
            for i, (nprobe, k_factor) in enumerate(g for g in grid if g[0] <= nlist):
                ivf.nprobe = nprobe
                if k_factor:
                    # only the refine family's grid has a k_factor
                    assert isinstance(index, faiss.IndexRefine)
                    index.k_factor = k_factor
                # distances = the coarse centroids + the probed lists (their mean length) [+ the re-scored
                # shortlist]: deterministic
                scanned = nlist + nprobe * len(emb) // nlist + k_factor * serve_k
                rows.append(measure(index, SweepRow(family, name, "", 0.0, 0.0, 0.0, 0.0, 0.0 if i else build_s,
                                                    size, scanned, nlist, nprobe, k_factor=k_factor)))  # fmt: skip
    best, why = choose(rows, SERVING)
    if best is None:
        best = rows[0]
        best.chosen = True
    return rows, {"best": asdict(best), "why": why, "indexes": built, "exact": exact}


def query_gap(emb: np.ndarray, queries: np.ndarray, exact: faiss.Index, sample: int = 200) -> dict:
    """How far the user vectors sit from the catalog: the median over queries of their best video's score, beside
    the median score of a video's 100th-nearest other video. A graph index walks from video to video towards
    the query; when no video is near the query (a two-tower query is not a video), the walk has nowhere to go."""
    best, _ = exact.search(queries, 1)
    rng = np.random.default_rng(0)
    videos = emb[rng.choice(len(emb), size=min(sample, len(emb)), replace=False)]
    near, _ = exact.search(videos, 101)  # the first is the video itself
    return {"query_best_score_median": float(np.median(best[:, 0])),
            "video_100th_neighbour_score_median": float(np.median(near[:, 100]))}  # fmt: skip


def apply_setting(index: faiss.Index, row: dict) -> None:
    """Set a sweep row's efSearch, or nprobe (and k_factor), on its index."""
    if row.get("ef_search"):
        assert isinstance(index, faiss.IndexHNSW)  # only an HNSW row has an efSearch
        index.hnsw.efSearch = row["ef_search"]
    elif row["nlist"]:
        faiss.extract_index_ivf(index).nprobe = row["nprobe"]
        if row.get("k_factor"):
            assert isinstance(index, faiss.IndexRefine)  # only a refine row has a k_factor
            index.k_factor = row["k_factor"]


def ann_setting(row: dict) -> str:
    """A sweep row's search setting as text: "efSearch=256" (HNSW), "nprobe=384" (IVF), "nprobe=256,
    k_factor=8" (IVF-PQ + refine) or "exact"."""
    if row.get("ef_search"):
        return f"efSearch={row['ef_search']}"
    if not row["nlist"]:
        return "exact"
    return f"nprobe={row['nprobe']}" + (f", k_factor={row['k_factor']}" if row.get("k_factor") else "")


def run_index(
    model: TwoTower,
    feed: Feed,
    features: RecsysFeatures,
    root: Path,
    queries: np.ndarray,
    nlists: tuple[int, ...],
    engine: str = "local",
    families: tuple[str, ...] = ("ivf_flat",),
) -> dict:
    """Embed (in this process with torch, or engine "ray": Ray Data actors running the ONNX video tower that
    `train` exported), sweep, save the chosen serving index and the exact one's embeddings."""
    faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
    seen = np.load(root / layout.SEEN_VIDEOS)
    t0 = time.perf_counter()
    frame = catalog_frame(feed, features, feed.split_ts)
    if engine == "ray":
        # here, not at the top: Ray takes seconds to import, and only --engine ray needs it
        from systems.recsys_two_tower import offline_ray

        with offline_ray.ray_engine() as runtime:
            emb = offline_ray.embed_catalog(
                root / layout.VIDEO_TOWER_ONNX, frame, model.cfg, seen, feed.split_ts, runtime
            )
    elif engine == "local":
        emb = embed_catalog(model, frame, seen, feed.split_ts)
    else:
        raise ValueError(f"engine must be local or ray, got {engine!r}")
    embed_s = time.perf_counter() - t0
    rows, info = sweep(emb, queries, nlists, families=families)
    best = info["best"]
    (root / layout.INDEX_DIR).mkdir(parents=True, exist_ok=True)
    np.save(root / layout.CATALOG_EMB, emb)
    serving = info["indexes"].get(best["index"], info["exact"])
    apply_setting(serving, best)  # saved with the index: the server searches with it
    faiss.write_index(serving, str(root / layout.SERVING_INDEX))
    summary = {
        "embed_seconds": embed_s,
        "embed_engine": engine,
        "n_videos": len(emb),
        "chosen": best,
        "why": info["why"],
        **query_gap(emb, queries, info["exact"]),
        "sweep": [asdict(r) for r in rows],
    }
    (root / layout.SWEEP).write_text(json.dumps(summary, indent=2))
    return summary


SWEEP_COLUMNS = ("index", "setting", "distances/query", "recall@100", "p50 ms batch 1", "p99 ms batch 1",
                 "ms batched", "B/vector", "build s", "")  # fmt: skip


def sweep_rows(summary: dict) -> list[tuple]:
    """The sweep as table rows (SWEEP_COLUMNS), the chosen setting marked."""
    return [
        (r["index"], r["param"] if r["family"] != EXACT else "-", r["distances_per_query"], r["recall_at_100"],
         r["p50_ms"], r["p99_ms"], r["batched_ms"], round(r["bytes_per_vector"]), round(r["build_s"], 1) or "",
         "← chosen" if r["chosen"] else "")
        for r in summary["sweep"]
    ]  # fmt: skip


def print_sweep(summary: dict) -> None:
    """The index step's table, and how far the queries sit from the catalog."""
    print_rows(f"ANN sweep over {summary['n_videos']:,} videos (recall@100 vs exact; ms per query)",
               SWEEP_COLUMNS, sweep_rows(summary))  # fmt: skip
    if "query_best_score_median" in summary:
        console.print(f"queries vs catalog: a user's best video scores {summary['query_best_score_median']:.3f} "
                      f"(median), a video's 100th-nearest video {summary['video_100th_neighbour_score_median']:.3f}")  # fmt: skip
