"""infra.resilience: the breaker's states, deadlines that free the request, a pool that stays bounded, and a
running server whose /healthz answers while its requests wait on a dependency that hangs."""

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infra.resilience import CircuitBreaker, Guarded, guarded_call, guarded_call_async
from infra.serving import create_app


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail() -> None:
    raise ConnectionError("Error 111 connecting to redis://:hunter2@cache:6379")


def _pool_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"mlsd-{name}-")]


# The state machine ----------------------------------------------------------------------------------------------


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = FakeClock()
    b = CircuitBreaker("store", failure_threshold=3, cooldown_s=5.0, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.record_failure("error", "refused")
    assert b.state == "closed"
    assert b.allow()
    b.record_failure("timeout", "no answer within 50 ms")  # timeouts count like exceptions
    assert b.state == "open" and not b.allow()
    clock.now += 4.9
    assert b.state == "open" and not b.allow()
    clock.now += 0.1
    assert b.state == "half_open"
    assert b.allow()  # the one probe
    assert not b.allow() and not b.allow()  # everyone else still gets the fallback
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()
    snap = b.snapshot()
    assert snap["counts"] == {"ok": 1, "error": 2, "timeout": 1, "rejected": 4}
    assert snap["consecutive_failures"] == 0 and snap["last_error"] == "no answer within 50 ms"


def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    clock = FakeClock()
    b = CircuitBreaker("store", failure_threshold=1, cooldown_s=5.0, clock=clock)
    b.record_failure("error", "refused")
    clock.now += 5.0
    assert b.allow()
    b.record_failure("error", "refused again")
    assert b.state == "open" and not b.allow()
    clock.now += 4.0
    assert not b.allow()  # the cool-down restarted at the failed probe
    clock.now += 1.0
    assert b.allow()


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    b = CircuitBreaker("store", failure_threshold=3)
    for _ in range(10):
        b.record_failure("error", "x")
        b.record_failure("error", "x")
        b.record_success()
    assert b.state == "closed"


def test_bad_breaker_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("store", failure_threshold=0)


def test_the_breaker_is_thread_safe() -> None:
    b = CircuitBreaker("store", failure_threshold=10**9)
    n_threads, per_thread = 16, 2000
    start = threading.Barrier(n_threads)

    def hammer() -> None:
        start.wait()
        for i in range(per_thread):
            if not b.allow():
                continue
            if i % 2:
                b.record_failure("error", "x")
            else:
                b.record_success()

    threads = [threading.Thread(target=hammer) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = b.snapshot()["counts"]
    assert counts["ok"] + counts["error"] == n_threads * per_thread and counts["rejected"] == 0


def test_half_open_lets_exactly_one_probe_through_under_contention() -> None:
    clock = FakeClock()
    b = CircuitBreaker("store", failure_threshold=1, cooldown_s=1.0, clock=clock)
    b.record_failure("error", "x")
    clock.now += 1.0
    n = 64
    start, allowed = threading.Barrier(n), []

    def try_once() -> None:
        start.wait()
        allowed.append(b.allow())

    threads = [threading.Thread(target=try_once) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 1


# guarded_call ---------------------------------------------------------------------------------------------------


def test_a_call_that_answers_is_not_degraded() -> None:
    b = CircuitBreaker("store")
    try:
        assert guarded_call(lambda x: x * 2, 21, deadline_s=1.0, breaker=b, fallback=0) == Guarded(42, None)
    finally:
        b.close()


def test_an_exception_gives_the_fallback_and_a_redacted_reason() -> None:
    b = CircuitBreaker("redis")
    try:
        got = guarded_call(fail, deadline_s=1.0, breaker=b, fallback="rules-only")
    finally:
        b.close()
    assert got.value == "rules-only"
    assert got.degraded == "redis: ConnectionError: Error 111 connecting to redis://:***@cache:6379"
    assert "hunter2" not in json.dumps(b.snapshot())


def test_a_timeout_frees_the_caller_and_an_open_breaker_answers_at_once() -> None:
    release, calls = threading.Event(), []

    def hang() -> str:
        calls.append(1)
        release.wait(10)
        return "late"

    b = CircuitBreaker("feast", failure_threshold=2, cooldown_s=60)
    try:
        for _ in range(2):
            t0 = time.perf_counter()
            got = guarded_call(hang, deadline_s=0.05, breaker=b, fallback=[])
            assert 0.05 <= time.perf_counter() - t0 < 0.5
            assert got == Guarded([], "feast: timeout after 50 ms")
        assert b.state == "open"
        t0 = time.perf_counter()
        got = guarded_call(hang, deadline_s=0.05, breaker=b, fallback=[])
        assert time.perf_counter() - t0 < 0.01 and got.degraded == "feast: circuit open"
        assert len(calls) == 2  # the open breaker did not call the dependency
    finally:
        release.set()
        b.close()


def test_the_requests_own_errors_reach_the_caller_and_never_open_the_breaker() -> None:
    def refuse(key: int) -> None:
        raise OverflowError(f"key {key} does not fit in int64")

    b = CircuitBreaker("redis", failure_threshold=1)
    try:
        for _ in range(3):
            with pytest.raises(OverflowError):
                guarded_call(
                    refuse, 2**70, deadline_s=1.0, breaker=b, fallback=None, raise_on=(OverflowError,)
                )
            with pytest.raises(OverflowError):
                asyncio.run(
                    guarded_call_async(
                        refuse, 2**70, deadline_s=1.0, breaker=b, fallback=None, raise_on=(OverflowError,)
                    )
                )
        assert b.state == "closed"
    finally:
        b.close()


def test_threads_stay_within_the_pool_bound_and_expired_calls_never_run() -> None:
    release, calls = threading.Event(), []

    def hang() -> None:
        calls.append(1)
        release.wait(10)

    b = CircuitBreaker("bounded", failure_threshold=10**6, max_workers=4)
    before = threading.active_count()
    try:
        callers = [
            threading.Thread(
                target=guarded_call, args=(hang,), kwargs=dict(deadline_s=0.1, breaker=b, fallback=None)
            )
            for _ in range(40)
        ]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
        assert len(_pool_threads("bounded")) == 4
        assert threading.active_count() - before <= 4
        release.set()
        time.sleep(0.2)
        assert len(calls) == 4  # the 36 calls still queued at their deadline were cancelled, not run late
        assert b.snapshot()["counts"]["timeout"] == 40
    finally:
        release.set()
        b.close()
    for t in _pool_threads("bounded"):
        t.join(timeout=2)
    assert not _pool_threads("bounded")


def test_an_async_client_call_is_cancelled_at_its_deadline() -> None:
    cancelled = []

    async def hang(key: str) -> str:
        try:
            await asyncio.sleep(10)
        finally:
            cancelled.append(key)
        return key

    async def answer(key: str) -> str:
        await asyncio.sleep(0)
        return key

    async def refuse(key: str) -> str:
        raise ConnectionError(f"http://user:{key}@llm.local/v1 refused")

    async def scenario() -> list[Guarded[str]]:
        got = [await guarded_call_async(hang, "a", deadline_s=0.05, breaker=b, fallback="")]
        await asyncio.sleep(0)  # let the cancellation land
        got.append(await guarded_call_async(answer, "b", deadline_s=0.05, breaker=b, fallback=""))
        got.append(await guarded_call_async(refuse, "pw", deadline_s=0.05, breaker=b, fallback=""))
        return got

    b = CircuitBreaker("llm")
    timed_out, answered, refused = asyncio.run(scenario())
    assert timed_out == Guarded("", "llm: timeout after 50 ms") and cancelled == ["a"]
    assert answered == Guarded("b", None)
    assert refused == Guarded("", "llm: ConnectionError: http://user:***@llm.local/v1 refused")
    assert not _pool_threads("llm")  # an async client needs no thread


def test_a_cancelled_request_frees_the_half_open_probe() -> None:
    clock = FakeClock()
    release = threading.Event()
    b = CircuitBreaker("llm", failure_threshold=1, cooldown_s=1.0, clock=clock)
    b.record_failure("error", "x")
    clock.now += 1.0

    async def cancel_the_probe() -> None:
        task = asyncio.create_task(
            guarded_call_async(release.wait, 10, deadline_s=5.0, breaker=b, fallback=False)
        )
        await asyncio.sleep(0.05)
        assert not b.allow()  # the probe is out
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(cancel_the_probe())
        assert b.allow()  # not stuck in half-open with a probe nobody will ever report
    finally:
        release.set()
        b.close()


def test_a_degraded_call_marks_the_request_in_the_access_log(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker("redis")
    app = create_app("toy", load_in_background=False)

    @app.get("/profile")
    async def profile() -> dict:
        got = await guarded_call_async(fail, deadline_s=0.5, breaker=breaker, fallback={})
        return {"profile": got.value, "degraded": got.degraded}

    logger = logging.getLogger("mlsd.access")
    logger.addHandler(caplog.handler)
    try:
        with TestClient(app) as client:
            body = client.get("/profile").json()
    finally:
        logger.removeHandler(caplog.handler)
        breaker.close()
    assert body["profile"] == {} and body["degraded"].startswith("redis: ConnectionError")
    line = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mlsd.access"][-1]
    assert line["degraded"] == body["degraded"] and "hunter2" not in line["degraded"]


# A running server -----------------------------------------------------------------------------------------------


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn on a free port, in a thread: the event loop a deployment has."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _healthz_ms_while(
    url: str, path: str, n: int, in_flight: threading.Event
) -> tuple[float, list[httpx.Response]]:
    """Fire n requests at `path`; once the server is inside one (`in_flight` set), time a /healthz."""

    async def go() -> tuple[float, list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            slow = [asyncio.create_task(client.get(path)) for _ in range(n)]
            assert await asyncio.to_thread(in_flight.wait, 10), f"no request reached {path}"
            await asyncio.sleep(0.1)  # let the rest arrive too
            t0 = time.perf_counter()
            r = await client.get("/healthz")
            healthz_ms = (time.perf_counter() - t0) * 1000
            assert r.status_code == 200
            return healthz_ms, await asyncio.gather(*slow)

    return asyncio.run(go())


def test_healthz_answers_while_20_requests_wait_on_a_dependency_that_takes_5_s() -> None:
    release, in_flight = threading.Event(), threading.Event()

    def slow_store(key: str) -> dict:
        in_flight.set()
        release.wait(5.0)  # a paused Redis: the socket answers after 5 s
        return {"key": key}

    breaker = CircuitBreaker("redis", failure_threshold=5, cooldown_s=30)
    app = create_app("toy", load_in_background=False, access_log_enabled=False)

    @app.get("/guarded")
    async def guarded() -> dict:
        got = await guarded_call_async(slow_store, "u1", deadline_s=1.5, breaker=breaker, fallback={})
        return {"degraded": got.degraded}

    try:
        with running(app) as url:
            t0 = time.perf_counter()
            healthz_ms, answers = _healthz_ms_while(url, "/guarded", 20, in_flight)
            elapsed = time.perf_counter() - t0
        assert healthz_ms < 1000, f"/healthz took {healthz_ms:.0f} ms behind the slow dependency"
        assert all(r.status_code == 200 for r in answers)
        assert all(r.json()["degraded"] for r in answers)  # every one flagged, none waited the 5 s
        assert elapsed < 4.0
        assert breaker.state == "open"
        assert len(_pool_threads("redis")) <= 8
    finally:
        release.set()
        breaker.close()


def test_the_same_call_made_directly_does_hold_the_event_loop() -> None:
    """The control for the test above: what it measures does catch a blocking call."""
    in_flight = threading.Event()
    app = create_app("toy", load_in_background=False, access_log_enabled=False)

    @app.get("/direct")
    async def direct() -> dict:
        in_flight.set()
        time.sleep(1.5)  # the bug: a blocking client called inside `async def`
        return {}

    with running(app) as url:
        healthz_ms, _ = _healthz_ms_while(url, "/direct", 1, in_flight)
    assert healthz_ms >= 1000  # would fail the 1 s bound above
