"""POST /score: one transaction -> velocity features (update + read) -> ONNX model -> decision, per-stage ms.

uvicorn --factory systems.fraud_edge.serve:build_app
  MLSD_FRAUD_STORE=redis|memory   velocity state (default: redis when MLSD_ONLINE_STORE=redis, else memory)
  MLSD_FRAUD_NAMESPACE=serve      Redis key namespace (mlsd:fraud:<namespace>:...)
"""

from __future__ import annotations

import gc
import os
import time
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from infra.config import get_settings
from infra.serving import Resources, create_app, current_timings, require_ready
from systems.fraud_edge.bundle import BundleRejected, live_path
from systems.fraud_edge.data import CURRENCIES, EUR_PER_UNIT
from systems.fraud_edge.features.velocity import Transaction

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class ScoreRequest(BaseModel):
    tx_id: str = Field(..., pattern=ID_PATTERN, description="unique per transaction; a retry reuses it")
    card_id: str = Field(..., pattern=ID_PATTERN)
    terminal_id: str = Field(..., pattern=ID_PATTERN)
    amount: float = Field(..., ge=0, le=1_000_000, description="in `currency`; negative is refused")
    currency: Literal[CURRENCIES] = "EUR"  # type: ignore[valid-type]
    lat: float = Field(..., ge=-90, le=90, description="terminal latitude")
    lon: float = Field(..., ge=-180, le=180, description="terminal longitude")
    ts: int | None = Field(None, ge=0, description="event time, epoch seconds; default: now")

    def transaction(self) -> Transaction:
        return Transaction(
            tx_id=self.tx_id,
            ts=int(time.time()) if self.ts is None else self.ts,
            card_id=self.card_id,
            terminal_id=self.terminal_id,
            amount_cents=round(self.amount * EUR_PER_UNIT[self.currency] * 100),
            lat_e6=round(self.lat * 1e6),
            lon_e6=round(self.lon * 1e6),
        )


class ScoreResponse(BaseModel):
    tx_id: str
    action: Literal["approve", "review", "decline"]
    score: float | None
    mode: str
    rules: list[str]
    replayed: bool
    degraded: str | None
    bundle_version: str | None
    stages_ms: dict[str, float]


class ReloadRequest(BaseModel):
    version: str | None = Field(None, pattern=r"^v\d{4}$", description="default: the one LIVE names")


def make_scorer():
    """The scorer with the store the environment asks for, serving the LIVE bundle."""
    from systems.fraud_edge.features.store import RedisVelocityStore
    from systems.fraud_edge.scorer import EdgeScorer
    from systems.fraud_edge.train import system_dir

    settings = get_settings()
    kind = os.environ.get("MLSD_FRAUD_STORE", "redis" if settings.online_store == "redis" else "memory")
    store = None
    if kind == "redis":
        store = RedisVelocityStore(settings.redis_url, os.environ.get("MLSD_FRAUD_NAMESPACE", "serve"))
    scorer = EdgeScorer(store)
    scorer.load_live(system_dir() / "bundles")
    return scorer


def build_app() -> FastAPI:
    def load(resources: Resources) -> None:
        resources["scorer"] = make_scorer()
        gc.collect()
        gc.freeze()  # loaded objects leave the GC's generations: fewer, shorter collection pauses in the tail

    app = create_app("fraud", load=load, access_log_enabled=os.environ.get("MLSD_ACCESS_LOG", "1") == "1")

    resources: Resources = app.state.resources

    @app.post(
        "/score",
        response_model=ScoreResponse,
        openapi_extra={
            "requestBody": {"content": {"application/json": {"schema": ScoreRequest.model_json_schema()}}}
        },
    )
    async def score(request: Request) -> JSONResponse:
        # Hot path, measured: FastAPI's body machinery (json.loads, a python-mode validation, the
        # dependency graph, jsonable_encoder on the way out) cost more than features + model + decision.
        # So: validate the raw bytes with pydantic's JSON mode and return a ready JSONResponse; errors keep
        # the shared 422 shape because RequestValidationError goes to the app's handler.
        if not resources.ready:
            raise HTTPException(503, resources.error or "still loading; poll /readyz")
        try:
            req = ScoreRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        decision = resources["scorer"].score(req.transaction())
        timings = current_timings()
        if timings is not None:
            for name, ms in decision.stages_ms.items():
                timings.add(name, ms)
        return JSONResponse(decision.__dict__)

    @app.post("/bundle/reload")
    async def reload(req: ReloadRequest, resources: Resources = Depends(require_ready)) -> dict[str, str]:
        """Verify and swap to a bundle version; a rejected one leaves the current one serving (409)."""
        from systems.fraud_edge.train import system_dir

        scorer = resources["scorer"]
        root = system_dir() / "bundles"
        try:
            path = root / req.version if req.version else live_path(root)
            version = scorer.load_bundle(path)
        except (BundleRejected, FileNotFoundError) as exc:
            raise HTTPException(409, f"{exc}; still serving {scorer.bundle_version}") from exc
        return {"serving": version}

    return app
