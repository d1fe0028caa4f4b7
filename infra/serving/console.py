"""The interviewer's console: every system's server as a live prop, at `GET /`.

A system hands `add_console` a `Console`: its knobs and fault switches (two frozen pydantic models, so a bad value
is a 422 in the one error shape and changes nothing), a traffic source (one generated request per call) and the
request its form starts from. The console adds:

  GET  /                      the page (one template, infra/serving/static/console/, plus the system's own panel)
  GET  /console/meta          what the page builds itself from: knob and fault schemas, the request example
  GET  /console/interview     the system's INTERVIEW.md as text (404 with the path while it is not written)
  GET  /stats/series          per-second p50/p99 per stage over the last minutes, the system's gauges, the knob
                              and fault settings and the traffic generator's state (what the charts poll)
  POST /admin/knobs           {"nprobe": 16}: validate against the current settings, apply, answer the new ones
  POST /admin/faults          {"online_store_down": true}: the same for the fault switches
  POST /admin/reset           every knob and fault back to its default
  POST /admin/traffic/start   {"rate": 50, "duration_s": 60}: generated requests at `rate` per second over loopback
  POST /admin/traffic/stop

The admin routes need the server's MLSD_ADMIN_TOKEN (infra.serving.app.require_admin); the page asks for it once
and keeps it in a JavaScript variable, never in a URL, a cookie or storage. The traffic generator is bounded: at most
MAX_RATE requests a second, MAX_IN_FLIGHT at once (a tick with no slot free is counted as dropped, not queued), at
most MAX_DURATION_S, then it stops by itself; it only ever calls 127.0.0.1 on the port this server listens on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar, cast

import httpx
import numpy as np
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra.config import REPO_ROOT
from infra.serving.app import GENERATED_TRAFFIC_HEADER, ApiError, require_admin
from infra.serving.timing import SERIES_WINDOW_S, StageSeries

STATIC = Path(__file__).with_name("static") / "console"
MAX_RATE, MAX_IN_FLIGHT, MAX_DURATION_S = 200.0, 32, 600.0
MAX_FINISH_S = 10.0  # how long a stopped generator waits for its requests in flight (the client's timeout)
# marks a generated request: a system can sample its own (recsys recall); not access-logged (infra.serving.app)
TRAFFIC_HEADER = GENERATED_TRAFFIC_HEADER.decode()


class Settings(BaseModel):
    """Base of a system's knobs and faults: frozen, unknown names refused (a typo is a 422, not a no-op)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class TrafficRequest:
    """One generated request: POST `path` with JSON `body`."""

    path: str
    body: dict[str, Any]


