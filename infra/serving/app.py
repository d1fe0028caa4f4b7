"""The FastAPI app factory every system serves from.

Gives each app: /healthz, /readyz (503 until `load` has finished, with the reason when it failed; once ready, the
state of each dependency's circuit breaker, and `degraded`: why, when the resources carry a `degraded` reason),
/metrics (Prometheus text), /stats (recent per-stage percentiles, JSON), /floor (an empty route: the latency floor
for benchmarks), a Server-Timing header with per-stage milliseconds, one JSON access-log line per request, and one
error shape for every failure: {"error": kind, "message": one line, "fields": [...]}. A load that fails logs one
line (its traceback at DEBUG).

What a hostile or careless client gets, before any route runs (RequestGuard):
  a Host this server does not answer to   400 bad_host (DNS rebinding: a web page's script aimed at 127.0.0.1;
                                          the names served are MLSD_ALLOWED_HOSTS, the local ones by default)
  a body over `max_body_bytes` (64 KiB)   413 body_too_large (announced by Content-Length, or counted as it streams)
  a body that is not JSON                 415 unsupported_media_type (a web page's form post is not a CORS preflight)
Admin routes (`dependencies=[Depends(require_admin)]`; /stats/reset here) need `Authorization: Bearer
<MLSD_ADMIN_TOKEN>`: 401 without it, 403 while the setting is unset. Error text, /readyz and the logs this module
writes pass through `infra.redact.redact`, so a connection URL's password never reaches a client or a log.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra.config import ServiceUnavailable, get_settings
from infra.logs import configure_logging
from infra.redact import redact, redact_logger
from infra.serving.docs import add_offline_docs, package_version
from infra.serving.timing import RequestTimings, StageSeries, StageStats, _current

if TYPE_CHECKING:  # for annotations only: infra.resilience imports infra.serving.timing, so not at run time
    from infra.resilience import CircuitBreaker

T = TypeVar("T")
log = logging.getLogger("mlsd.serving")
access_log = logging.getLogger("mlsd.access")

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GENERATED_TRAFFIC_HEADER = b"x-mlsd-traffic"  # infra.serving.console.TRAFFIC_HEADER
# the console's routes (infra.serving.console)
CONSOLE_ROUTES = {"/", "/console/meta", "/console/interview", "/console/assets/{name}", "/stats/series",
                  "/admin/knobs", "/admin/faults", "/admin/reset", "/admin/traffic/start", "/admin/traffic/stop"}  # fmt: skip
# not timed into /stats nor access-logged: probes, scrapes and the console's own polling and admin calls
INTERNAL_ROUTES = {"/healthz", "/readyz", "/metrics", "/stats", "/stats/reset"} | CONSOLE_ROUTES
# Probes and scrapers address a pod by its IP, so these answer whatever the Host; they change nothing.
PROBE_ROUTES = {"/healthz", "/readyz", "/metrics"}
MAX_BODY_BYTES = 64 * 1024
ADMIN_TOKEN_HOWTO = (
    "set MLSD_ADMIN_TOKEN on the server (e.g. to the output of "
    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`) and send `Authorization: Bearer <token>`"
)


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


class ApiError(HTTPException):
    """An HTTPException with its own `error` kind in the body: ApiError(409, "conflict", "tx_id reused ...")."""

    def __init__(
        self, status_code: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.kind = kind


def _media_type_is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _host_name(host_header: str) -> str:
    """The host without its port: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:8000" -> "[::1]"."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if ":" in host else host


