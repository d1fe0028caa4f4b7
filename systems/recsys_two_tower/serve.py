"""`POST /recommend`: online user features (Feast) -> user tower (ONNX Runtime) -> FAISS -> filter seen.

Unknown user -> trending videos, marked cold_start. Online store down -> the tower runs on default
features, marked degraded (a breaker skips the store for a few seconds instead of waiting on it).
Each stage is timed into Server-Timing, /metrics and /stats.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from infra.config import get_settings
from infra.serving import Resources, create_app, current_timings, require_ready, stage
from systems.recsys_two_tower.features.definitions import HISTORY_COLS, USER_COLS
from systems.recsys_two_tower.features.transform import user_inputs
from systems.recsys_two_tower.model import TowerConfig

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

    def __init__(self, repo) -> None:  # noqa: ANN001 — FeatureRepo
        self.repo = repo
        self.service = repo.objects["user_serving"]
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


def load_resources(res: Resources) -> None:
    import faiss

    from infra.registry import CHAMPION, Registry
    from infra.serving.onnx import make_session
    from systems.recsys_two_tower.data import workdir
    from systems.recsys_two_tower.features.repo import feature_repo

    faiss.omp_set_num_threads(1)  # batch-1 queries: threads cost more than they give
    scale = os.environ.get("MLSD_SCALE", get_settings().scale)
    wd = workdir(scale)
    ref, model_dir = Registry().load("recsys_two_tower", CHAMPION, dst=wd / "serving_model")
    meta = json.loads((model_dir / "config.json").read_text())
    res["cfg"] = TowerConfig(**meta["tower"])
    res["session"] = make_session(model_dir / "user_tower.onnx", threads=1)
    res["seen_videos"] = np.load(model_dir / "seen_videos.npy")
    index_path = wd / "index" / "serving.faiss"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} missing; run `mlsd recsys index --scale {scale}`")
    from systems.recsys_two_tower.index import maybe_gpu

    res["index"] = maybe_gpu(faiss.read_index(str(index_path)))  # GPU when faiss sees one, else as is
    res["trending"] = np.load(wd / "trending.npy")
    res["features"] = OnlineFeatures(feature_repo(wd, scale))
    res["model_version"] = f"recsys_two_tower v{ref.version}"
    # warm the paths once so the first request does not pay for lazy initialisation
    res["features"].read(0)
    recommend_for(res, RecommendRequest(user_id=0, k=10))


def recommend_for(res: Resources, req: RecommendRequest) -> dict[str, Any]:
    cfg: TowerConfig = res["cfg"]
    with stage("features"):
        cols = res["features"].read(req.user_id)
    degraded = cols is None
    known = not degraded and cols["watches_30d"][0] is not None
    if not degraded and not known:
        with stage("trending"):
            ids = res["trending"][: req.k]
            items = [{"video_id": int(v), "score": 0.0} for v in ids]
        return {"items": items, "cold_start": True, "degraded": False}
    if degraded:  # the same defaults training used for a user without a snapshot
        cols = {"user_id": [req.user_id]} | {c: [None] for c in USER_COLS}
    with stage("transform"):
        bucket, dense, history = user_inputs(cols, cfg, res["seen_videos"])
    with stage("model"):
        query = res["session"].run(None, {"user_bucket": bucket, "dense": dense, "history": history})[0]
    with stage("ann"):
        margin = MARGIN if req.exclude_seen else 0
        scores, ids = res["index"].search(query, req.k + margin)
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


def build_app() -> FastAPI:
    """The app factory uvicorn calls (`--factory`)."""
    app = create_app("recsys", load=load_resources, title="mlsd recsys: two-tower video recommendations")

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(req: RecommendRequest, res: Resources = Depends(require_ready)) -> dict[str, Any]:
        out = recommend_for(res, req)
        timings = current_timings()
        stages = {k: round(v, 3) for k, v in (timings.stages.items() if timings else [])}
        return {"user_id": req.user_id, "model_version": res["model_version"], "stages_ms": stages, **out}

    return app
