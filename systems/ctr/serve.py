"""POST /predict: rank a request's candidate ads by calibrated P(click), and log what was served.

request -> features (user: Feast online store; ads: a snapshot of the online store loaded at start)
        -> the same `model_inputs` transform training used -> ONNX Runtime -> ranked ads
        -> the serving log (request id, features, scores), joined later to training rows for skew checks

Every candidate is scored at position 1 (P(click | seen at the top)): the position effect learned in
training is held fixed, so it cannot masquerade as relevance.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from infra.artifacts import Artifacts
from infra.config import get_settings
from infra.features import FeatureRepo
from infra.registry import Registry
from infra.serving import create_app, error_body, require_ready, stage
from infra.serving.onnx import make_session
from systems.ctr.config import CtrSettings
from systems.ctr.data import load_market
from systems.ctr.features import CAT_FIELDS, PROJECT, model_inputs
from systems.ctr.train import MODEL_NAME

AD_COLUMNS = ["advertiser_id", "ad_category", "ad_quality", "promoted"]


class PredictRequest(BaseModel):
    request_id: str = Field(
        min_length=1, max_length=128, description="joins the serving log to training rows"
    )
    user_id: int = Field(ge=0)
    site_id: int = Field(ge=0, lt=1_000_000)
    device: int = Field(ge=0, le=2, description="0 desktop, 1 tablet, 2 phone")
    timestamp: datetime | None = Field(None, description="request time (UTC); default now")
    candidates: list[int] = Field(min_length=1, max_length=500, description="ad ids to rank")


class ScoredAd(BaseModel):
    ad_id: int
    p_click: float


class PredictResponse(BaseModel):
    request_id: str
    model_version: str
    ads: list[ScoredAd]


@dataclass(frozen=True)
class OnlinePath:
    """How the serving path turns raw values into features. The defaults match training exactly;
    the skew cases change one of them, as a real second code path drifts from the first."""

    missing_fill: float | None = None  # None: leave missing for the shared transform (as training does)
    hour_offset_h: int = 0  # 0: UTC hour, as in training; -5: the server's local time


def request_frame(
    req: PredictRequest, user: dict[str, Any], ads: AdTable, path: OnlinePath = OnlinePath()
) -> dict[str, np.ndarray]:
    """One row per candidate (columns as arrays): user, ad and context features, position fixed at 1."""
    ts = req.timestamp or datetime.now(UTC)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    hour = (ts.astimezone(UTC).hour + path.hour_offset_h) % 24
    rows = ads.rows(req.candidates)
    n = rows.size
    activity = user.get("user_activity")
    if activity is None and path.missing_fill is not None:
        activity = path.missing_fill
    segment = user.get("user_segment")
    return {
        "ad_id": ads.ad_id[rows],
        "user_segment": np.full(n, -1 if segment is None else segment, dtype=np.int64),
        "user_activity": np.full(n, np.nan if activity is None else activity, dtype=np.float64),
        **{c: ads.columns[c][rows] for c in AD_COLUMNS},
        "site_id": np.full(n, req.site_id, dtype=np.int64),
        "device": np.full(n, req.device, dtype=np.int64),
        "hour": np.full(n, hour, dtype=np.int64),
        "position": np.ones(n, dtype=np.int64),
    }


class AdTable:
    """The ad catalogue's features as arrays, read once from the online store; rows(ids) is a lookup."""

    def __init__(self, frame: pd.DataFrame) -> None:
        frame = frame.dropna()
        self.ad_id = frame.index.to_numpy(dtype=np.int64)
        self.columns = {
            c: frame[c].to_numpy(np.float64 if c == "ad_quality" else np.int64) for c in AD_COLUMNS
        }
        self._row = {int(a): i for i, a in enumerate(self.ad_id)}

    def __contains__(self, ad_id: int) -> bool:
        return ad_id in self._row

    def rows(self, ad_ids: list[int]) -> np.ndarray:
        return np.fromiter((self._row[a] for a in ad_ids), dtype=np.int64, count=len(ad_ids))


def loggable(features: dict[str, np.ndarray]) -> dict[str, list]:
    """Feature arrays as JSON-ready lists (NaN -> null)."""
    out = {}
    for k, v in features.items():
        if v.dtype.kind == "f":
            out[k] = [None if x != x else x for x in v.tolist()]
        else:
            out[k] = v.tolist()
    return out