class RequestGuard:
    """Pure ASGI middleware: refuses a request by its headers before any route runs (Host, size, content type),
    and counts the body as it arrives so a stream without Content-Length is cut at the limit too."""

    def __init__(self, app: Any, max_body_bytes: int, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.any_host = "*" in allowed_hosts
        self.allowed_hosts = {h.lower() for h in allowed_hosts}

    def _refusal(self, scope: dict, headers: dict[bytes, bytes]) -> ApiError | None:
        method, path = scope.get("method", ""), scope.get("path", "")
        if not self.any_host and not (method in ("GET", "HEAD") and path in PROBE_ROUTES):
            host = headers.get(b"host", b"").decode("latin-1")
            if _host_name(host) not in self.allowed_hosts:
                return ApiError(
                    400,
                    "bad_host",
                    f"this server does not answer to Host {host[:100]!r}; it answers to "
                    f"{', '.join(sorted(self.allowed_hosts))} (to serve another name, add it to "
                    "MLSD_ALLOWED_HOSTS on the server, or pass create_app's allowed_hosts)",
                )
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            return ApiError(400, "bad_request", "Content-Length is not a number")
        if length is not None and int(length) > self.max_body_bytes:
            return self._too_large()
        has_body = (length is not None and length.strip(b"0") != b"") or b"transfer-encoding" in headers
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if has_body and not _media_type_is_json(content_type):
            return ApiError(
                415,
                "unsupported_media_type",
                f"send the body as JSON with `Content-Type: application/json` (got {content_type[:100]!r})",
            )
        return None

    def _too_large(self) -> ApiError:
        return ApiError(
            413, "body_too_large", f"the request body is over the limit of {self.max_body_bytes} bytes"
        )

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The first of a repeated header wins, as in Starlette's request.headers.
        headers = dict(reversed(scope.get("headers", ())))
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            body = error_body(refusal.kind, refusal.detail)
            await JSONResponse(status_code=refusal.status_code, content=body)(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # An HTTPException: FastAPI's body parsing re-raises it, a route reading request.body()
                    # raises it, and either way the app's handler answers 413 in the one error shape.
                    raise self._too_large()
            return message

        await self.app(scope, counted_receive, send)


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
            # the console's generated traffic (infra.serving.console) is timed and counted but not access-logged:
            # at tens of requests a second it would bury the terminal `make demo` prints its URLs on
            generated = any(name == GENERATED_TRAFFIC_HEADER for name, _ in scope.get("headers", ()))
            if path not in INTERNAL_ROUTES and st.access_log_enabled and not generated:
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
        # the console's time series (infra.serving.console), when one is added
        self.series: StageSeries | None = None

    def observe(self, method: str, route: str, status: int, total_s: float, timings: RequestTimings) -> None:
        self.requests.labels(self.name, route, method, str(status)).inc()
        if route in INTERNAL_ROUTES:
            return
        self.latency.labels(self.name, route).observe(total_s)
        self.stats.record(route, "total", total_s * 1000.0)
        if self.series is not None:
            self.series.record(route, "total", total_s * 1000.0)
        for stage_name, ms in timings.stages.items():
            self.stage_latency.labels(self.name, route, stage_name).observe(ms / 1000.0)
            self.stats.record(route, stage_name, ms)
            if self.series is not None:
                self.series.record(route, stage_name, ms)


class BreakerCollector:
    """Each dependency's circuit at scrape time: mlsd_dependency_state (one-hot over closed/open/half_open) and
    mlsd_dependency_calls_total by outcome (ok, error, timeout, rejected)."""

    def __init__(self, app_name: str, breakers: Sequence[CircuitBreaker]) -> None:
        self.app_name, self.breakers = app_name, list(breakers)

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "mlsd_dependency_state",
            "1 for the circuit's current state",
            labels=["app", "dependency", "state"],
        )
        calls = CounterMetricFamily(
            "mlsd_dependency_calls", "Guarded calls by outcome", labels=["app", "dependency", "outcome"]
        )
        for breaker in self.breakers:
            snap = breaker.snapshot()
            for name in ("closed", "open", "half_open"):
                state.add_metric([self.app_name, breaker.name, name], float(snap["state"] == name))
            for outcome, n in snap["counts"].items():
                calls.add_metric([self.app_name, breaker.name, outcome], n)
        yield state
        yield calls


_bearer = HTTPBearer(auto_error=False, description="MLSD_ADMIN_TOKEN")


def require_admin(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """FastAPI dependency for admin routes: `@app.post("/bundle/reload", dependencies=[Depends(require_admin)])`.
    403 while MLSD_ADMIN_TOKEN is unset; 401 unless the request sends `Authorization: Bearer <it>`."""
    token: str | None = request.app.state.admin_token
    if token is None:
        raise ApiError(403, "admin_disabled", f"admin routes are off on this server: {ADMIN_TOKEN_HOWTO}")
    sent = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(sent, token.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "this is an admin route: send `Authorization: Bearer <MLSD_ADMIN_TOKEN>`",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _admin_paths(app: FastAPI) -> list[str]:
    """The routes that depend on require_admin (for the start-up warning)."""
    paths = []
    for route in app.routes:
        dependant = getattr(
            route, "dependant", None
        )  # API routes have one; mounts and the docs routes do not
        if dependant is not None and any(d.call is require_admin for d in dependant.dependencies):
            paths.append(getattr(route, "path", ""))
    return paths


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
    max_body_bytes: int = MAX_BODY_BYTES,
    allowed_hosts: Sequence[str] | None = None,
    breakers: Sequence[CircuitBreaker] = (),
) -> FastAPI:
    """An app with the mlsd endpoints; `load()` returns the system's resources (a typed object) and the app
    turns ready. Handlers take them with a dependency: `res: Annotated[MyResources, Depends(require_ready)]`.
    A resources object with a `close()` method is closed at shutdown.

    max_body_bytes: larger bodies get 413. allowed_hosts: the Host names served (port ignored; "*" for any);
    default MLSD_ALLOWED_HOSTS (the local names unless set), so a deployment behind a real hostname names it
    there without editing code. breakers: the circuit
    breakers of the system's dependencies, shown on /readyz and /metrics."""
    configure_logging()
    redact_logger("mlsd.serving")
    redact_logger("mlsd.resilience")
    resources: AppState[Any] = AppState()
    settings = get_settings()
    admin_token = settings.admin_token
    if allowed_hosts is None:
        allowed_hosts = settings.allowed_host_names

    def _run_load() -> None:
        t0 = time.perf_counter()
        try:
            resources.resources = load() if load is not None else object()
            resources.ready = True
            log.info("%s ready in %.1f s", name, time.perf_counter() - t0)
        except Exception as exc:  # shown on /readyz, never as a crash loop
            # a service that is down says what to run in its message; anything else is named by its type
            what = str(exc) if isinstance(exc, ServiceUnavailable) else f"{type(exc).__name__}: {exc}"
            resources.error = redact(what)
            log.error("%s failed to load: %s", name, resources.error)  # one line; the traceback at DEBUG
            log.debug("%s: where loading failed\n%s", name, traceback.format_exc())

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # noqa: ANN202
        if _app.state.admin_token is None:
            log.warning(
                "MLSD_ADMIN_TOKEN is not set: admin routes (%s) answer 403; to use them, %s",
                ", ".join(_admin_paths(_app)),
                ADMIN_TOKEN_HOWTO,
            )
        if load_in_background:
            threading.Thread(target=_run_load, name=f"{name}-load", daemon=True).start()
        else:
            _run_load()
        yield
        closer = getattr(resources.resources, "close", None)
        if callable(closer):
            closer()

    # the API's version is the package's; /docs and /redoc serve vendored assets (infra.serving.docs), not a CDN's
    app = FastAPI(
        title=title or name, version=package_version(), lifespan=lifespan, docs_url=None, redoc_url=None
    )
    add_offline_docs(app)
    app.state.resources = resources
    app.state.telemetry = AppTelemetry(name, access_log_enabled)
    app.state.admin_token = admin_token.get_secret_value() if admin_token is not None else None
    app.state.breakers = list(breakers)
    if breakers:
        app.state.telemetry.registry.register(BreakerCollector(name, breakers))
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes, allowed_hosts=allowed_hosts)
    # Added last, so the outermost: refused requests are timed, counted and logged like any other.
    app.add_middleware(TimingMiddleware, fastapi_app=app)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc)
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(status_code=422, content=error_body("validation_error", message, fields))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = getattr(exc, "kind", None) or ("not_ready" if exc.status_code == 503 else "http_error")
        return JSONResponse(
            status_code=exc.status_code,
            content=error_body(kind, redact(str(exc.detail))),
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def _internal(_req: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %s\n%s", exc, traceback.format_exc())
        return JSONResponse(
            status_code=500, content=error_body("internal_error", redact(f"{type(exc).__name__}: {exc}"))
        )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        if resources.ready:
            deps = {b.name: b.snapshot() for b in app.state.breakers}
            degraded = getattr(resources.resources, "degraded", None)  # a resources object may say why it is
            body = {"status": "ready", "dependencies": deps}
            return JSONResponse(body | ({"degraded": redact(degraded)} if degraded else {}))
        body = error_body("not_ready", redact(resources.error or "loading models and indexes"))
        return JSONResponse(status_code=503, content=body)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(app.state.telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/stats", tags=["ops"])
    async def stats() -> dict[str, Any]:
        return app.state.telemetry.stats.summary()

    @app.post("/stats/reset", tags=["ops"], dependencies=[Depends(require_admin)])
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


def run_server(app: FastAPI, host: str, port: int) -> None:
    """Serve `app` with uvicorn in the project's log format: uvicorn's own log setup and access log are off
    (the app's JSON line is the access log; infra.logs)."""
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
