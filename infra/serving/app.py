"""The FastAPI app factory every system serves from.

Gives each app: /healthz, /readyz (503 until `load` has finished), /metrics (Prometheus text),
/stats (recent per-stage percentiles, JSON), /floor (an empty route: the latency floor for benchmarks),
a Server-Timing header with per-stage milliseconds, one JSON access-log line per request, and one
error shape for every failure: {"error": kind, "message": one line, "fields": [...]}.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra.logs import configure_logging
from infra.serving.timing import RequestTimings, StageStats, _current

T = TypeVar("T")
log = logging.getLogger("mlsd.serving")
access_log = logging.getLogger("mlsd.access")

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INTERNAL_ROUTES = {"/healthz", "/readyz", "/metrics", "/stats", "/stats/reset"}


class AppState(Generic[T]):
    """The app's loading state and, once `load()` has returned, the system's typed resources."""

    def __init__(self) -> None:
        self.ready = False
        self.error: str | None = None
        self.resources: T | None = None

    def get(self) -> T:
        """The resources, or HTTP 503 while loading (or when loading failed, with the reason)."""
        if not self.ready or self.resources is None:
            raise HTTPException(status_code=503, detail=self.error or "still loading; poll /readyz")
        return self.resources


def error_body(kind: str, message: str, fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": kind, "message": message, "fields": fields or []}


class TimingMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): timings, metrics, header, access log."""

    def __init__(self, app: Any, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timings = RequestTimings()
        token = _current.set(timings)
        t0 = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                total_ms = (time.perf_counter() - t0) * 1000.0
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", timings.header(total_ms).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _current.reset(token)
            total_s = time.perf_counter() - t0
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            st: AppTelemetry = self.fastapi_app.state.telemetry
            st.observe(scope.get("method", ""), path, status_holder["status"], total_s, timings)
            if path not in INTERNAL_ROUTES and st.access_log_enabled:
                access_log.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "method": scope.get("method"),
                            "path": scope.get("path"),
                            "route": path,
                            "status": status_holder["status"],
                            "ms": round(total_s * 1000.0, 3),
                            "stages": {k: round(v, 3) for k, v in timings.stages.items()},
                            **timings.flags,
                        }
                    )
                )


class AppTelemetry:
    def __init__(self, name: str, access_log_enabled: bool) -> None:
        self.registry = CollectorRegistry()
        self.access_log_enabled = access_log_enabled
        self.requests = Counter(
            "mlsd_requests", "Requests served", ["app", "route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mlsd_request_seconds",
            "Request latency",
            ["app", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "mlsd_stage_seconds",
            "Per-stage latency inside a request",
            ["app", "route", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.name = name
        self.stats = StageStats()

    def observe(self, method: str, route: str, status: int, total_s: float, timings: RequestTimings) -> None:
        self.requests.labels(self.name, route, method, str(status)).inc()
        if route in INTERNAL_ROUTES:
            return
        self.latency.labels(self.name, route).observe(total_s)
        self.stats.record(route, "total", total_s * 1000.0)
        for stage_name, ms in timings.stages.items():
            self.stage_latency.labels(self.name, route, stage_name).observe(ms / 1000.0)
            self.stats.record(route, stage_name, ms)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    fields = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        name = ".".join(x for x in loc if x not in ("body", "query", "path")) or "body"
        fields.append({"field": name, "loc": loc, "message": err.get("msg", "invalid")})
    return fields


def create_app(
    name: str,
    load: Callable[[], Any] | None = None,
    *,
    title: str | None = None,
    access_log_enabled: bool = True,
    load_in_background: bool = True,
) -> FastAPI:
    """An app with the mlsd endpoints; `load()` returns the system's resources (a typed object) and the app
    turns ready. Handlers take them with a dependency: `res: Annotated[MyResources, Depends(require_ready)]`.
    A resources object with a `close()` method is closed at shutdown."""
    configure_logging()
    resources: AppState[Any] = AppState()

    def _run_load() -> None:
        t0 = time.perf_counter()
        try:
            resources.resources = load() if load is not None else object()
            resources.ready = True
            log.info("%s ready in %.1f s", name, time.perf_counter() - t0)
        except Exception as exc:  # shown on /readyz, never as a crash loop
            resources.error = f"{type(exc).__name__}: {exc}"
            log.error("%s failed to load: %s\n%s", name, resources.error, traceback.format_exc())

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # noqa: ANN202
        if load_in_background:
            threading.Thread(target=_run_load, name=f"{name}-load", daemon=True).start()
        else:
            _run_load()
        yield
        closer = getattr(resources.resources, "close", None)
        if callable(closer):
            closer()

    app = FastAPI(title=title or name, lifespan=lifespan)
    app.state.resources = resources
    app.state.telemetry = AppTelemetry(name, access_log_enabled)
    app.add_middleware(TimingMiddleware, fastapi_app=app)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc)
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(status_code=422, content=error_body("validation_error", message, fields))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_ready" if exc.status_code == 503 else "http_error"
        return JSONResponse(
            status_code=exc.status_code, content=error_body(kind, str(exc.detail)), headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _internal(_req: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %s\n%s", exc, traceback.format_exc())
        return JSONResponse(
            status_code=500, content=error_body("internal_error", f"{type(exc).__name__}: {exc}")
        )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        if resources.ready:
            return JSONResponse({"status": "ready"})
        body = error_body("not_ready", resources.error or "loading models and indexes")
        return JSONResponse(status_code=503, content=body)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(app.state.telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/stats", tags=["ops"])
    async def stats() -> dict[str, Any]:
        return app.state.telemetry.stats.summary()

    @app.post("/stats/reset", tags=["ops"])
    async def stats_reset() -> dict[str, str]:
        app.state.telemetry.stats.reset()
        return {"status": "reset"}

    @app.get("/floor", tags=["ops"])
    async def floor() -> dict[str, Any]:
        """An empty route: what the framework, the network and the load generator cost alone."""
        return {}

    return app


def require_ready(request: Request) -> Any:
    """FastAPI dependency: the app's resources, or 503 while it is still loading."""
    return request.app.state.resources.get()
