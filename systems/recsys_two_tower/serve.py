"""`POST /recommend`: online user features (Feast) -> user tower (ONNX Runtime) -> FAISS -> filter seen.

Unknown user -> trending videos, marked cold_start. Online store down -> the tower runs on default
features, marked degraded (a breaker skips the store for a few seconds instead of waiting on it).
Each stage is timed into Server-Timing, /metrics and /stats.

Which scale's artifacts the server loads: `build_app(scale)`, else MLSD_RECSYS_SCALE (what `mlsd recsys
bench --scale` sets for the server it starts), else MLSD_SCALE.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

import faiss
import numpy as np
import onnxruntime as ort
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from infra.artifacts import Artifacts
from infra.config import get_settings
from infra.registry import CHAMPION, Registry
from infra.serving import create_app, current_timings, require_ready, stage
from infra.serving.onnx import make_session
from systems.recsys_two_tower.config import SETTINGS, TowerConfig
from systems.recsys_two_tower.features.definitions import HISTORY_COLS, USER_COLS
from systems.recsys_two_tower.features.repo import RecsysFeatures, open_features
from systems.recsys_two_tower.features.transform import user_inputs
from systems.recsys_two_tower.index import maybe_gpu

MARGIN = 50  # extra candidates fetched so that filtering seen videos still leaves k
BREAKER_SECONDS = 5.0


class RecommendRequest(BaseModel):
    user_id: int = Field(..., ge=0, description="viewer id")
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
    """Feast online reads behind a breaker: after a failure, skip the store for BREAKER_SECONDS."""

    def __init__(self, features: RecsysFeatures) -> None:
        self.repo = features.repo
        self.service = features.user_serving
        self.open_until = 0.0

    def read(self, user_id: int) -> dict[str, list[Any]] | None:
        """The user's feature columns, or None when the store is unavailable."""
        if time.monotonic() < self.open_until:
            return None
        try:
            values, _ = self.repo.online(self.service, [{"user_id": user_id}])
            return values
        except Exception:
            self.open_until = time.monotonic() + BREAKER_SECONDS
            return None


@dataclass
class RecsysResources:
    """What a /recommend request reads: loaded once at startup, shared by every request."""

    cfg: TowerConfig
    session: ort.InferenceSession  # the ONNX user tower
    seen_videos: np.ndarray  # (n_videos,) bool: watched in training (unseen ids map to bucket 0)
    index: faiss.Index  # the serving ANN index the index step chose
    trending: np.ndarray  # the cold-start answer
    features: OnlineFeatures
    model_version: str


def serving_scale() -> str:
    """MLSD_RECSYS_SCALE, else MLSD_SCALE."""
    return SETTINGS().scale or get_settings().scale


def load_resources(scale: str) -> RecsysResources:
    faiss.omp_set_num_threads(1)  # batch-1 queries: threads cost more than they give
    art = Artifacts("recsys", scale)
    index_path = art.require("index/serving.faiss", "index")
    trending_path = art.require("trending.npy", "features")
    ref, model_dir = Registry().load("recsys_two_tower", CHAMPION, dst=art.dir("serving_model"))
    meta = json.loads((model_dir / "config.json").read_text())
    res = RecsysResources(
        cfg=TowerConfig(**meta["tower"]),
        session=make_session(model_dir / "user_tower.onnx", threads=1),
        seen_videos=np.load(model_dir / "seen_videos.npy"),
        index=maybe_gpu(faiss.read_index(str(index_path))),  # GPU when faiss sees one, else as is
        trending=np.load(trending_path),
        features=OnlineFeatures(open_features(art.root, scale)),
        model_version=f"recsys_two_tower v{ref.version}",
    )
    # warm the paths once so the first request does not pay for lazy initialisation
    res.features.read(0)
    recommend_for(res, RecommendRequest(user_id=0, k=10))
    return res


def recommend_for(res: RecsysResources, req: RecommendRequest) -> dict[str, Any]:
    with stage("features"):
        cols = res.features.read(req.user_id)
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
    with stage("model"):
        query = res.session.run(None, {"user_bucket": bucket, "dense": dense, "history": history})[0]
    with stage("ann"):
        margin = MARGIN if req.exclude_seen else 0
        scores, ids = res.index.search(query, req.k + margin)
    with stage("filter"):
        ids, scores = ids[0], scores[0]
        keep = ids >= 0
        if req.exclude_seen and not degraded:
            recent = np.asarray([cols[c][0] for c in HISTORY_COLS], dtype=np.float64)
            keep &= ~np.isin(ids, recent)
        items = [
            {"video_id": int(v), "score": float(s)}
            for v, s in zip(ids[keep][: req.k], scores[keep][: req.k], strict=True)
        ]
    timings = current_timings()
    if timings is not None and degraded:
        timings.flags["degraded"] = "online store unreachable"
    return {"items": items, "cold_start": False, "degraded": degraded}


def build_app(scale: str | None = None) -> FastAPI:
    """The app factory uvicorn calls (`--factory`); `scale` defaults to serving_scale()."""
    chosen = scale or serving_scale()
    app = create_app(
        "recsys", load=lambda: load_resources(chosen), title="mlsd recsys: two-tower video recommendations"
    )

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(
        req: RecommendRequest, res: Annotated[RecsysResources, Depends(require_ready)]
    ) -> dict[str, Any]:
        out = recommend_for(res, req)
        timings = current_timings()
        stages = {k: round(v, 3) for k, v in (timings.stages.items() if timings else [])}
        return {"user_id": req.user_id, "model_version": res.model_version, "stages_ms": stages, **out}

    return app
