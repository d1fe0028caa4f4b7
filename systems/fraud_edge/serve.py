"""POST /score: one transaction -> velocity features (update + read) -> ONNX model -> decision, per-stage ms.

uvicorn --factory systems.fraud_edge.serve:build_app   (or `mlsd fraud serve`)
  MLSD_SCALE                      which artifact folder's LIVE bundle to serve (<data dir>/fraud/<scale>/)
  MLSD_FRAUD_STORE=redis|memory   velocity state (default: redis when MLSD_ONLINE_STORE=redis, else memory)
  MLSD_FRAUD_NAMESPACE=serve      Redis key namespace (mlsd:fraud:<namespace>:...)

The console at `GET /` (infra.serving.console): the review and decline thresholds with the cost curve of the
held-out days and where the setting sits on it; attack replays in the generated traffic (card testing, a
compromised terminal); "Redis down" (local features, the outage journal, what is reconciled once it is back); and a
tampered bundle offered on reload, refused.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.artifacts import Artifacts
from infra.config import get_settings
from infra.redact import redact
from infra.resilience import CircuitBreaker
from infra.serving import ApiError, create_app, current_timings, require_admin, require_ready
from infra.serving.console import Console, Settings, TrafficRequest, add_console
from systems.fraud_edge.bundle import BundleRejected, live_path
from systems.fraud_edge.config import FraudSettings
from systems.fraud_edge.data import CURRENCIES, EUR_PER_UNIT, load_data, temporal_split
from systems.fraud_edge.decision import Costs, Thresholds, model_actions, realized_cost, rule_actions
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
    held_out: HeldOut | None = None  # the console's cost curve: the test days, scored once at load
    switch: StoreSwitch | None = None  # the console's "Redis down" (None: the velocity state is in-process)

    def close(self) -> None:
        close = getattr(self.scorer.store, "close", None)  # the Redis store holds a connection pool
        if callable(close):
            close()


@dataclass
class HeldOut:
    """The test days of the training split with the live model's scores and the rules' floor: what a threshold
    setting would have cost on them (decision.realized_cost, the cost model the thresholds were chosen by)."""

    scores: np.ndarray  # (N,)
    floor: np.ndarray  # (N,) the hard rules' action
    is_fraud: np.ndarray  # (N,)
    amount_eur: np.ndarray  # (N,)
    curve: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def load(cls, art: Artifacts, scorer: EdgeScorer) -> HeldOut | None:
        if scorer.live is None or not art.path("transactions.parquet").exists():
            return None
        df, x = load_data(art)
        test = temporal_split(df).test
        return cls(scorer.live.predict(x[test].astype(np.float32)), rule_actions(x[test])[0],
                   df["is_fraud"].to_numpy()[test], df["amount_cents"].to_numpy()[test] / 100.0)  # fmt: skip

    def cost(self, t: Thresholds) -> dict[str, float]:
        actions = np.maximum(model_actions(self.scores, t), self.floor)
        return {"cost_eur": realized_cost(actions, self.is_fraud, self.amount_eur, Costs()),
                "decline_rate": float(np.mean(actions == 2)), "review_rate": float(np.mean(actions == 1))}  # fmt: skip

    def decline_curve(self, review: float) -> dict[str, list[float]]:
        """Cost over decline thresholds across the top 5% of scores (where choose_thresholds searches) up to 1
        (never), the review threshold held (a decline under it declines what review would have caught)."""
        grid = np.append(np.quantile(self.scores, np.linspace(0.95, 1.0, 30)), [min(review, NEVER), NEVER])
        grid = np.unique(grid.round(4))
        costs = [self.cost(Thresholds(never(min(review, d)), never(d)))["cost_eur"] for d in grid.tolist()]
        return {"decline": grid.tolist(), "cost_eur": [round(c, 1) for c in costs]}


class StoreSwitch:
    """The velocity store behind a switch: while `down`, every call fails as Redis does when it is out, so the
    scorer takes its real degraded path (local features, the outage journal, reconciliation when it is back)."""

    def __init__(self, inner: VelocityStore) -> None:
        self.inner, self.down = inner, False

    def update_and_read(self, tx: Transaction) -> tuple[dict[str, int], bool]:
        if self.down:
            raise StoreUnavailable("Redis down (the console's fault switch)")
        return self.inner.update_and_read(tx)

    def __getattr__(
        self, name: str
    ) -> object:  # everything else (the journal's replay, close) is the store's
        return getattr(self.inner, name)


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


PANEL = Path(__file__).with_name("panel.html")  # the console's panel: the cost curve and a score form
ATTACK_SHARE = 0.6  # of the generated traffic, while an attack replays
NEVER = 1.0  # a threshold knob at 1 is "never" (the bundle's inf: JSON has no infinity)


class FraudKnobs(Settings):
    review: float = Field(0.5, ge=0.0, le=NEVER, description="review at or above this score (1: never)")
    decline: float = Field(0.9, ge=0.0, le=NEVER, description="decline at or above this score (1: never)")

    @model_validator(mode="after")
    def _ordered(self) -> FraudKnobs:
        if self.review > self.decline:
            raise ValueError(
                f"review {self.review} is above decline {self.decline}: review must be the lower"
            )
        return self


class FraudFaults(Settings):
    attack: Literal["none", "card_testing", "terminal_compromise"] = Field(
        "none", description="replayed into the generated traffic (60% of it while on)"
    )
    redis_down: bool = Field(False, description="local features + outage journal; reconciled when back")
    tampered_bundle: bool = Field(False, description="offer a bundle with edited thresholds on reload")


def never(threshold: float) -> float:
    """A knob's threshold as the scorer's: NEVER is inf."""
    return float("inf") if threshold >= NEVER else threshold


def knob_thresholds(knobs: FraudKnobs) -> Thresholds:
    return Thresholds(never(knobs.review), never(knobs.decline))


def apply_console(res: FraudResources, knobs: FraudKnobs, faults: FraudFaults) -> None:
    """Thresholds onto a copy of the live model, swapped in whole (the scorer never edits one in place)."""
    live = res.scorer.live
    if live is not None:
        t = knob_thresholds(knobs)
        if live.thresholds != t:
            swapped = copy.copy(live)
            swapped.thresholds = t
            res.scorer.live = swapped
    if res.held_out is not None:
        res.held_out.curve = res.held_out.decline_curve(knobs.review)
    if res.switch is not None:
        res.switch.down = faults.redis_down


def offer_tampered_bundle(res: FraudResources) -> str:
    """A copy of the LIVE bundle with its decline threshold edited (what an attacker who can write the bundle
    folder would do), offered to the scorer: refused on its checksum, the old bundle still serving."""
    with tempfile.TemporaryDirectory(prefix="mlsd-tampered-") as tmp:
        path = Path(tmp) / live_path(res.bundles).resolve().name
        shutil.copytree(live_path(res.bundles).resolve(), path)
        thresholds = path / "thresholds.json"
        thresholds.write_text(thresholds.read_text().replace('"decline": 0', '"decline": 1', 1) + " ")
        try:
            res.scorer.load_bundle(path)
        except BundleRejected as exc:
            return f"tampered bundle refused: {redact(str(exc))}; still serving {res.scorer.bundle_version}"
    return "tampered bundle was ACCEPTED: the bundle check is broken"


def fraud_traffic(rng: np.random.Generator, attack: str) -> TrafficRequest:
    """Ordinary card payments around Paris; during an attack, ATTACK_SHARE of them are the attack's."""
    tx = {"tx_id": f"console-{rng.integers(1 << 62):x}", "card_id": f"c{rng.integers(5000):06d}",
          "terminal_id": f"t{rng.integers(500):05d}", "amount": round(float(rng.lognormal(3.2, 0.8)), 2),
          "currency": "EUR", "lat": 48.86 + float(rng.normal(0, 0.05)), "lon": 2.35 + float(rng.normal(0, 0.05))}  # fmt: skip
    if attack == "card_testing" and rng.random() < ATTACK_SHARE:  # one card, many terminals, tiny amounts
        tx |= {"card_id": "c-tested", "terminal_id": f"t{rng.integers(500):05d}", "amount": round(float(rng.uniform(0.5, 2)), 2)}  # fmt: skip
    elif attack == "terminal_compromise" and rng.random() < ATTACK_SHARE:  # one terminal, many cards
        tx |= {"terminal_id": "t-compromised", "amount": round(float(rng.uniform(200, 900)), 2)}
    return TrafficRequest("/score", tx)