class TrafficGenerator:
    """Generated requests against this very server over loopback, at a bounded rate, for a bounded time."""

    def __init__(self, source: Callable[[np.random.Generator], TrafficRequest]) -> None:
        self.source = source
        self.task: asyncio.Task | None = None
        self.rate = 0.0
        self.until = 0.0
        self.counts = {"sent": 0, "ok": 0, "errors": 0, "dropped": 0}
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done() and time.monotonic() < self.until

    def status(self) -> dict[str, Any]:
        remaining = max(0.0, self.until - time.monotonic()) if self.running else 0.0
        return {"running": self.running, "rate": self.rate, "remaining_s": round(remaining, 1),
                **self.counts, "last_error": self.last_error}  # fmt: skip

    def start(self, port: int, rate: float, duration_s: float, seed: int) -> None:
        if self.task is not None:
            self.task.cancel()  # the previous run's sender; its requests in flight finish on their own
        self.rate, self.until = rate, time.monotonic() + duration_s
        self.counts = dict.fromkeys(self.counts, 0)
        self.last_error = None
        self.task = asyncio.get_running_loop().create_task(self._run(port, seed))

    def stop(self) -> None:
        """No new requests; those in flight finish (cut off mid-body, a client disconnect is a server error)."""
        self.until = 0.0

    async def _one(self, client: httpx.AsyncClient, req: TrafficRequest, slots: asyncio.Semaphore) -> None:
        try:
            r = await client.post(req.path, json=req.body)
            self.counts["ok" if r.status_code < 400 else "errors"] += 1
            if r.status_code >= 400:
                self.last_error = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            self.counts["errors"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            slots.release()

    async def _run(self, port: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        pending: set[asyncio.Task] = set()
        # 127.0.0.1 and this server's own port, always: the generator cannot be aimed anywhere else
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={TRAFFIC_HEADER: "1"},
                                     timeout=10.0, trust_env=False) as client:  # fmt: skip
            next_at = time.monotonic()
            try:
                while time.monotonic() < self.until:
                    if slots.locked():
                        self.counts["dropped"] += 1
                    else:
                        await slots.acquire()
                        self.counts["sent"] += 1
                        task = asyncio.create_task(self._one(client, self.source(rng), slots))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    next_at += 1.0 / self.rate
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    next_at = max(next_at, time.monotonic() - 1.0)  # a stall does not become a burst
            finally:
                if pending:
                    await asyncio.wait(list(pending), timeout=MAX_FINISH_S)


# a partial change of knobs or faults: only the names sent change (validated against the whole model)
Patch = Annotated[dict[str, Any], Body(examples=[{}])]


class TrafficStart(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"rate": 20, "duration_s": 120}]}
    )

    rate: float = Field(20.0, gt=0, le=MAX_RATE, description="requests per second")
    duration_s: float = Field(120.0, gt=0, le=MAX_DURATION_S, description="stops by itself after this")
    seed: int = Field(0, ge=0, le=2**31 - 1)


K = TypeVar("K", bound=Settings)  # a system's knobs model
F = TypeVar("F", bound=Settings)  # a system's fault switches model


@dataclass
class Console(Generic[K, F]):
    """What a system gives its console. `apply(knobs, faults)` is called after every accepted change (and at
    reset), so the server's resources take the new settings; it may raise ValueError to refuse a combination
    (a 422, nothing changed)."""

    system: str  # the folder under systems/: its INTERVIEW.md is linked from the page
    title: str
    knobs: K  # the defaults; the current values live in `self.current_knobs`
    faults: F
    traffic: Callable[[np.random.Generator], TrafficRequest]
    request: TrafficRequest  # what the form starts from
    apply: Callable[[Any, Any], None] = lambda knobs, faults: None
    panel: Path | None = None  # the system's own panel: an HTML fragment with its script, above the raw form
    gauges: tuple[str, ...] = ()  # the gauge names the page charts, in order
    notes: dict[str, str] | None = None  # one line per knob or fault: what it shows
    extra: Callable[[], dict[str, Any]] | None = (
        None  # system figures the panel draws (fraud: the cost curve)
    )

    def __post_init__(self) -> None:
        self.current_knobs: K = self.knobs
        self.current_faults: F = self.faults
        self.series = StageSeries()
        self.generator = TrafficGenerator(self.traffic)
        self.events: deque[dict[str, Any]] = deque(maxlen=20)

    def event(self, text: str) -> None:
        """One line for the page's event list: what a switch did (a bundle refused, a journal reconciled)."""
        self.events.append({"ts": round(time.time(), 1), "text": text})

    def state(self) -> dict[str, Any]:
        return {"knobs": self.current_knobs.model_dump(), "faults": self.current_faults.model_dump(),
                "traffic": self.generator.status(), "events": list(self.events),
                "extra": self.extra() if self.extra is not None else {}}  # fmt: skip

    def change(self, what: str, patch: dict[str, Any]) -> None:
        """Validate `patch` over the current settings; apply all of it or none of it."""
        current = self.current_knobs if what == "knobs" else self.current_faults
        try:
            new = type(current).model_validate(current.model_dump() | patch)
            knobs = cast(K, new) if what == "knobs" else self.current_knobs
            faults = cast(F, new) if what != "knobs" else self.current_faults
            self.apply(knobs, faults)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        except ValueError as exc:
            raise RequestValidationError([{"loc": (what,), "msg": str(exc), "type": "value_error"}]) from None
        self.current_knobs, self.current_faults = knobs, faults

    def set_defaults(self, knobs: K) -> None:
        """New knob defaults known only once the server has loaded (recsys: the index step's nprobe)."""
        if self.current_knobs == self.knobs:
            self.current_knobs = knobs
        self.knobs = knobs

    def reset(self) -> None:
        self.apply(self.knobs, self.faults)
        self.current_knobs, self.current_faults = self.knobs, self.faults


