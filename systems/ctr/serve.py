"""POST /predict: rank a request's candidate ads by calibrated P(click), and log what was served.

request -> features (user: Feast online store; ads: a snapshot of the online store loaded at start)
        -> the same `model_inputs` transform training used -> ONNX Runtime -> ranked ads
        -> the serving log (request id, features, scores), joined later to training rows for skew checks

Every candidate is scored at position 1 (P(click | seen at the top)): the position effect learned in
training is held fixed, so it cannot masquerade as relevance.

The console at `GET /` (infra.serving.console): the request form, live per-stage latency, generated traffic; a
live A/B (LiveAB: users assigned by infra.experiments.assignment, the champion against the challenger or itself,
clicks on the top ad drawn from the simulated market's known click model, lift with its interval, the mSPRT
p-value beside the naive one at every look, the SRM check); and switches: the online store down (the population
default, `degraded`), a skewed serving path (skew.py's cases), and a logging bug that loses treatment users (SRM).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import onnxruntime as ort
import pandas as pd
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from infra.artifacts import Artifacts
from infra.config import get_settings
from infra.experiments.assignment import bucket
from infra.experiments.stats import msprt_pvalues, srm_check, two_proportion_ztest
from infra.features import FeatureRepo
from infra.monitoring.distances import categorical_psi
from infra.registry import Registry
from infra.resilience import CircuitBreaker, guarded_call_async
from infra.serving import create_app, error_body, require_ready, stage
from infra.serving.console import Console, Settings, TrafficRequest, add_console
from infra.serving.onnx import make_session
from systems.ctr.config import CtrSettings
from systems.ctr.data import Market, load_market, load_rows, sigmoid, true_logit_seen, user_activity
from systems.ctr.features import CAT_FIELDS, PROJECT, model_inputs
from systems.ctr.train import MODEL_NAME

log = logging.getLogger("mlsd.ctr")
AD_COLUMNS = ["advertiser_id", "ad_category", "ad_quality", "promoted"]


INT64_MAX = 2**63 - 1  # ids the online store (SQLite/Redis keys) and numpy int64 hold: larger is a 422
AdId = Annotated[int, Field(ge=0, le=INT64_MAX)]
FEATURE_DEADLINE_S = (
    0.25  # the online read's budget inside the 30 ms p99 SLO's slack; then the default answer
)
# An unknown user's features (segment and activity missing): what the model saw for new users in training,
# i.e. the population default. The answer a request gets when the online store is slow, failing or its
# circuit open, flagged in `degraded`.
POPULATION_DEFAULT_USER: dict[str, Any] = {}
PREDICT_EXAMPLE: dict[str, Any] = {
    "request_id": "r-1",
    "user_id": 42,
    "site_id": 3,
    "device": 2,
    "candidates": [1, 2, 3],
}


class PredictRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PREDICT_EXAMPLE]})

    request_id: str = Field(
        min_length=1, max_length=128, description="joins the serving log to training rows"
    )
    user_id: int = Field(ge=0, le=INT64_MAX)
    site_id: int = Field(ge=0, lt=1_000_000)
    device: int = Field(ge=0, le=2, description="0 desktop, 1 tablet, 2 phone")
    timestamp: datetime | None = Field(None, description="request time (UTC); default now")
    candidates: list[AdId] = Field(min_length=1, max_length=500, description="ad ids to rank")

    @field_validator("timestamp")
    @classmethod
    def _utc_representable(cls, v: datetime | None) -> datetime | None:
        """A time whose UTC form does not exist (year 1 at +01:00) is the client's error, not a 500."""
        if v is None:
            return v
        try:
            return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"timestamp has no UTC equivalent: {exc}") from exc


class ScoredAd(BaseModel):
    ad_id: int
    p_click: float


