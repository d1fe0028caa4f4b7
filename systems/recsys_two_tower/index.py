"""The `index` step: embed the whole catalog with the video tower, build FAISS indexes, sweep ANN settings.

The queries are user-tower vectors of held-out users as of the split (`user_vectors`; evaluation asks the same).

Exact IndexFlatIP is the reference (and what evaluation uses). The candidate families (INDEX_FAMILIES):
- ivf_flat: IVF-Flat at each nlist and nprobe;
- ivf_pqfs_refine: IVF with 4-bit fast-scan PQ codes (one sub-quantizer per dimension) whose shortlist of
  k_factor x k is re-scored against the stored fp32 vectors (IndexRefineFlat): a cheap scan of many lists, an
  exact order at the end;
- hnsw: an HNSW32 graph at several efSearch.
The serving index is the cheapest with recall@100 against exact >= 0.95: within ivf_flat the fewest distance
computations per query (counted, so deterministic), within the other families and across families the lower
measured batch-1 time, as a code scan, a re-scoring and a graph walk cost differently per distance. Every row is
timed at the server's k (SERVE_K). IVF-Flat moves to the GPU when faiss sees one; the others stay on the CPU.
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

from infra.console import progress
from systems.recsys_two_tower.config import INDEX_FAMILIES
from systems.recsys_two_tower.data import Feed
from systems.recsys_two_tower.features.definitions import USER_COLS
from systems.recsys_two_tower.features.repo import RecsysFeatures
from systems.recsys_two_tower.features.transform import user_inputs, video_inputs
from systems.recsys_two_tower.model import TwoTower

log = logging.getLogger("mlsd.recsys")

RECALL_TARGET = 0.95
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
    return index  # index_factory hands back the IndexRefineFlat itself: k_factor is set on it


def hnsw_index(emb: np.ndarray, m: int, ef_construction: int = 40) -> faiss.IndexHNSWFlat:
    """HNSW (M links per node, inner product) over every vector; the build is the graph, there is no training."""
    index = faiss.IndexHNSWFlat(emb.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    for start in progress(range(0, len(emb), 100_000), f"HNSW{m} build (100k vectors)"):
        index.add(emb[start : start + 100_000])
    return index


@dataclass
class SweepRow:
    index: str
    nlist: int
    nprobe: int
    recall_at_100: float
    ms_per_query_batch1: float
    ms_per_query_batched: float
    distances_per_query: int = 0
    chosen: bool = False
    ef_search: int = 0  # HNSW rows only
    k_factor: int = 0  # ivf_pqfs_refine rows only: the shortlist re-scored exactly is k_factor x k
    family: str = "ivf_flat"  # INDEX_FAMILIES, or "exact"
    build_seconds: float = 0.0  # the index's build (k-means + adds, or the graph), on its first row


def recall_vs_exact(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    hits = [len(np.intersect1d(a[a >= 0], e)) for a, e in zip(approx_ids, exact_ids, strict=True)]
    return float(np.sum(hits) / exact_ids.size)


def _time_search(index: faiss.Index, queries: np.ndarray, k: int, n_single: int = 200) -> tuple[float, float]:
    t0 = time.perf_counter()
    for q in queries[:n_single]:
        index.search(q[None, :], k)
    single = (time.perf_counter() - t0) * 1000 / min(n_single, len(queries))
    t0 = time.perf_counter()
    index.search(queries, k)
    batched = (time.perf_counter() - t0) * 1000 / len(queries)
    return single, batched


def sweep(
    emb: np.ndarray,
    queries: np.ndarray,
    nlists: tuple[int, ...],
    k: int = 100,
    families: tuple[str, ...] = ("ivf_flat",),
    serve_k: int = SERVE_K,
) -> tuple[list[SweepRow], dict]:
    """Recall@k against exact (on the first k of a search for serve_k) and batch-1 / batched ms at serve_k for
    each setting of each family; mark the cheapest with recall >= 0.95 (module docstring: what "cheapest" means)."""
    if bad := [f for f in families if f not in INDEX_FAMILIES]:
        raise ValueError(f"unknown index families {bad}; supported: {', '.join(INDEX_FAMILIES)}")
    exact = exact_index(emb)
    _, exact_ids = exact.search(queries, k)
    single, batched = _time_search(exact, queries, serve_k, n_single=50)
    rows = [
        SweepRow("Flat (exact)", 0, 0, 1.0, single, batched, distances_per_query=len(emb), family="exact")
    ]
    built: dict[str, faiss.Index] = {}

    def measure(index: faiss.Index, row: SweepRow) -> SweepRow:
        _, ids = index.search(queries, serve_k)
        row.recall_at_100 = recall_vs_exact(ids[:, :k], exact_ids)
        row.ms_per_query_batch1, row.ms_per_query_batched = _time_search(index, queries, serve_k)
        return row

    for family in families:
        if family == "hnsw":
            name = f"HNSW{HNSW_M},Flat"
            t0 = time.perf_counter()
            index = hnsw_index(emb, HNSW_M)
            build_s = time.perf_counter() - t0
            built[name] = index
            for ef in HNSW_EF_SEARCH:
                index.hnsw.efSearch = ef
                row = measure(index, SweepRow(name, 0, 0, 0.0, 0.0, 0.0, ef_search=ef, family=family,
                                              build_seconds=build_s if ef == HNSW_EF_SEARCH[0] else 0.0))  # fmt: skip
                faiss.cvar.hnsw_stats.reset()  # the walk's distances, counted by faiss over one batched search
                index.search(queries, serve_k)
                row.distances_per_query = faiss.cvar.hnsw_stats.ndis // len(queries)
                rows.append(row)
            continue
        for nlist in nlists:
            if nlist * 8 > len(emb):
                continue
            t0 = time.perf_counter()
            if family == "ivf_flat":
                index, name, grid = ivf_index(emb, nlist), f"IVF{nlist},Flat", [(n, 0) for n in IVF_NPROBES]
            else:
                index, name = pqfs_refine_index(emb, nlist), f"IVF{nlist},PQ{emb.shape[1]}x4fs,RFlat"
                grid = [(n, f) for n in PQFS_NPROBES for f in PQFS_K_FACTORS]
            build_s = time.perf_counter() - t0
            built[name] = index
            ivf = faiss.extract_index_ivf(index)
            for i, (nprobe, k_factor) in enumerate(g for g in grid if g[0] <= nlist):
                ivf.nprobe = nprobe
                if k_factor:
                    index.k_factor = k_factor
                # distances = the coarse centroids + the probed lists (their mean length) [+ the re-scored
                # shortlist]: deterministic
                scanned = nlist + nprobe * len(emb) // nlist + k_factor * serve_k
                rows.append(measure(index, SweepRow(name, nlist, nprobe, 0.0, 0.0, 0.0, scanned, k_factor=k_factor,
                                                    family=family, build_seconds=0.0 if i else build_s)))  # fmt: skip
    best = choose(rows)
    best.chosen = True
    return rows, {"best": asdict(best), "indexes": built, "exact": exact}


def choose(rows: list[SweepRow]) -> SweepRow:
    """rows[0] is exact. Among the rest with recall >= RECALL_TARGET: within ivf_flat the fewest distances per
    query, within the other families the lowest batch-1 ms; then across families the lowest batch-1 ms. None
    passing: exact."""
    ok = [r for r in rows[1:] if r.recall_at_100 >= RECALL_TARGET]
    if not ok:
        return rows[0]
    families: dict[str, list[SweepRow]] = {}
    for r in ok:
        families.setdefault(r.family, []).append(r)
    per_family = [
        min(
            rs,
            key=(lambda r: r.distances_per_query) if f == "ivf_flat" else (lambda r: r.ms_per_query_batch1),
        )
        for f, rs in families.items()
    ]
    return min(per_family, key=lambda r: r.ms_per_query_batch1)


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
        index.hnsw.efSearch = row["ef_search"]
    elif row["nlist"]:
        faiss.extract_index_ivf(index).nprobe = row["nprobe"]
        if row.get("k_factor"):
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
    seen = np.load(root / "model" / "seen_videos.npy")
    t0 = time.perf_counter()
    frame = catalog_frame(feed, features, feed.split_ts)
    if engine == "ray":
        # here, not at the top: Ray takes seconds to import, and only --engine ray needs it
        from systems.recsys_two_tower import offline_ray

        with offline_ray.ray_engine() as runtime:
            emb = offline_ray.embed_catalog(
                root / "model" / "video_tower.onnx", frame, model.cfg, seen, feed.split_ts, runtime
            )
    elif engine == "local":
        emb = embed_catalog(model, frame, seen, feed.split_ts)
    else:
        raise ValueError(f"engine must be local or ray, got {engine!r}")
    embed_s = time.perf_counter() - t0
    rows, info = sweep(emb, queries, nlists, families=families)
    best = info["best"]
    index_dir = root / "index"
    index_dir.mkdir(parents=True, exist_ok=True)
    np.save(index_dir / "catalog_emb.npy", emb)
    serving = info["indexes"].get(best["index"], info["exact"])
    apply_setting(serving, best)  # saved with the index: the server searches with it
    faiss.write_index(serving, str(index_dir / "serving.faiss"))
    summary = {
        "embed_seconds": embed_s,
        "embed_engine": engine,
        "n_videos": len(emb),
        "chosen": best,
        **query_gap(emb, queries, info["exact"]),
        "sweep": [asdict(r) for r in rows],
    }
    (index_dir / "sweep.json").write_text(json.dumps(summary, indent=2))
    return summary


SWEEP_COLUMNS = ("index", "setting", "distances/query", "recall@100", "ms batch 1", "ms batched",
                 "build s", "")  # fmt: skip


def sweep_rows(summary: dict) -> list[tuple]:
    """The sweep as table rows (SWEEP_COLUMNS), the chosen setting marked."""
    return [
        (r["index"], ann_setting(r) if r["nlist"] or r.get("ef_search") else "-", r.get("distances_per_query", 0), r["recall_at_100"],
         r["ms_per_query_batch1"], r["ms_per_query_batched"], round(r.get("build_seconds", 0.0), 1) or "",
         "← chosen" if r["chosen"] else "")
        for r in summary["sweep"]
    ]  # fmt: skip