class ServingLog:
    """Appends one JSON line per request from a background thread (the request never waits on disk)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=100_000)
        self._thread = threading.Thread(target=self._write, name="serving-log", daemon=True)
        self._thread.start()

    def append(self, entry: dict) -> None:
        # never block serving on the log; a dropped entry shows as a gap in the skew join
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(entry)

    def _write(self) -> None:
        with self.path.open("a") as f:
            while (entry := self._queue.get()) is not None:
                f.write(json.dumps(entry) + "\n")
                if self._queue.empty():
                    f.flush()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)


def read_serving_log(path: Path) -> pd.DataFrame:
    """The serving log as one row per (request, candidate): features as served, and the score."""
    columns: dict[str, list] = {}
    with path.open() as f:
        for line in f:
            entry = json.loads(line)
            n = len(entry["scores"])
            extra = {"request_id": [entry["request_id"]] * n, "p_click": entry["scores"],
                     "model_version": [entry["model_version"]] * n}  # fmt: skip
            for k, v in {**entry["features"], **extra}.items():
                columns.setdefault(k, []).extend(v)
    frame = pd.DataFrame(columns)
    if "user_activity" in frame:
        frame["user_activity"] = frame["user_activity"].astype(np.float64)  # null -> NaN
    return frame


@dataclass
class CtrResources:
    """What /predict needs, loaded once at start-up."""

    session: ort.InferenceSession  # the ONNX scorer behind the alias
    version: str  # "ctr/<version>@<alias>", returned with every response and logged
    n_buckets: int  # the hashing table size the model was trained with
    repo: FeatureRepo  # the Feast online store (user features per request)
    user_service: Any  # Feast FeatureService "ctr_user"
    ads: AdTable  # the ad catalogue's features, read from the online store at start
    log: ServingLog

    def close(self) -> None:
        self.log.close()


def load(settings: CtrSettings, art: Artifacts) -> CtrResources:
    """Model behind the alias (MLSD_CTR_ALIAS, default champion), ad snapshot, user feature reader."""
    alias = settings.alias
    ref, folder = Registry().load(MODEL_NAME, alias, dst=art.dir(f"serving/{alias}"))
    config = json.loads((folder / "config.json").read_text())
    if tuple(config["cat_fields"]) != CAT_FIELDS:
        raise RuntimeError(f"model {ref.name} v{ref.version} was trained on other fields; retrain it")
    repo = FeatureRepo(PROJECT, art.require("features/repo", "data"))
    repo.check_online_store()
    market = load_market(art)
    ad_ids = market.ads["ad_id"].tolist()
    values, _ = repo.online(repo.feature_service("ctr_ad"), [{"ad_id": a} for a in ad_ids])
    ads = pd.DataFrame({c: values[c] for c in AD_COLUMNS}, index=pd.Index(values["ad_id"], name="ad_id"))
    return CtrResources(
        session=make_session(folder / "model.onnx", threads=1, prefer_gpu=False),
        version=f"{ref.name}/{ref.version}@{alias}",
        n_buckets=int(config["n_buckets"]),
        repo=repo,
        user_service=repo.feature_service("ctr_user"),
        ads=AdTable(ads),
        log=ServingLog(art.path(f"serving_log/{os.getpid()}.jsonl")),
    )


def build_app(settings: CtrSettings | None = None, art: Artifacts | None = None) -> FastAPI:
    """The app; uvicorn's factory call (no arguments) reads MLSD_CTR_* and serves the MLSD_SCALE artifacts."""
    settings = settings or CtrSettings()
    art = art or Artifacts("ctr", get_settings().scale)
    app = create_app("ctr", load=lambda: load(settings, art), access_log_enabled=False)

    @app.post("/predict", response_model=PredictResponse)
    async def predict(req: PredictRequest, res: Annotated[CtrResources, Depends(require_ready)]) -> Any:
        # async on purpose: the work is ~1 ms of CPU (the SQLite online read included), cheaper on the
        # event loop than a hop to the threadpool; with a networked online store, await its client instead
        ads = res.ads
        unknown = [i for i, a in enumerate(req.candidates) if a not in ads]
        if unknown:
            fields = [{"field": f"candidates.{i}", "loc": ["body", "candidates", str(i)],
                       "message": f"unknown ad id {req.candidates[i]}"} for i in unknown[:10]]  # fmt: skip
            return JSONResponse(
                status_code=422, content=error_body("validation_error", fields[0]["message"], fields)
            )
        with stage("features"):
            try:
                values, _ = res.repo.online(res.user_service, [{"user_id": req.user_id}])
            except Exception as exc:
                raise HTTPException(status_code=503, detail=f"online store: {exc}") from exc
            user = {k: v[0] for k, v in values.items()}
            frame = request_frame(req, user, ads)
            cat, num = model_inputs(frame, n_buckets=res.n_buckets)
        with stage("model"):
            p = res.session.run(None, {"cat": cat, "num": num})[0]
        with stage("rank"):
            order = np.argsort(-p, kind="stable")
            ad_ids = frame["ad_id"]
            ranked = [ScoredAd(ad_id=int(ad_ids[i]), p_click=float(p[i])) for i in order]
        res.log.append(
            {
                "request_id": req.request_id,
                "ts": time.time(),
                "model_version": res.version,
                "features": loggable(frame),
                "scores": p.tolist(),
            }
        )
        return PredictResponse(request_id=req.request_id, model_version=res.version, ads=ranked)

    return app