class PredictResponse(BaseModel):
    request_id: str
    model_version: str
    ads: list[ScoredAd]
    degraded: str | None = Field(
        None, description="why the user's features are the population default (online store slow or down)"
    )


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
    """Appends one JSON line per request from a background thread (the request never waits on disk).

    A line that cannot be written (queue full, disk full, I/O error) is counted in `dropped`, never raised: the
    thread outlives a full disk and writes again once space returns; /stats shows the counts, and a dropped line
    shows as a gap in the skew join. `close()` returns within `close_timeout_s` whatever the disk does; lines
    still queued then are counted as dropped."""

    def __init__(self, path: Path, maxsize: int = 100_000, close_timeout_s: float = 5.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.close_timeout_s = path, close_timeout_s
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=maxsize)
        self._lock = threading.Lock()
        self.counts = {"written": 0, "dropped_queue_full": 0, "dropped_write_error": 0, "dropped_at_close": 0}
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._write, name="serving-log", daemon=True)
        self._thread.start()

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def append(self, entry: dict) -> None:
        # never block serving on the log
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._count("dropped_queue_full")

    def _write(self) -> None:
        f, pending = None, 0  # lines written to the file's buffer since the last successful flush
        while (entry := self._queue.get()) is not None:
            pending += 1
            try:
                f = f or self.path.open("a")
                f.write(json.dumps(entry) + "\n")
                if self._queue.empty():
                    f.flush()
                    self._count("written", pending)
                    pending = 0
            except Exception as exc:  # a full disk (ENOSPC), an I/O error: count it, keep the thread alive
                self._count("dropped_write_error", pending)
                pending = 0
                if self.last_error is None:
                    log.error("serving log %s: lines dropped (%s); counting drops on /stats", self.path, exc)
                self.last_error = f"{type(exc).__name__}: {exc}"
                if f is not None:
                    with contextlib.suppress(Exception):
                        f.close()  # what the buffer held is gone: reopen on the next line
                    f = None
        if f is not None:
            try:
                f.close()
                self._count("written", pending)
            except Exception:
                self._count("dropped_write_error", pending)

    @property
    def dropped(self) -> int:
        with self._lock:
            return sum(v for k, v in self.counts.items() if k.startswith("dropped"))

    def snapshot(self) -> dict[str, Any]:
        """What /stats shows under "serving_log"."""
        with self._lock:
            counts = dict(self.counts)
        return {**counts, "dropped": sum(v for k, v in counts.items() if k.startswith("dropped")),
                "queued": self._queue.qsize(), "writer_alive": self._thread.is_alive(), "last_error": self.last_error}  # fmt: skip

    def close(self) -> None:
        """Stop the writer; returns within close_timeout_s even on a hung disk or a full queue."""
        deadline = time.monotonic() + self.close_timeout_s
        while True:
            try:
                self._queue.put(None, timeout=0.05)
                break
            except queue.Full:
                if time.monotonic() >= deadline or not self._thread.is_alive():
                    break
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive() or self._queue.qsize():
            self._count("dropped_at_close", self._queue.qsize())
            log.error("serving log %s: writer did not finish within %.1f s", self.path, self.close_timeout_s)


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
    breaker: CircuitBreaker  # the online store's; shown on /readyz and /metrics
    challenger: tuple[ort.InferenceSession, int, str] | None = (
        None  # the console's A/B arm: (session, buckets, name)
    )
    ab: LiveAB | None = None  # the console's live A/B over the simulated market
    monitor: LiveMonitor | None = None  # the console's drift and skew monitor

    def close(self) -> None:
        self.log.close()

    def user_features(self, user_id: int) -> dict[str, Any]:
        """One user's features from the online store (blocking: runs on the breaker's threads)."""
        values, _ = self.repo.online(self.user_service, [{"user_id": user_id}])
        return {k: v[0] for k, v in values.items()}


class CorruptModel(RuntimeError):
    """The served model cannot be served: a file unreadable (truncated, empty, not a model) or other fields."""