def build_app(art: Artifacts | None = None, store: StoreKind | None = None) -> FastAPI:
    """The app serving the LIVE bundle of `art` (default: the MLSD_SCALE artifact folder)."""
    art = art or Artifacts("fraud", get_settings().scale)
    bundles = art.root / "bundles"
    fraud = FraudSettings()
    breaker = CircuitBreaker("velocity_store", failure_threshold=3, cooldown_s=2.0, max_workers=4)

    def load() -> FraudResources:
        scorer, degraded = make_scorer(bundles, store, breaker)
        resources = FraudResources(scorer, bundles, degraded)
        resources.held_out = HeldOut.load(art, scorer)
        if not isinstance(
            scorer.store, MemoryVelocityStore
        ):  # a Redis (Cluster) store: the switch can fail it
            resources.switch = StoreSwitch(scorer.store)
            scorer.store = resources.switch
        if scorer.live is not None:  # the console's default thresholds are the bundle's
            t = scorer.live.thresholds
            console.set_defaults(FraudKnobs(review=min(t.review, NEVER), decline=min(t.decline, NEVER)))
            apply_console(resources, console.knobs, console.faults)
        gc.collect()
        gc.freeze()  # loaded objects leave the GC's generations: fewer, shorter collection pauses in the tail
        return resources

    app = create_app("fraud", load=load, access_log_enabled=fraud.access_log, breakers=[breaker])
    state = app.state.resources
    seen: dict[str, object] = {"reconciled": None}

    def apply(knobs: FraudKnobs, faults: FraudFaults) -> None:
        res: FraudResources = state.get()
        if faults.redis_down and res.switch is None:
            raise ValueError("this server's velocity state is in-process (MLSD_FRAUD_STORE=memory): there is no "
                             "Redis to take down; start it with MLSD_FRAUD_STORE=redis")  # fmt: skip
        was = console.current_faults
        apply_console(res, knobs, faults)
        if faults.redis_down and not was.redis_down:
            console.event("Redis down: features from this process's own state, each transaction journaled")
        if faults.tampered_bundle and not was.tampered_bundle:
            console.event(offer_tampered_bundle(res))

    def extra() -> dict[str, object]:
        res = state.resources
        if res is None or res.held_out is None:
            return {}
        k: FraudKnobs = console.current_knobs
        held = res.held_out
        journal = res.scorer.journal
        return {"curve": held.curve, "at": held.cost(knob_thresholds(k)),
                "bundle": res.scorer.bundle_version,
                "journal_pending": bool(journal is not None and journal.pending())}  # fmt: skip

    console = Console(
        system="fraud_edge", title="fraud: edge scoring with velocity features", knobs=FraudKnobs(),
        faults=FraudFaults(), traffic=lambda rng: fraud_traffic(rng, console.current_faults.attack),
        request=TrafficRequest("/score", {"tx_id": "tx-console-1", "card_id": "c000001", "terminal_id": "t00001",
                                          "amount": 25.0, "currency": "EUR", "lat": 48.86, "lon": 2.35}),
        apply=apply, panel=PANEL, gauges=("decline_rate", "review_rate", "local_features"), extra=extra,
    )  # fmt: skip
    add_console(app, console)

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
        for action in ("decline", "review"):
            console.series.gauge(f"{action}_rate", float(decision.action == action))
        console.series.gauge("local_features", float(decision.degraded is not None))
        if res.scorer.last_reconciled is not None and res.scorer.last_reconciled is not seen["reconciled"]:
            seen["reconciled"] = done = res.scorer.last_reconciled
            what = "reconciled" if not done.pending else "reconciliation stopped (the store failed again)"
            console.event(f"outage journal {what}: {done.applied} applied, {done.already} already there, "
                          f"{done.conflicts} conflicts, {done.pending} pending")  # fmt: skip
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
