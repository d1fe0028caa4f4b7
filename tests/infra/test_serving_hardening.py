"""create_app under hostile input: body limits (413), JSON only (415), the Host check (400), admin routes (401/403),
no credential in any error, breakers on /readyz and /metrics; never a 500, every refusal in the one error shape."""

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Annotated

import pytest
from fastapi import Depends, HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from infra.config import get_settings
from infra.resilience import CircuitBreaker
from infra.serving import create_app, require_admin, require_ready

TOKEN = "t0ken-for-tests-only"
PASSWORD = "hunter2-pw"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class Ask(BaseModel):
    k: int = Field(..., ge=1, le=500)
    user_id: str


class ReloadRequest(BaseModel):
    version: str = Field(..., pattern=r"^v\d{4}$")


def make_app(**kw) -> object:
    app = create_app("toy", load=lambda: {"multiplier": 3}, load_in_background=False, **kw)

    @app.post("/work")
    async def work(req: Ask, res: Annotated[dict, Depends(require_ready)]) -> dict:
        return {"out": res["multiplier"] * req.k}

    @app.post("/raw")
    async def raw(request: Request) -> dict:
        """fraud's /score reads its body itself; the limit must hold there too."""
        return {"bytes": len(await request.body())}

    @app.post("/bundle/reload", dependencies=[Depends(require_admin)])
    async def reload(req: ReloadRequest) -> dict:
        return {"serving": req.version}

    @app.get("/leak")
    async def leak() -> dict:
        raise HTTPException(503, f"online store redis://:{PASSWORD}@cache:6379/0 is down")

    @app.get("/crash")
    async def crash() -> dict:
        raise ConnectionError(f"could not reach postgresql://mlflow:{PASSWORD}@db:5432/mlflow")

    return app


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@pytest.fixture
def serving_log() -> Iterator[Records]:
    """What create_app logs to mlsd.serving, tracebacks included, as a handler would format it."""
    handler, logger = Records(), logging.getLogger("mlsd.serving")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def admin_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", TOKEN)
    get_settings.cache_clear()
    yield TOKEN


def client_for(**kw) -> TestClient:
    return TestClient(make_app(**kw), raise_server_exceptions=False)


def assert_refused(r, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message", "fields"} and body["error"] == kind and body["message"]
    return body


def padded_ask(n_bytes: int) -> bytes:
    """A valid /work body of exactly n_bytes."""
    empty = json.dumps({"k": 1, "user_id": ""}).encode()
    return json.dumps({"k": 1, "user_id": "u" * (n_bytes - len(empty))}).encode()


# Body size ------------------------------------------------------------------------------------------------------


def test_the_default_limit_is_64_kib() -> None:
    with client_for() as client:
        assert client.post("/raw", content=padded_ask(64 * 1024), headers=JSON).json() == {"bytes": 65536}
        assert_refused(
            client.post("/raw", content=padded_ask(64 * 1024 + 1), headers=JSON), 413, "body_too_large"
        )


JSON = {"content-type": "application/json"}


def test_a_body_at_the_limit_is_served_and_one_byte_more_is_413() -> None:
    with client_for(max_body_bytes=1024) as client:
        assert client.post("/work", content=padded_ask(1024), headers=JSON).status_code == 200
        body = assert_refused(
            client.post("/work", content=padded_ask(1025), headers=JSON), 413, "body_too_large"
        )
        assert "1024 bytes" in body["message"]


def asgi_stream(app: object, path: str, n_chunks: int, chunk: bytes) -> tuple[int, dict, int]:
    """POST a chunked body (no Content-Length) straight into the ASGI app: (status, body, chunks it read)."""
    read, out = [0], {}

    async def receive() -> dict:
        read[0] += 1
        return {"type": "http.request", "body": chunk, "more_body": read[0] < n_chunks}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] = out.get("body", b"") + message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    return out["status"], json.loads(out["body"]), read[0]


@pytest.mark.parametrize("route", ["/work", "/raw"])
def test_a_streamed_body_without_content_length_is_cut_at_the_limit(route: str) -> None:
    status, body, chunks_read = asgi_stream(
        make_app(max_body_bytes=4096), route, n_chunks=1000, chunk=b" " * 1024
    )
    assert status == 413 and body["error"] == "body_too_large"
    assert chunks_read == 5  # 5 KiB read, then refused: not the whole 1 MB


def test_a_content_length_that_is_not_a_number_is_400() -> None:
    with client_for() as client:
        for value in ("abc", "-1", "1e3"):
            assert_refused(client.post("/raw", headers={"content-length": value}), 400, "bad_request")
        assert_refused(client.post("/raw", headers={"content-length": "9" * 30}), 413, "body_too_large")