def load_model(folder: Path, label: str) -> tuple[ort.InferenceSession, int]:
    """The ONNX scorer and its hashing table size from a downloaded model folder, each file checked.

    Read first in `load`, before the online store: a bad file fails start-up in milliseconds, naming itself."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
        n_buckets, fields = int(config["n_buckets"]), tuple(config["cat_fields"])
        path = folder / "model.onnx"
        session = make_session(path, threads=1, prefer_gpu=False)
    except Exception as exc:  # json, KeyError, ONNX Runtime's own exception types: all one reason for /readyz
        raise CorruptModel(
            f"model {label}: {path.name} cannot be read ({type(exc).__name__}: {str(exc)[:300]}); "
            "retrain it with `mlsd ctr train`, or point MLSD_CTR_ALIAS at another version"
        ) from exc
    if fields != CAT_FIELDS:
        raise CorruptModel(
            f"model {label} was trained on other fields {fields}; retrain it with `mlsd ctr train`"
        )
    return session, n_buckets


def load(settings: CtrSettings, art: Artifacts, breaker: CircuitBreaker | None = None) -> CtrResources:
    """Model behind the alias (MLSD_CTR_ALIAS, default champion), ad snapshot, user feature reader."""
    alias = settings.alias
    ref, folder = Registry().load(MODEL_NAME, alias, dst=art.dir(f"serving/{alias}"))
    session, n_buckets = load_model(folder, f"{ref.name} v{ref.version}@{alias}")
    repo = FeatureRepo(PROJECT, art.require("features/repo", "data"))
    repo.check_online_store()
    market = load_market(art)
    ad_ids = market.ads["ad_id"].tolist()
    values, _ = repo.online(repo.feature_service("ctr_ad"), [{"ad_id": a} for a in ad_ids])
    ads = pd.DataFrame({c: values[c] for c in AD_COLUMNS}, index=pd.Index(values["ad_id"], name="ad_id"))
    try:  # the console's A/B arm; a server without a challenger serves on, without the A/B
        cref, cfolder = Registry().load(MODEL_NAME, "challenger", dst=art.dir("serving/challenger"))
        challenger = (
            *load_model(cfolder, f"{cref.name} v{cref.version}@challenger"),
            f"{cref.name}/{cref.version}@challenger",
        )
    except Exception as exc:  # noqa: BLE001 (no challenger registered, or one that cannot be read: said, not fatal)
        log.warning("no challenger for the console's A/B: %s", exc)
        challenger = None
    return CtrResources(
        challenger=challenger,
        ab=LiveAB(market),
        monitor=LiveMonitor(load_rows(art)),
        session=session,
        version=f"{ref.name}/{ref.version}@{alias}",
        n_buckets=n_buckets,
        repo=repo,
        user_service=repo.feature_service("ctr_user"),
        ads=AdTable(ads),
        log=ServingLog(art.path(f"serving_log/{os.getpid()}.jsonl")),
        breaker=breaker or CircuitBreaker("feast_online"),
    )


PANEL = Path(__file__).with_name("panel.html")  # the console's A/B panel
SKEWED_PATHS = {"none": OnlinePath(), "missing-default": OnlinePath(missing_fill=0.0),
                "timezone": OnlinePath(hour_offset_h=-5)}  # skew.py's serving-path cases  # fmt: skip


AB_SALT = "ctr-console-ab"  # the assignment's salt: a user's arm is the same on every request
LOOK_EVERY = 50  # requests in the experiment between two looks at the p-values (the peeking the page shows)
SRM_BUG_LOSS = 0.4  # share of treatment users the logging bug loses (say, one app version never logs)


PSI_ALERT = 0.25  # infra.monitoring.drift: above it, a major shift
MONITOR_WINDOW = 1000  # the live window the monitor compares with training: the last requests served
DEVICE_MIX = (
    0.55,
    0.35,
    0.10,
)  # desktop, tablet, phone: the simulated market's (experiment.candidate_requests)


class LiveMonitor:
    """The drift monitor on what /predict serves: each request's device and site over the last MONITOR_WINDOW
    requests against the training rows, by PSI (infra.monitoring)."""

    def __init__(self, rows: pd.DataFrame) -> None:
        # device and site only: user activity as served (the latest snapshot) differs from the training rows' (as of
        # each impression, missing for new users) by design, so its PSI against them is high on clean traffic
        self.reference = {"device": np.bincount(rows["device"].to_numpy(np.int64), minlength=3),
                          "site_id": np.bincount(rows["site_id"].to_numpy(np.int64))}  # fmt: skip
        self.live: dict[str, deque] = {k: deque(maxlen=MONITOR_WINDOW) for k in self.reference}
        self.users = rows["user_id"].to_numpy(
            np.int64
        )  # who the training rows saw, as often: generated traffic
        self.alerting: set[str] = set()
        self.seen = 0

    def observe(self, frame: dict[str, np.ndarray]) -> None:
        self.seen += 1
        for name, window in self.live.items():
            window.append(float(frame[name][0]))

    def psi(self) -> dict[str, float]:
        if len(self.live["device"]) < MONITOR_WINDOW // 4:
            return {}
        out = {}
        for name, ref in self.reference.items():
            counts = np.bincount(np.asarray(self.live[name], np.int64), minlength=ref.size)[: ref.size]
            out[name] = categorical_psi(ref, counts)
        return out

    def reset(self) -> None:
        for window in self.live.values():
            window.clear()
        self.alerting.clear()


class CtrKnobs(Settings):
    ab: Literal["off", "A/A", "champion vs challenger"] = Field(
        "off", description="the live A/B: users split 50/50 by infra.experiments.assignment"
    )


class LiveAB:
    """The console's live A/B: per-arm users, impressions and clicks on the top-ranked ad, clicks drawn from the
    simulated market's known click model (data.true_logit_seen), and a look at the tests every LOOK_EVERY
    requests: the naive two-proportion p-value and the always-valid mSPRT one (infra.experiments.stats)."""

    def __init__(self, market: Market, seed: int = 0) -> None:
        self.market, self.rng = market, np.random.default_rng(seed)
        self.activity = user_activity(market, market.config.n_days - 1)
        self.lock = threading.Lock()
        self.reset("off")

    def reset(self, mode: str) -> None:
        with self.lock:
            self.mode = mode
            self.users: list[set[int]] = [set(), set()]
            self.shown, self.clicks = np.zeros(2), np.zeros(2)
            self.looks: list[tuple[float, float]] = []  # (effect, variance) at each look
            self.naive: list[float] = []
            self.requests = 0

    def arm(self, user_id: int) -> int:
        return bucket(user_id, AB_SALT, 2)  # 0 control, 1 treatment

    def p_click(self, user_id: int, frame: dict[str, np.ndarray], top: int) -> float | None:
        """The true P(click | seen at slot 1) of the top ad for this user; None for a user the market lacks."""
        users, cfg = self.market.users, self.market.config
        if not 0 <= user_id < len(users) or not 0 <= int(frame["site_id"][top]) < cfg.n_sites:
            return None
        row = pd.DataFrame({c: [frame[c][top]] for c in ("ad_category", "advertiser_id", "site_id", "device",
                                                          "ad_quality", "hour")})  # fmt: skip
        row["user_segment"] = users["user_segment"].to_numpy()[user_id]
        row["user_id"], row["is_new_user"], row["true_activity"] = user_id, False, self.activity[user_id]
        return float(sigmoid(true_logit_seen(self.market, row))[0])

    def record(self, user_id: int, arm: int, p: float, logged: bool) -> None:
        with self.lock:
            if logged:
                self.users[arm].add(user_id)
            self.shown[arm] += 1
            self.clicks[arm] += self.rng.random() < p
            self.requests += 1
            if self.requests % LOOK_EVERY == 0 and self.shown.min() > 0:
                t = two_proportion_ztest(self.clicks[0], self.shown[0], self.clicks[1], self.shown[1])
                self.looks.append((float(t.effect), float(t.se) ** 2 or 1e-12))
                self.naive.append(float(t.p_value))

    def summary(self) -> dict[str, Any]:
        with self.lock:
            if self.mode == "off" or self.shown.min() == 0:
                return {"mode": self.mode}
            t = two_proportion_ztest(self.clicks[0], self.shown[0], self.clicks[1], self.shown[1])
            ctr_c = self.clicks[0] / self.shown[0]
            seq = 1.0
            if self.looks:
                effect, var = (np.array(v) for v in zip(*self.looks, strict=True))
                seq = float(msprt_pvalues(effect, var, tau=max(0.05 * ctr_c, 1e-4))[-1])
            users = [len(u) for u in self.users]
            _, srm_p, srm_alert = srm_check(np.array(users), np.array([0.5, 0.5]))
            return {"mode": self.mode, "users": users, "shown": self.shown.tolist(), "clicks": self.clicks.tolist(),
                    "ctr": (self.clicks / self.shown).tolist(), "lift": float(t.effect / ctr_c) if ctr_c else None,
                    "lift_ci": [float(t.ci_low / ctr_c), float(t.ci_high / ctr_c)] if ctr_c else None,
                    "naive_p": float(t.p_value), "sequential_p": seq, "looks": len(self.looks),
                    "naive_ever_below_005": bool(self.naive and min(self.naive) < 0.05),
                    "srm_p": srm_p, "srm_alert": bool(srm_alert)}  # fmt: skip


class CtrFaults(Settings):
    online_store_down: bool = Field(
        False, description="every user read fails: the population default, degraded"
    )
    skew: Literal["none", "missing-default", "timezone"] = Field(
        "none", description="a serving transform drifting from training's (skew.py's cases)"
    )
    drift: Literal["none", "phones_only", "one_site"] = Field(
        "none", description="shift the generated traffic: every request from a phone, or from one site"
    )
    srm_bug: bool = Field(
        False, description="the experiment log loses 40% of treatment users: the SRM check fires"
    )


def _store_down(user_id: int) -> dict[str, Any]:
    raise ConnectionError(f"online store down (the console's fault switch; user {user_id} not read)")


def ctr_traffic(
    rng: np.random.Generator, ad_ids: np.ndarray, users: np.ndarray, n_sites: int = 30, drift: str = "none"
) -> TrafficRequest:
    """A request of 20 random candidate ads for a random user, site and device (the market's mix); `drift`
    shifts the mix (every request from a phone, or from site 0)."""
    ads = (
        rng.choice(ad_ids, size=min(20, len(ad_ids)), replace=False) if len(ad_ids) else np.zeros(1, np.int64)
    )
    return TrafficRequest("/predict", {"request_id": f"console-{rng.integers(1 << 62):x}",
                                       "user_id": int(rng.choice(users)),
                                       "site_id": 0 if drift == "one_site" else int(rng.integers(n_sites)),
                                       "device": 2 if drift == "phones_only" else int(rng.choice(3, p=DEVICE_MIX)),
                                       "candidates": [int(a) for a in ads]})  # fmt: skip


def build_app(settings: CtrSettings | None = None, art: Artifacts | None = None) -> FastAPI:
    """The app; uvicorn's factory call (no arguments) reads MLSD_CTR_* and serves the MLSD_SCALE artifacts."""
    settings = settings or CtrSettings()
    art = art or Artifacts("ctr", get_settings().scale)
    breaker = CircuitBreaker("feast_online", failure_threshold=5, cooldown_s=5.0, max_workers=8)
    app = create_app(
        "ctr", load=lambda: load(settings, art, breaker), access_log_enabled=False, breakers=[breaker]
    )
    stats_route = next(r for r in app.router.routes if getattr(r, "path", None) == "/stats")
    app.router.routes.remove(stats_route)  # replaced below by the same summary plus the serving log's counts

    @app.get("/stats", tags=["ops"])
    async def stats() -> dict[str, Any]:
        out: dict[str, Any] = app.state.telemetry.stats.summary()
        state = app.state.resources
        if state.ready and state.resources is not None:
            out["serving_log"] = state.resources.log.snapshot()
        return out

    def traffic(rng: np.random.Generator) -> TrafficRequest:
        res: CtrResources = app.state.resources.get()
        drift: str = console.current_faults.drift
        users = res.monitor.users if res.monitor is not None else np.arange(6_000)
        n_sites = res.ab.market.config.n_sites if res.ab is not None else 30
        return ctr_traffic(rng, res.ads.ad_id, users, n_sites, drift)

    def apply(knobs: CtrKnobs, faults: CtrFaults) -> None:
        res: CtrResources = app.state.resources.get()
        if knobs.ab == "champion vs challenger" and res.challenger is None:
            raise ValueError(
                "no challenger model is registered: run `mlsd ctr train` (it registers DeepFM as one)"
            )
        if res.ab is not None and knobs.ab != console.current_knobs.ab:
            res.ab.reset(knobs.ab)

    def extra() -> dict[str, Any]:
        res = app.state.resources.resources
        if res is None:
            return {}
        return {"ab": res.ab.summary() if res.ab is not None else None,
                "psi": res.monitor.psi() if res.monitor is not None else {}, "psi_alert": PSI_ALERT}  # fmt: skip

    def watch(monitor: LiveMonitor) -> None:
        """The monitor's look: PSI per feature on the chart; an event when one crosses PSI_ALERT, and back."""
        for name, value in monitor.psi().items():
            console.series.gauge(f"psi_{name}", value)
            if value > PSI_ALERT and name not in monitor.alerting:
                monitor.alerting.add(name)
                console.event(f"DRIFT ALERT: {name} PSI {value:.2f} > {PSI_ALERT} against the training rows")
            elif value <= PSI_ALERT and name in monitor.alerting:
                monitor.alerting.discard(name)
                console.event(f"{name} PSI {value:.2f}: back under {PSI_ALERT}")

    console = Console(
        system="ctr", title="ctr: ad click prediction", knobs=CtrKnobs(), faults=CtrFaults(), traffic=traffic,
        request=TrafficRequest("/predict", PREDICT_EXAMPLE),
        apply=apply, panel=PANEL, extra=extra,
        gauges=("mean_p_click", "degraded", "naive_p", "sequential_p", "psi_device", "psi_site_id"),
    )  # fmt: skip
    add_console(app, console)

    @app.post("/predict", response_model=PredictResponse)
    async def predict(req: PredictRequest, res: Annotated[CtrResources, Depends(require_ready)]) -> Any:
        # async: the CPU work is ~1 ms, cheaper on the event loop than a hop to the threadpool; the online read
        # alone runs on the breaker's threads with a deadline, so a slow store never stalls the loop
        ads = res.ads
        unknown = [i for i, a in enumerate(req.candidates) if a not in ads]
        if unknown:
            fields: list[dict[str, Any]] = [{"field": f"candidates.{i}", "loc": ["body", "candidates", str(i)],
                       "message": f"unknown ad id {req.candidates[i]}"} for i in unknown[:10]]  # fmt: skip
            return JSONResponse(
                status_code=422, content=error_body("validation_error", fields[0]["message"], fields)
            )
        faults: CtrFaults = console.current_faults
        read = _store_down if faults.online_store_down else res.user_features
        with stage("features"):
            got = await guarded_call_async(read, req.user_id, deadline_s=FEATURE_DEADLINE_S,
                                           breaker=res.breaker, fallback=POPULATION_DEFAULT_USER)  # fmt: skip
            frame = request_frame(req, got.value, ads, SKEWED_PATHS[faults.skew])
        ab: str = console.current_knobs.ab
        arm = res.ab.arm(req.user_id) if ab != "off" and res.ab is not None else 0
        session, n_buckets, version = res.session, res.n_buckets, res.version
        if arm == 1 and ab == "champion vs challenger" and res.challenger is not None:
            session, n_buckets, version = res.challenger
        with stage("features"):
            cat, num = model_inputs(frame, n_buckets=n_buckets)
        with stage("model"):
            p = session.run(None, {"cat": cat, "num": num})[0]
        with stage("rank"):
            order = np.argsort(-p, kind="stable")
            ad_ids = frame["ad_id"]
            ranked = [ScoredAd(ad_id=int(ad_ids[i]), p_click=float(p[i])) for i in order]
        console.series.gauge("mean_p_click", float(p.mean()))
        if res.monitor is not None:
            res.monitor.observe(frame)
            if res.monitor.seen % LOOK_EVERY == 0:
                watch(res.monitor)
        if (
            ab != "off"
            and res.ab is not None
            and (truth := res.ab.p_click(req.user_id, frame, int(order[0]))) is not None
        ):
            lost = faults.srm_bug and arm == 1 and bucket(req.user_id, "srm-bug", 100) < SRM_BUG_LOSS * 100
            res.ab.record(req.user_id, arm, truth, logged=not lost)
            if res.ab.requests % LOOK_EVERY == 0 and (summary := res.ab.summary()).get("naive_p") is not None:
                console.series.gauge("naive_p", summary["naive_p"])
                console.series.gauge("sequential_p", summary["sequential_p"])
        console.series.gauge("degraded", float(got.degraded is not None))
        res.log.append(
            {
                "request_id": req.request_id,
                "ts": time.time(),
                "model_version": version,
                "features": loggable(frame),
                "scores": p.tolist(),
            }
        )
        return PredictResponse(
            request_id=req.request_id, model_version=version, ads=ranked, degraded=got.degraded
        )

    return app
