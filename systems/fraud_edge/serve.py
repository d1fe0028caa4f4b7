"""POST /score: one transaction -> velocity features (update + read) -> ONNX model -> decision, per-stage ms.

uvicorn --factory systems.fraud_edge.serve:build_app   (or `mlsd fraud serve`)
  MLSD_SCALE                      which artifact folder's LIVE bundle to serve (<data dir>/fraud/<scale>/)
  MLSD_FRAUD_STORE=redis|memory   velocity state (default: redis when MLSD_ONLINE_STORE=redis, else memory)
  MLSD_FRAUD_NAMESPACE=serve      Redis key namespace (mlsd:fraud:<namespace>:...)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra.artifacts import Artifacts
from infra.config import get_settings
from infra.redact import redact
from infra.resilience import CircuitBreaker
from infra.serving import ApiError, create_app, current_timings, require_admin, require_ready
from systems.fraud_edge.bundle import BundleRejected, live_path
from systems.fraud_edge.config import FraudSettings
from systems.fraud_edge.data import CURRENCIES, EUR_PER_UNIT
from systems.fraud_edge.features.store import (
    IdempotencyConflict,
    MemoryVelocityStore,
    RedisVelocityStore,
    StoreUnavailable,
    VelocityStore,
)
from systems.fraud_edge.features.velocity import HORIZON_S, Transaction
from systems.fraud_edge.journal import OutageJournal
from systems.fraud_edge.scorer import EdgeScorer

log = logging.getLogger("mlsd.fraud")
StoreKind = Literal["redis", "redis_cluster", "memory"]
MAX_TS = 4_102_444_800  # 2100-01-01: event times beyond any store's or numpy's trouble, refused at the schema

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        allow_inf_nan=False,
        json_schema_extra={  # no `ts`: the server's clock, so the example is never too late
            "examples": [
                {
                    "tx_id": "tx-1",
                    "card_id": "c000001",
                    "terminal_id": "t00001",
                    "amount": 25.0,
                    "currency": "EUR",
                    "lat": 48.86,
                    "lon": 2.35,
                }
            ]
        },
    )

    tx_id: str = Field(..., pattern=ID_PATTERN, description="unique per transaction; a retry reuses it")
    card_id: str = Field(..., pattern=ID_PATTERN)
    terminal_id: str = Field(..., pattern=ID_PATTERN)
    amount: float = Field(..., ge=0, le=1_000_000, description="in `currency`; negative is refused")
    currency: Literal[CURRENCIES] = "EUR"  # type: ignore[valid-type]
    lat: float = Field(..., ge=-90, le=90, description="terminal latitude")
    lon: float = Field(..., ge=-180, le=180, description="terminal longitude")
    ts: int | None = Field(
        None,
        ge=0,
        le=MAX_TS,
        description="event time, epoch seconds; default: now. Must lie within MLSD_FRAUD_MAX_LATENESS_S before "
        "and MLSD_FRAUD_MAX_FUTURE_S after the server clock (else 422)",
    )

    def transaction(self, now: int | None = None) -> Transaction:
        now = int(time.time()) if now is None else now
        return Transaction(
            tx_id=self.tx_id,
            ts=now if self.ts is None else self.ts,
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


def check_event_time(ts: int, now: int, fraud: FraudSettings) -> None:
    """422 (the shared validation shape) when ts is outside [now - max lateness, now + max future skew]: the
    velocity state trims by event time, so a time the server clock does not vouch for must change nothing."""
    lo, hi = now - fraud.max_lateness_s, now + fraud.max_future_s
    if not lo <= ts <= hi:
        raise RequestValidationError(
            [
                {
                    "type": "event_time_out_of_range",
                    "loc": ("body", "ts"),
                    "msg": f"event time {ts} is outside [{lo}, {hi}]: at most {fraud.max_lateness_s} s before "
                    f"and {fraud.max_future_s} s after the server clock ({now})",
                    "input": ts,
                }
            ]
        )


class ReloadRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{}, {"version": "v0001"}]})

    version: str | None = Field(None, pattern=r"^v\d{4}$", description="default: the one LIVE names")


def score_requests(rows: pd.DataFrame) -> list[dict]:
    """/score request bodies for rows of transactions.parquet (the bench replays them; the inverse of
    `ScoreRequest.transaction` for EUR rows)."""
    return [
        {
            "tx_id": r.tx_id,
            "card_id": r.card_id,
            "terminal_id": r.terminal_id,
            "amount": r.amount_cents / 100,
            "currency": "EUR",
            "lat": r.lat_e6 / 1e6,
            "lon": r.lon_e6 / 1e6,
            "ts": int(r.ts),
        }
        for r in rows.itertuples()
    ]


@dataclass
class FraudResources:
    """What the handlers use: the scorer (bundle + velocity store) and the folder bundles are reloaded from."""

    scorer: EdgeScorer
    bundles: Path
    degraded: str | None = None  # why the server scores from its own state only (/readyz shows it)

    def close(self) -> None:
        close = getattr(self.scorer.store, "close", None)  # the Redis store holds a connection pool
        if callable(close):
            close()


def retain_s(fraud: FraudSettings) -> int:
    """How far back of an event the stores keep history: the 24 h horizon plus the accepted event-time slack."""
    return HORIZON_S + fraud.max_lateness_s + fraud.max_future_s


def shared_velocity_store(kind: StoreKind, fraud: FraudSettings) -> tuple[VelocityStore | None, str | None]:
    """The Redis (Cluster) velocity state, or (None, why) when it does not answer at start: the edge design's
    degraded mode, scoring from this process's own state, with one warning line (the reason is on /readyz)."""
    if kind == "memory":
        return None, None
    settings, cluster = get_settings(), kind == "redis_cluster"
    try:
        store = RedisVelocityStore(
            settings.redis_cluster_url if cluster else settings.redis_url,
            fraud.namespace,
            cluster=cluster,
            retain_s=retain_s(fraud),
            # the socket frees the thread as soon as the request has given up on it
            timeout_s=fraud.redis_deadline_ms / 1000,
        )
    except StoreUnavailable as exc:
        why = (f"{redact(str(exc))}; meanwhile the velocity state is this process's own (not shared, not "
               "journaled): restart the server once the store answers")  # fmt: skip
        log.warning("serving degraded: %s", why)
        return None, why
    return store, None