# Content type ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "",
    ],
)
def test_a_body_that_is_not_json_is_415(content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    with client_for() as client:
        r = client.post("/raw", content=b'{"k": 1, "user_id": "u"}', headers=headers)
    assert_refused(r, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_content_types_are_served(content_type: str) -> None:
    with client_for() as client:
        r = client.post("/work", content=b'{"k": 2, "user_id": "u"}', headers={"content-type": content_type})
    assert r.json() == {"out": 6}


def test_a_post_without_a_body_needs_no_content_type(admin_token: str) -> None:
    with client_for() as client:
        assert client.post("/stats/reset", headers=ADMIN).json() == {"status": "reset"}


# Host -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:80", "[::1]:8000", "testserver"])
def test_local_hosts_are_served(host: str) -> None:
    with client_for() as client:
        assert client.post("/work", json={"k": 1, "user_id": "u"}, headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]:80", ""]
)
def test_other_hosts_are_400(host: str) -> None:
    with client_for() as client:
        r = client.post("/work", json={"k": 1, "user_id": "u"}, headers={"host": host})
    assert "allowed_hosts" in assert_refused(r, 400, "bad_host")["message"]


def test_probes_answer_any_host_and_change_nothing(admin_token: str) -> None:
    with client_for() as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(path, headers={"host": "10.0.3.7:8000"}).status_code == 200
        r = client.post("/stats/reset", headers={**ADMIN, "host": "10.0.3.7:8000"})
        assert_refused(r, 400, "bad_host")


def test_allowed_hosts_is_an_argument() -> None:
    with client_for(allowed_hosts=("api.example.com",)) as client:
        assert client.get("/stats", headers={"host": "api.example.com"}).status_code == 200
        assert_refused(client.get("/stats", headers={"host": "localhost"}), 400, "bad_host")
    with client_for(allowed_hosts=("*",)) as client:
        assert client.get("/stats", headers={"host": "anything.example"}).status_code == 200


def test_mlsd_allowed_hosts_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSD_ALLOWED_HOSTS", "api.example.com,internal.svc")
    get_settings.cache_clear()
    with client_for() as client:  # no allowed_hosts argument: the setting
        for host in ("api.example.com", "API.Example.com:443", "internal.svc:8000"):
            assert (
                client.post("/work", json={"k": 1, "user_id": "u"}, headers={"host": host}).status_code == 200
            )
        r = client.post("/work", json={"k": 1, "user_id": "u"}, headers={"host": "localhost"})
        assert "MLSD_ALLOWED_HOSTS" in assert_refused(r, 400, "bad_host")["message"]
    with client_for(allowed_hosts=("localhost",)) as client:  # an explicit argument wins over the setting
        assert client.get("/stats", headers={"host": "localhost"}).status_code == 200
        assert_refused(client.get("/stats", headers={"host": "api.example.com"}), 400, "bad_host")
    monkeypatch.setenv("MLSD_ALLOWED_HOSTS", "*")
    get_settings.cache_clear()
    with client_for() as client:
        assert client.get("/stats", headers={"host": "anything.example"}).status_code == 200


# Admin routes ---------------------------------------------------------------------------------------------------


def test_admin_routes_are_403_while_the_token_is_unset_and_say_how_to_set_it(serving_log: Records) -> None:
    with client_for() as client:
        for path, body in (("/stats/reset", None), ("/bundle/reload", {"version": "v0001"})):
            r = client.post(path, json=body)
            assert "MLSD_ADMIN_TOKEN" in assert_refused(r, 403, "admin_disabled")["message"]
        assert client.get("/stats").status_code == 200  # reading stays open
    warnings = [r.getMessage() for r in serving_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "MLSD_ADMIN_TOKEN is not set" in warnings[0]
    assert "/stats/reset" in warnings[0] and "/bundle/reload" in warnings[0]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer tökén".encode()],
)
def test_admin_routes_refuse_a_missing_or_wrong_token(
    admin_token: str, authorization: str | bytes | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with client_for() as client:
        for path in ("/stats/reset", "/bundle/reload"):
            r = client.post(path, json={"version": "v0001"}, headers=headers)
            assert_refused(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"


def test_admin_routes_answer_the_token_and_check_the_body_only_then(admin_token: str) -> None:
    with client_for() as client:
        assert_refused(client.post("/bundle/reload", json={"version": "latest"}), 401, "unauthorized")
        r = client.post("/bundle/reload", json={"version": "latest"}, headers=ADMIN)
        assert_refused(r, 422, "validation_error")
        assert client.post("/bundle/reload", json={"version": "v0002"}, headers=ADMIN).json() == {
            "serving": "v0002"
        }
    with client_for() as client:  # the warning is for a server without a token
        assert client.post("/stats/reset", headers=ADMIN).status_code == 200


def test_an_empty_token_setting_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", "  ")
    get_settings.cache_clear()
    with client_for() as client:
        assert_refused(
            client.post("/stats/reset", headers={"Authorization": "Bearer   "}), 403, "admin_disabled"
        )


def test_the_token_is_in_the_openapi_document_as_a_bearer_scheme() -> None:
    with client_for() as client:
        doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert doc["paths"]["/bundle/reload"]["post"]["security"] == [{"HTTPBearer": []}]


# No credential leaves the server --------------------------------------------------------------------------------


def test_readyz_and_503_bodies_carry_no_password(
    serving_log: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSD_LOG_LEVEL", "DEBUG")  # the load failure's traceback is logged at DEBUG
    get_settings.cache_clear()

    def load() -> dict:
        raise ConnectionError(f"Error connecting to redis://:{PASSWORD}@cache:6379/0")

    app = create_app("toy", load=load, load_in_background=False)

    @app.get("/needs")
    async def needs(res: Annotated[dict, Depends(require_ready)]) -> dict:
        return res

    with TestClient(app) as client:
        ready = client.get("/readyz")
        served = client.get("/needs")
    for r in (ready, served):
        body = assert_refused(r, 503, "not_ready")
        assert PASSWORD not in r.text and "redis://:***@cache:6379/0" in body["message"]
    assert "failed to load" in serving_log.text and "redis://:***@cache" in serving_log.text
    assert "Traceback" in serving_log.text and PASSWORD not in serving_log.text  # the traceback too


def test_http_and_500_errors_carry_no_password(serving_log: Records) -> None:
    with client_for() as client:
        leak, crash = client.get("/leak"), client.get("/crash")
    assert (
        assert_refused(leak, 503, "not_ready")["message"] == "online store redis://:***@cache:6379/0 is down"
    )
    body = assert_refused(crash, 500, "internal_error")
    assert body["message"] == "ConnectionError: could not reach postgresql://mlflow:***@db:5432/mlflow"
    assert "unhandled error" in serving_log.text and PASSWORD not in serving_log.text


# Breakers -------------------------------------------------------------------------------------------------------


def test_breakers_show_on_readyz_and_metrics() -> None:
    redis, feast = CircuitBreaker("redis", failure_threshold=2), CircuitBreaker("feast")
    for _ in range(2):
        redis.record_failure("error", f"redis://:{PASSWORD}@cache refused")
    feast.record_success()
    with client_for(breakers=[redis, feast]) as client:
        ready = client.get("/readyz")
        metrics = client.get("/metrics").text
    assert ready.status_code == 200  # degraded, not unready: the fallbacks still answer
    deps = ready.json()["dependencies"]
    assert deps["redis"]["state"] == "open" and deps["feast"]["state"] == "closed"
    assert PASSWORD not in ready.text
    assert 'mlsd_dependency_state{app="toy",dependency="redis",state="open"} 1.0' in metrics
    assert 'mlsd_dependency_state{app="toy",dependency="redis",state="closed"} 0.0' in metrics
    assert 'mlsd_dependency_calls_total{app="toy",dependency="redis",outcome="error"} 2.0' in metrics
    assert 'mlsd_dependency_calls_total{app="toy",dependency="feast",outcome="ok"} 1.0' in metrics


def test_readyz_without_breakers_lists_no_dependencies() -> None:
    with client_for() as client:
        assert client.get("/readyz").json() == {"status": "ready", "dependencies": {}}


# Never a 500 ----------------------------------------------------------------------------------------------------

HOSTILE = [  # (method, path, headers, body, the status it must get)
    ("POST", "/work", {"host": "evil.example", "content-type": "text/plain"}, b"x" * 100_000, 400),
    ("POST", "/work", {"content-type": "application/json"}, b"{", 422),
    ("POST", "/work", {"content-type": "application/json"}, b"\xff\xfe\x00garbage", 422),
    ("POST", "/work", {"content-type": "application/json"}, b'{"k": 1e400, "user_id": "u"}', 422),
    (
        "POST",
        "/work",
        {"content-type": "application/json"},
        b'{"k": 99999999999999999999999999, "user_id": 1}',
        422,
    ),
    (
        "POST",
        "/work",
        {"content-type": "application/json"},
        b"[" * 5000 + b"]" * 5000,
        400,
    ),  # too deep to parse
    (
        "POST",
        "/raw",
        {"content-type": "application/json; charset=klingon"},
        b"{}",
        200,
    ),  # the route's own business
    ("PUT", "/work", {"content-type": "application/json"}, b"{}", 405),
    ("POST", "/stats/reset", {"authorization": "Bearer " + "A" * 10_000}, b"", 401),
    (
        "POST",
        "/bundle/reload",
        {"authorization": "Bearer \u00e9".encode(), "content-type": "application/json"},
        b"{}",
        401,
    ),
    ("GET", "/readyz", {"host": "\u00e9\u00e9".encode()}, b"", 200),  # probes answer any Host
    ("DELETE", "/healthz", {}, b"", 405),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    HOSTILE,
    ids=[f"{i}-{m}-{p}-{st}" for i, (m, p, _, _, st) in enumerate(HOSTILE)],
)
def test_hostile_requests_get_a_4xx_in_the_error_shape(
    admin_token: str, method: str, path: str, headers: dict, body: bytes, status: int
) -> None:
    with client_for() as client:
        r = client.request(method, path, headers=headers, content=body)
    assert r.status_code == status, r.text
    if status >= 400:
        assert set(r.json()) == {"error", "message", "fields"}
