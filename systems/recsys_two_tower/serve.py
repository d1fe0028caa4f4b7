"""`POST /recommend`: online user features (Feast) -> user tower (ONNX Runtime) -> FAISS candidates -> ranking
features -> ranker (ONNX Runtime) -> policy (seen filter, per-creator cap) -> k videos.

Stages, each timed into Server-Timing, /metrics, /stats and so the bench report: features, transform, tower,
ann, rank_features, ranker, policy (cold start: features, trending).

What a client gets when something is wrong:
  unknown user                       trending videos, cold_start: true
  online store slow, down or open    the tower and ranker on default features (no history, so no seen filter),
    circuit                          degraded: true, within MLSD_RECSYS_FEATURE_DEADLINE_MS (default 50 ms).
                                     The read runs on the breaker's own threads (infra.resilience), so a hung
                                     store holds those threads and nothing else: /healthz and other requests
                                     answer meanwhile; after 3 failures the circuit opens and requests stop
                                     waiting for 5 s.
  user_id or k out of range          422 at the schema (user_id in [0, 2**53), k in [1, 500]): never a store
                                     call, so never a 500 and never a failure held against the shared breaker
  artifacts from different runs      503 at /readyz and /recommend naming the runs (provenance.py)
  features filled into another       503 at /readyz and /recommend naming both stores and the command that
    online store than MLSD_ONLINE_STORE  fills this one (features/repo.py): an empty store would answer every
                                     user as unknown, silently

The console at `GET /` (infra.serving.console): knobs for the index (ANN with its nprobe, or exact search), the
candidate count, the ranker on or off, exclude-seen and the creator cap; the "online store down" switch; and,
beside the latency, live recall@100 of the serving index against exact search on a sample of the requests.

Which scale's artifacts the server loads: `build_app(scale)`, else MLSD_RECSYS_SCALE (what `mlsd recsys
bench --scale` sets for the server it starts), else MLSD_SCALE.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import faiss
import numpy as np
import onnxruntime as ort
import pandas as pd
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from infra.artifacts import Artifacts
from infra.config import ServiceUnavailable, get_settings
from infra.registry import CHAMPION, Registry
from infra.resilience import CircuitBreaker, guarded_call_async
from infra.serving import create_app, current_timings, require_ready, stage
from infra.serving.console import TRAFFIC_HEADER, Console, Settings, TrafficRequest, add_console
from infra.serving.onnx import make_session
from systems.recsys_two_tower.config import SETTINGS, TowerConfig
from systems.recsys_two_tower.features.definitions import HISTORY_COLS, USER_COLS
from systems.recsys_two_tower.features.repo import RecsysFeatures, check_materialized, open_features
from systems.recsys_two_tower.features.transform import user_inputs
from systems.recsys_two_tower.index import maybe_gpu
from systems.recsys_two_tower.provenance import check_same_run, read_run_id
from systems.recsys_two_tower.rank import (
    CANDIDATES,
    CREATOR_CAP,
    RankCatalog,
    policy,
    rank_features,
    user_profile,
)

log = logging.getLogger("mlsd.recsys")
MARGIN = 50  # extra candidates fetched so that filtering seen videos still leaves k
MAX_ID = 2**53 - 1  # ids a JSON number, an int64 store key and a float64 all hold exactly
BREAKER_FAILURES, BREAKER_COOLDOWN_S = 3, 5.0
PANEL = Path(__file__).with_name("panel.html")  # the console's request panel
RECALL_K = 100  # the console's live recall@100: the serving index against exact search, same query
RECALL_SAMPLE = 4  # one request in this many is probed (off the request path, on the probe's own thread)


class RecommendRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user_id": 42, "k": 10}]})

    user_id: int = Field(..., ge=0, le=MAX_ID, description="viewer id")
    k: int = Field(20, ge=1, le=500, description="how many videos to return")
    exclude_seen: bool = Field(True, description="drop videos in the user's recent history")


class RecommendedVideo(BaseModel):
    video_id: int
    score: float


class RecommendResponse(BaseModel):
    user_id: int
    items: list[RecommendedVideo]
    cold_start: bool = Field(description="unknown user: trending videos, not personalised")
    degraded: bool = Field(description="online store unreachable: default features were used")
    model_version: str
    stages_ms: dict[str, float]


class OnlineFeatures:
    """Online reads of one user's user_stats; blocking (call it through guarded_call_async). The read is Feast's
    online store on a prepared key (FeatureRepo.online_reader): the same columns as get_online_features, at a
    fifth of its CPU (benchmarks/recsys/feature_read.py)."""

    def __init__(self, features: RecsysFeatures) -> None:
        self.repo = features.repo
        self.reader = features.repo.online_reader(features.user_serving, "user_id")

    def read(self, user_id: int) -> dict[str, list[Any]]:
        return self.reader([user_id])


@dataclass
class RecsysResources:
    """What a /recommend request reads: loaded once at startup, shared by every request."""

    cfg: TowerConfig
    session: ort.InferenceSession  # the ONNX user tower
    seen_videos: np.ndarray  # (n_videos,) bool: watched in training (unseen ids map to bucket 0)
    index: faiss.Index  # the serving ANN index the index step chose
    ranker: ort.InferenceSession  # the ONNX ranker (rank.py)
    catalog: RankCatalog  # what the ranker and the policy know of each video
    trending: np.ndarray  # the cold-start answer
    features: OnlineFeatures
    breaker: CircuitBreaker  # the online store's
    deadline_s: float
    model_version: str
    run_id: str  # the training run every artifact was built from
    store_down_at_start: str | None = None  # why the online store failed its first read, if it did
    # what the console's knobs change (RecsysKnobs); the defaults are the designed behaviour
    search_exact: bool = False  # search `exact` instead of the ANN index
    exact: faiss.Index | None = None  # flat inner-product index over the same catalog vectors
    candidates: int = CANDIDATES
    use_ranker: bool = True
    exclude_seen: bool = True  # False: no request drops its seen videos, whatever it asks
    creator_cap: int = CREATOR_CAP
    store_down: bool = False  # the console's fault switch: every online read fails
    user_ids: np.ndarray = field(
        default_factory=lambda: np.arange(1000)
    )  # known users, for generated traffic
    chosen_nprobe: int = 1  # the index step's nprobe (1 for an index without one): the knob's default

    @property
    def degraded(self) -> str | None:
        """Why /recommend answers on default features, for /readyz: the store was down at start and no read
        has succeeded since (per request, the breaker and the deadline decide)."""
        if self.store_down_at_start is None or self.breaker.snapshot()["counts"].get("ok", 0) > 0:
            return None
        return self.store_down_at_start


def serving_scale() -> str:
    """The artifact folder served: MLSD_RECSYS_VARIANT (a dataset's), else MLSD_RECSYS_SCALE, else MLSD_SCALE."""
    settings = SETTINGS()
    return settings.variant or settings.scale or get_settings().scale


def load_resources(scale: str, breaker: CircuitBreaker) -> RecsysResources:
    """Every artifact of the scale, after checking they come from one training run (else ArtifactMismatch)."""
    faiss.omp_set_num_threads(1)  # batch-1 queries: threads cost more than they give
    art = Artifacts("recsys", scale)
    index_path = art.require("index/serving.faiss", "index")
    trending_path = art.require("trending.npy", "features")
    ranker_path = art.require("rank/ranker.onnx", "rank")
    ref, model_dir = Registry().load("recsys_two_tower", CHAMPION, dst=art.dir("serving_model"))
    check_same_run(ref.run_id, scale, index=read_run_id(art.require("index/run.json", "index")),
                   ranker=read_run_id(art.require("rank/meta.json", "rank")))  # fmt: skip
    check_materialized(art.root, get_settings().online_store, f"--scale {scale}")
    meta = json.loads((model_dir / "config.json").read_text())
    res = RecsysResources(
        cfg=TowerConfig(**meta["tower"]),
        session=make_session(model_dir / "user_tower.onnx", threads=1),
        seen_videos=np.load(model_dir / "seen_videos.npy"),
        index=maybe_gpu(faiss.read_index(str(index_path))),  # GPU when faiss sees one, else as is
        ranker=make_session(ranker_path, threads=1),
        catalog=RankCatalog.load(art.require("rank/catalog.npz", "rank")),
        trending=np.load(trending_path),
        features=OnlineFeatures(open_features(art.root, scale)),
        breaker=breaker,
        deadline_s=SETTINGS().feature_deadline_ms / 1000.0,
        model_version=f"recsys_two_tower v{ref.version}",
        run_id=ref.run_id,
    )
    catalog_emb = art.path("index/catalog_emb.npy")
    if catalog_emb.exists():  # the console's exact search and live recall; the same vectors the index holds
        emb = np.ascontiguousarray(np.load(catalog_emb), dtype=np.float32)
        res.exact = faiss.IndexFlat(emb.shape[1], res.index.metric_type)
        res.exact.add(emb)
    ivf = ivf_of(res.index)
    res.chosen_nprobe = ivf.nprobe if ivf is not None else 1
    users = art.path("users.parquet")
    if users.exists():
        res.user_ids = pd.read_parquet(users, columns=["user_id"])["user_id"].to_numpy()
    # warm the paths once so the first request does not pay for lazy initialisation
    try:
        cols = res.features.read(0)
    except ServiceUnavailable as exc:  # the design's degraded mode from the first request: one warning line
        res.store_down_at_start = (
            f"{exc}; until it answers, /recommend uses default features (degraded: true)"
        )
        log.warning("serving degraded: %s", res.store_down_at_start)
        cols = None
    recommend_for(res, RecommendRequest(user_id=0, k=10), cols)
    return res


def recommend_for(
    res: RecsysResources, req: RecommendRequest, cols: dict[str, list[Any]] | None
) -> dict[str, Any]:
    """The answer from the user's online columns (None: the store did not answer in time -> degraded)."""
    degraded = cols is None
    if cols is not None and cols["watches_30d"][0] is None:  # no snapshot: a user the store does not know
        with stage("trending"):
            ids = res.trending[: req.k]
            items = [{"video_id": int(v), "score": 0.0} for v in ids]
        return {"items": items, "cold_start": True, "degraded": False}
    if cols is None:  # degraded: the same defaults training used for a user without a snapshot
        cols = {"user_id": [req.user_id]} | {c: [None] for c in USER_COLS}
    with stage("transform"):
        bucket, dense, history = user_inputs(cols, res.cfg, res.seen_videos)
    with stage("tower"):
        query = res.session.run(None, {"user_bucket": bucket, "dense": dense, "history": history})[0]
    exclude_seen = req.exclude_seen and res.exclude_seen
    with stage("ann"):
        margin = MARGIN if exclude_seen else 0
        index = res.exact if res.search_exact and res.exact is not None else res.index
        scores, ids = index.search(query, max(res.candidates, req.k) + margin)
        keep = ids[0] >= 0
        ids, scores = ids[0][keep], scores[0][keep]
    with stage("rank_features"):
        x = rank_features(user_profile(cols, res.catalog), ids, scores, res.catalog)
    with stage("ranker"):
        # the console's ranker switch off: the ANN's order and scores go straight to the policy
        rscores = res.ranker.run(None, {"features": x})[0] if res.use_ranker else scores.astype(np.float32)
        order = np.argsort(-rscores, kind="stable")
    with stage("policy"):
        seen = np.empty(0, np.int64)
        if exclude_seen and not degraded:
            seen = np.asarray([cols[c][0] for c in HISTORY_COLS], dtype=np.int64)
        ranked = ids[order]
        top, top_scores = policy(ranked, rscores[order], seen, res.catalog.creator[ranked], req.k,
                                 cap=res.creator_cap)  # fmt: skip
        items = [{"video_id": int(v), "score": float(s)} for v, s in zip(top, top_scores, strict=True)]
    return {"items": items, "cold_start": False, "degraded": degraded, "query": query}


class RecsysKnobs(Settings):
    """What the console turns on a running server (defaults: the designed behaviour, nprobe the index step's)."""

    index: Literal["ann", "exact"] = Field("ann", description="the serving ANN index, or exact search")
    nprobe: int = Field(64, ge=1, le=65536, description="IVF lists searched per query (recall vs latency)")
    candidates: int = Field(CANDIDATES, ge=10, le=2000, description="ANN candidates handed to the ranker")
    ranker: bool = Field(True, description="off: the ANN's order is the answer")
    exclude_seen: bool = Field(True, description="drop videos in the user's recent history")
    creator_cap: int = Field(CREATOR_CAP, ge=1, le=500, description="videos of one creator in a feed")


class RecsysFaults(Settings):
    online_store_down: bool = Field(
        False, description="every online feature read fails: the breaker opens, answers turn degraded"
    )


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF layer of an index (IVF-Flat, IVF-PQ, under a refine), or None (HNSW, flat)."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _store_down(user_id: int) -> dict[str, list[Any]]:
    raise ServiceUnavailable(f"online store down (the console's fault switch; user {user_id} not read)")


def apply_knobs(res: RecsysResources, knobs: RecsysKnobs, faults: RecsysFaults) -> None:
    """The console's settings onto the running resources (ValueError: refused, nothing changed)."""
    ivf = ivf_of(res.index)
    if ivf is None and knobs.nprobe != res.chosen_nprobe:
        raise ValueError(f"nprobe applies to an IVF index; this server's is {type(res.index).__name__}")
    if ivf is not None and knobs.nprobe > ivf.nlist:
        raise ValueError(f"nprobe {knobs.nprobe} is over the index's {ivf.nlist} lists")
    if knobs.index == "exact" and res.exact is None:
        raise ValueError("no exact index: index/catalog_emb.npy is missing (run `mlsd recsys index`)")
    if ivf is not None:
        ivf.nprobe = knobs.nprobe
    res.search_exact = knobs.index == "exact"
    res.candidates, res.use_ranker = knobs.candidates, knobs.ranker
    res.exclude_seen, res.creator_cap = knobs.exclude_seen, knobs.creator_cap
    res.store_down = faults.online_store_down


class RecallProbe:
    """Live recall@100 of the serving index against exact search on sampled queries, on its own thread so the
    probe never adds to a request's latency; a full queue drops the sample."""

    def __init__(self, gauge: Any) -> None:
        self.gauge = gauge
        self.jobs: queue.Queue = queue.Queue(maxsize=64)
        self.seen = 0
        threading.Thread(target=self._run, name="recsys-recall-probe", daemon=True).start()

    def offer(self, res: RecsysResources, query: np.ndarray) -> None:
        self.seen += 1
        if res.exact is not None and self.seen % RECALL_SAMPLE == 0 and not self.jobs.full():
            self.jobs.put_nowait((res, query))

    def _run(self) -> None:
        while True:
            res, query = self.jobs.get()
            k = min(RECALL_K, res.index.ntotal)
            searched = res.exact if res.search_exact else res.index
            got = set(searched.search(query, k)[1][0].tolist())
            truth = set(res.exact.search(query, k)[1][0].tolist())
            self.gauge("recall_at_100", len(got & truth) / k)
            self.jobs.task_done()


def recsys_console(get_res: Any) -> Console[Any, Any]:
    """The console: knobs, the store-down switch, generated requests (5% unknown users), recall@100."""

    def traffic(rng: np.random.Generator) -> TrafficRequest:
        res = get_res()
        user = int(rng.choice(res.user_ids)) if rng.random() > 0.05 else int(10**9 + rng.integers(10**6))
        return TrafficRequest("/recommend", {"user_id": user, "k": 20})

    return Console(
        system="recsys_two_tower", title="recsys: two-tower retrieval + ranker",
        knobs=RecsysKnobs(), faults=RecsysFaults(), traffic=traffic,
        request=TrafficRequest("/recommend", {"user_id": 42, "k": 10}),
        apply=lambda knobs, faults: apply_knobs(get_res(), knobs, faults),
        panel=PANEL, gauges=("recall_at_100", "degraded", "cold_start"),
    )  # fmt: skip


def build_app(scale: str | None = None) -> FastAPI:
    """The app factory uvicorn calls (`--factory`); `scale` defaults to serving_scale()."""
    chosen = scale or serving_scale()
    breaker = CircuitBreaker(
        "online_store", failure_threshold=BREAKER_FAILURES, cooldown_s=BREAKER_COOLDOWN_S, max_workers=4
    )

    def load() -> RecsysResources:
        res = load_resources(chosen, breaker)
        app.state.resources_loaded(res)  # the console's nprobe default is the index step's choice
        return res

    app = create_app(
        "recsys", load=load, breakers=[breaker],
        title="mlsd recsys: two-tower retrieval + ranker video recommendations",
    )  # fmt: skip

    console = recsys_console(lambda: app.state.resources.get())
    add_console(app, console)
    app.state.resources_loaded = lambda res: console.set_defaults(RecsysKnobs(nprobe=res.chosen_nprobe))
    probe = app.state.recall_probe = RecallProbe(console.series.gauge)

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(
        req: RecommendRequest, res: Annotated[RecsysResources, Depends(require_ready)], request: Request
    ) -> dict[str, Any]:
        read = _store_down if res.store_down else res.features.read
        with stage("features"):
            got = await guarded_call_async(
                read, req.user_id, deadline_s=res.deadline_s, breaker=res.breaker, fallback=None
            )
        out = recommend_for(res, req, got.value)
        query = out.pop("query", None)
        console.series.gauge("degraded", float(out["degraded"]))
        console.series.gauge("cold_start", float(out["cold_start"]))
        if query is not None and TRAFFIC_HEADER in request.headers:
            probe.offer(res, query)
        timings = current_timings()
        stages = {k: round(v, 3) for k, v in (timings.stages.items() if timings else [])}
        return {"user_id": req.user_id, "model_version": res.model_version, "stages_ms": stages, **out}

    return app