def make_scorer(
    bundles: Path, store: StoreKind | None = None, breaker: CircuitBreaker | None = None
) -> tuple[EdgeScorer, str | None]:
    """The scorer with the velocity store asked for (default: MLSD_FRAUD_STORE), serving the LIVE bundle (rules
    alone, flagged, when the LIVE bundle is missing or rejected); and why it is degraded (None: it is not)."""
    settings, fraud = get_settings(), FraudSettings()
    default = settings.online_store if settings.online_store in ("redis", "redis_cluster") else "memory"
    velocity, degraded = shared_velocity_store(store or fraud.store or default, fraud)
    journal = OutageJournal(fraud.journal or bundles.parent / "journal" / f"{fraud.namespace}.jsonl")
    scorer = EdgeScorer(
        velocity,
        MemoryVelocityStore(retain_s=retain_s(fraud)),
        breaker=breaker,
        deadline_s=fraud.redis_deadline_ms / 1000,
        journal=journal if velocity is not None else None,
    )
    scorer.load_live(bundles)
    return scorer, degraded


def build_app(art: Artifacts | None = None, store: StoreKind | None = None) -> FastAPI:
    """The app serving the LIVE bundle of `art` (default: the MLSD_SCALE artifact folder)."""
    bundles = (art or Artifacts("fraud", get_settings().scale)).root / "bundles"
    fraud = FraudSettings()
    breaker = CircuitBreaker("velocity_store", failure_threshold=3, cooldown_s=2.0, max_workers=4)

    def load() -> FraudResources:
        scorer, degraded = make_scorer(bundles, store, breaker)
        resources = FraudResources(scorer, bundles, degraded)
        gc.collect()
        gc.freeze()  # loaded objects leave the GC's generations: fewer, shorter collection pauses in the tail
        return resources

    app = create_app("fraud", load=load, access_log_enabled=fraud.access_log, breakers=[breaker])
    state = app.state.resources

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
        res: FraudResources = state.get()  # 503 while loading
        try:
            req = ScoreRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        now = int(time.time())
        tx = req.transaction(now)
        check_event_time(tx.ts, now, fraud)  # before any state changes
        try:
            decision = await res.scorer.score_async(tx)
        except IdempotencyConflict as exc:
            raise ApiError(409, "idempotency_conflict", str(exc)) from None
        timings = current_timings()
        if timings is not None:
            for name, ms in decision.stages_ms.items():
                timings.add(name, ms)
        return JSONResponse(decision.__dict__)

    @app.post("/bundle/reload", dependencies=[Depends(require_admin)])
    async def reload(
        req: ReloadRequest, res: Annotated[FraudResources, Depends(require_ready)]
    ) -> dict[str, str]:
        """Verify and swap to a bundle version; a rejected one leaves the current one serving (409)."""
        try:
            path = res.bundles / req.version if req.version else live_path(res.bundles)
            version = res.scorer.load_bundle(path)
        except (BundleRejected, FileNotFoundError) as exc:
            raise HTTPException(409, f"{exc}; still serving {res.scorer.bundle_version}") from exc
        return {"serving": version}

    @app.post("/journal/reconcile", dependencies=[Depends(require_admin)])
    async def reconcile(res: Annotated[FraudResources, Depends(require_ready)]) -> dict[str, object]:
        """Replay the outage journal into Redis now (it also runs by itself on the first answer after an outage)."""
        done = await asyncio.to_thread(res.scorer.reconcile)
        return {"reconciled": asdict(done) if done is not None else None}

    return app