def console_of(request: Request) -> Console[Any, Any]:
    return request.app.state.console


def add_console(app: FastAPI, console: Console[Any, Any]) -> None:
    """Mount the console's routes and feed its series from the app's stage timings."""
    app.state.console = console
    app.state.telemetry.series = console.series
    template = (STATIC / "console.html").read_text()
    panel = console.panel.read_text() if console.panel else ""
    page = template.replace("{{title}}", console.title).replace("{{panel}}", panel)
    admin = [Depends(require_admin)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def console_page() -> str:
        return page

    @app.get("/console/assets/{name}", include_in_schema=False)
    def console_asset(name: str) -> Response:
        types = {"console.js": "text/javascript", "console.css": "text/css"}
        if name not in types:
            raise ApiError(404, "not_found", f"no console asset {name!r}; there are {sorted(types)}")
        return Response((STATIC / name).read_text(), media_type=types[name])

    @app.get("/console/meta", tags=["console"])
    def console_meta() -> dict[str, Any]:
        return {
            "system": console.system,
            "title": console.title,
            "request": {"path": console.request.path, "example": console.request.body},
            "knobs": {
                "schema": type(console.knobs).model_json_schema(),
                "defaults": console.knobs.model_dump(),
            },
            "faults": {
                "schema": type(console.faults).model_json_schema(),
                "defaults": console.faults.model_dump(),
            },
            "gauges": list(console.gauges),
            "notes": console.notes or {},
            "interview": f"systems/{console.system}/INTERVIEW.md",
            "limits": {
                "max_rate": MAX_RATE,
                "max_duration_s": MAX_DURATION_S,
                "max_in_flight": MAX_IN_FLIGHT,
            },
        }

    @app.get("/console/interview", tags=["console"], response_class=PlainTextResponse)
    def console_interview() -> str:
        path = REPO_ROOT / "systems" / console.system / "INTERVIEW.md"
        if not path.exists():
            raise ApiError(404, "not_found", f"{path.relative_to(REPO_ROOT)} is not written yet")
        return path.read_text()

    @app.get("/stats/series", tags=["console"])
    def stats_series(window_s: Annotated[int, Query(ge=10, le=SERIES_WINDOW_S)] = 300) -> dict[str, Any]:
        return console.series.series(window_s) | console.state()

    @app.post("/admin/knobs", tags=["console"], dependencies=admin)
    def admin_knobs(patch: Patch) -> dict[str, Any]:
        console.change("knobs", patch)
        return console.state()

    @app.post("/admin/faults", tags=["console"], dependencies=admin)
    def admin_faults(patch: Patch) -> dict[str, Any]:
        console.change("faults", patch)
        return console.state()

    @app.post("/admin/reset", tags=["console"], dependencies=admin)
    def admin_reset() -> dict[str, Any]:
        console.reset()
        return console.state()

    @app.post("/admin/traffic/start", tags=["console"], dependencies=admin)
    async def admin_traffic_start(req: TrafficStart, request: Request) -> dict[str, Any]:
        server = request.scope.get("server")
        if not server or server[1] is None:
            raise ApiError(409, "no_port", "this server is not listening on a TCP port (a test client?)")
        console.generator.start(int(server[1]), req.rate, req.duration_s, req.seed)
        return console.state()

    @app.post("/admin/traffic/stop", tags=["console"], dependencies=admin)
    async def admin_traffic_stop() -> dict[str, Any]:
        console.generator.stop()
        return console.state()
