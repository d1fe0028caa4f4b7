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

Which scale's artifacts the server loads: `build_app(scale)`, else MLSD_RECSYS_SCALE (what `mlsd recsys
bench --scale` sets for the server it starts), else MLSD_SCALE.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any

import faiss
import numpy as np
import onnxruntime as ort
from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from infra.artifacts import Artifacts
from infra.config import ServiceUnavailable, get_settings
from infra.registry import CHAMPION, Registry
from infra.resilience import CircuitBreaker, guarded_call_async
from infra.serving import create_app, current_timings, require_ready, stage
from infra.serving.onnx import make_session
from systems.recsys_two_tower.config import SETTINGS, TowerConfig
from systems.recsys_two_tower.features.definitions import HISTORY_COLS, USER_COLS
from systems.recsys_two_tower.features.repo import RecsysFeatures, check_materialized, open_features
from systems.recsys_two_tower.features.transform import user_inputs
from systems.recsys_two_tower.index import maybe_gpu
from systems.recsys_two_tower.provenance import check_same_run, read_run_id
from systems.recsys_two_tower.rank import CANDIDATES, RankCatalog, policy, rank_features, user_profile

log = logging.getLogger("mlsd.recsys")
MARGIN = 50  # extra candidates fetched so that filtering seen videos still leaves k
MAX_ID = 2**53 - 1  # ids a JSON number, an int64 store key and a float64 all hold exactly
BREAKER_FAILURES, BREAKER_COOLDOWN_S = 3, 5.0


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
    known = not degraded and cols["watches_30d"][0] is not None
    if not degraded and not known:
        with stage("trending"):
            ids = res.trending[: req.k]
            items = [{"video_id": int(v), "score": 0.0} for v in ids]
        return {"items": items, "cold_start": True, "degraded": False}
    if degraded:  # the same defaults training used for a user without a snapshot
        cols = {"user_id": [req.user_id]} | {c: [None] for c in USER_COLS}
    with stage("transform"):
        bucket, dense, history = user_inputs(cols, res.cfg, res.seen_videos)
    with stage("tower"):
        query = res.session.run(None, {"user_bucket": bucket, "dense": dense, "history": history})[0]
    with stage("ann"):
        margin = MARGIN if req.exclude_seen else 0
        scores, ids = res.index.search(query, max(CANDIDATES, req.k) + margin)
        keep = ids[0] >= 0
        ids, scores = ids[0][keep], scores[0][keep]
    with stage("rank_features"):
        x = rank_features(user_profile(cols, res.catalog), ids, scores, res.catalog)
    with stage("ranker"):
        rscores = res.ranker.run(None, {"features": x})[0]
        order = np.argsort(-rscores, kind="stable")
    with stage("policy"):
        seen = np.empty(0, np.int64)
        if req.exclude_seen and not degraded:
            seen = np.asarray([cols[c][0] for c in HISTORY_COLS], dtype=np.int64)
        ranked = ids[order]
        top, top_scores = policy(ranked, rscores[order], seen, res.catalog.creator[ranked], req.k)
        items = [{"video_id": int(v), "score": float(s)} for v, s in zip(top, top_scores, strict=True)]
    return {"items": items, "cold_start": False, "degraded": degraded}


def build_app(scale: str | None = None) -> FastAPI:
    """The app factory uvicorn calls (`--factory`); `scale` defaults to serving_scale()."""
    chosen = scale or serving_scale()
    breaker = CircuitBreaker(
        "online_store", failure_threshold=BREAKER_FAILURES, cooldown_s=BREAKER_COOLDOWN_S, max_workers=4
    )
    app = create_app(
        "recsys", load=lambda: load_resources(chosen, breaker), breakers=[breaker],
        title="mlsd recsys: two-tower retrieval + ranker video recommendations",
    )  # fmt: skip

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(
        req: RecommendRequest, res: Annotated[RecsysResources, Depends(require_ready)]
    ) -> dict[str, Any]:
        with stage("features"):
            got = await guarded_call_async(
                res.features.read, req.user_id, deadline_s=res.deadline_s, breaker=res.breaker, fallback=None
            )
        out = recommend_for(res, req, got.value)
        timings = current_timings()
        stages = {k: round(v, 3) for k, v in (timings.stages.items() if timings else [])}
        return {"user_id": req.user_id, "model_version": res.model_version, "stages_ms": stages, **out}

    return app
