"""Calls to a store or service that cannot stall a server: a deadline, a bounded thread pool, a circuit breaker.

Every external call a request makes (Redis, Feast, PostgreSQL/MLflow, an OpenAI-compatible LLM) goes through
one of two functions, with one `CircuitBreaker` per dependency:

    redis_breaker = CircuitBreaker("redis")
    got = await guarded_call_async(store.get, key, deadline_s=0.05, breaker=redis_breaker, fallback=None)
    got.value       # the answer, or the fallback
    got.degraded    # None, or why the fallback was used: "redis: timeout after 50 ms", "redis: circuit open"

- **Deadline.** A blocking call runs on the breaker's own threads; the request waits at most `deadline_s`, then
  takes the fallback. The event loop never runs the call, so a hung socket stalls neither /healthz nor other
  requests. (An `async def` call, from an asyncio client, runs on the loop instead and is cancelled at the deadline.)
- **Bulkhead.** Each breaker owns at most `max_workers` threads: a dependency that hangs holds those and no more,
  and never another dependency's. A call still queued when its deadline passes is cancelled, not run late.
- **Breaker.** `failure_threshold` consecutive failures (an exception or a timeout) open it: calls then take the
  fallback at once, without waiting. After `cooldown_s` it is half-open and lets one probe through; the probe's
  success closes it, its failure opens it for another cool-down.
- **Whose fault.** An exception type in `raise_on` is the request's own fault (bad input the store refused): it
  reaches the caller and is not held against the dependency, so one bad request cannot open a breaker every user
  shares.

A degraded call marks the request it serves (`degraded` in the access log). The client's own socket timeout is
still worth setting: the deadline frees the request, the socket timeout frees the thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

from infra.redact import redact
from infra.serving.timing import current_timings

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]
log = logging.getLogger("mlsd.resilience")


class _DaemonPool:
    """At most `size` worker threads, started on first use. Daemon threads, unlike ThreadPoolExecutor's (joined at
    exit), so a call stuck on a dead socket cannot hold the process when it shuts down."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self._tasks: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple, contextvars.Context] | None]
        self._tasks = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.name} pool is closed")
            if not self._threads:
                for i in range(self.size):
                    t = threading.Thread(target=self._work, name=f"mlsd-{self.name}-{i}", daemon=True)
                    t.start()
                    self._threads.append(t)
        # The call sees the caller's context (the request's stage timings), as asyncio.to_thread gives it.
        self._tasks.put((future, fn, args, contextvars.copy_context()))
        return future

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args, context = task
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued: its deadline passed
            try:
                future.set_result(context.run(fn, *args))
            except BaseException as exc:
                future.set_exception(exc)

    @property
    def threads(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def close(self) -> None:
        """Stop taking calls; each thread exits once its current call returns."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._tasks.put(None)


class CircuitBreaker:
    """Closed → open after `failure_threshold` consecutive failures → half-open after `cooldown_s` (one probe) →
    closed on the probe's success. Thread-safe; owns the bounded pool its guarded calls run on."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 5.0,
        max_workers: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown_s < 0 or max_workers < 1:
            raise ValueError(
                f"breaker {name!r}: failure_threshold and max_workers must be >= 1 and cooldown_s >= 0"
            )
        self.name = name
        self.failure_threshold, self.cooldown_s = failure_threshold, cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0  # consecutive
        self._opened_at = 0.0
        self._probe_out = False
        self._last_error: str | None = None
        self.counts = {"ok": 0, "error": 0, "timeout": 0, "rejected": 0}
        self.pool = _DaemonPool(name, max_workers)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state!r})"

    def _current(self) -> BreakerState:
        if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"  # the next call is the probe
        return self._state

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current()

    def allow(self) -> bool:
        """May a call go to the dependency now? False while open, and in half-open once the probe is out."""
        with self._lock:
            state = self._current()
            if state == "closed":
                return True
            if state == "half_open" and not self._probe_out:
                self._state, self._probe_out = "half_open", True
                return True
            self.counts["rejected"] += 1
            return False

    def record_success(self) -> None:
        with self._lock:
            self.counts["ok"] += 1
            self._failures, self._probe_out = 0, False
            if self._state != "closed":
                self._state = "closed"
                log.info("%s answers again: circuit closed", self.name)

    def record_failure(self, kind: Literal["error", "timeout"], message: str) -> None:
        with self._lock:
            self.counts[kind] += 1
            self._failures += 1
            self._last_error = redact(message)
            tripped = self._state == "closed" and self._failures >= self.failure_threshold
            if self._state == "half_open" or tripped:
                was = self._state
                self._state, self._opened_at, self._probe_out = "open", self._clock(), False
                log.warning(
                    "%s circuit open for %.1f s after %s (%s); requests get the fallback",
                    self.name,
                    self.cooldown_s,
                    "the probe failed" if was == "half_open" else f"{self._failures} failures in a row",
                    self._last_error,
                )

    def release(self) -> None:
        """A call ended with no verdict (its request was cancelled): free the probe slot it may hold."""
        with self._lock:
            self._probe_out = False

    def snapshot(self) -> dict[str, Any]:
        """State for /readyz and /metrics."""
        with self._lock:
            return {
                "state": self._current(),
                "consecutive_failures": self._failures,
                "failure_threshold": self.failure_threshold,
                "cooldown_s": self.cooldown_s,
                "counts": dict(self.counts),
                "last_error": self._last_error,
            }

    def close(self) -> None:
        """Stop the breaker's threads (at shutdown)."""
        self.pool.close()


@dataclass(frozen=True)
class Guarded(Generic[T]):
    """A guarded call's answer: `value` is the dependency's answer, or the fallback when `degraded` says why."""

    value: T
    degraded: str | None = None


def _fallback(breaker: CircuitBreaker, fallback: T, why: str) -> Guarded[T]:
    reason = f"{breaker.name}: {why}"
    timings = current_timings()
    if timings is not None:
        before = timings.flags.get("degraded")
        timings.flags["degraded"] = f"{before}; {reason}" if before else reason
    return Guarded(fallback, reason)


def _failed(
    breaker: CircuitBreaker, future: Future | asyncio.Future, fallback: T, deadline_s: float
) -> Guarded[T] | None:
    """Record the verdict on a finished (or abandoned) call; None when it succeeded."""
    if not future.done():
        future.cancel()
        breaker.record_failure("timeout", f"no answer within {deadline_s * 1000:.0f} ms")
        return _fallback(breaker, fallback, f"timeout after {deadline_s * 1000:.0f} ms")
    exc = future.exception()
    if exc is None:
        breaker.record_success()
        return None
    message = redact(f"{type(exc).__name__}: {exc}")
    breaker.record_failure("error", message)
    return _fallback(breaker, fallback, message)


def guarded_call(
    fn: Callable[..., T],
    *args: Any,
    deadline_s: float,
    breaker: CircuitBreaker,
    fallback: T,
    raise_on: tuple[type[BaseException], ...] = (),
) -> Guarded[T]:
    """fn(*args) on the breaker's threads, waiting at most `deadline_s`; the fallback when it fails, times out
    or the breaker is open. For blocking code (a step, a sync handler); async handlers use guarded_call_async."""
    if not breaker.allow():
        return _fallback(breaker, fallback, "circuit open")
    future = breaker.pool.submit(fn, *args)
    verdict = False
    try:
        wait([future], timeout=deadline_s)
        if future.done() and isinstance(future.exception(), raise_on):
            breaker.record_success()  # the dependency answered; the request was wrong
            verdict = True
            raise future.exception()  # type: ignore[misc]
        failed = _failed(breaker, future, fallback, deadline_s)
        verdict = True
        return failed or Guarded(future.result())
    finally:
        if not verdict:
            future.cancel()
            breaker.release()


def _consume(waiter: asyncio.Future) -> None:
    if not waiter.cancelled():
        waiter.exception()  # marks it retrieved; the verdict was taken, or the call abandoned, elsewhere


async def guarded_call_async(
    fn: Callable[..., T] | Callable[..., Awaitable[T]],
    *args: Any,
    deadline_s: float,
    breaker: CircuitBreaker,
    fallback: T,
    raise_on: tuple[type[BaseException], ...] = (),
) -> Guarded[T]:
    """guarded_call for `async def` handlers: the event loop awaits the call and stays free for other requests.
    A blocking `fn` runs on the breaker's threads; an `async def fn` (redis.asyncio, httpx.AsyncClient) runs on the
    loop as a task, cancelled at the deadline."""
    if not breaker.allow():
        return _fallback(breaker, fallback, "circuit open")
    call: Future[T] | asyncio.Future[T]
    waiter: asyncio.Future[T]
    if inspect.iscoroutinefunction(fn):
        call = waiter = asyncio.ensure_future(fn(*args))
    else:
        call = breaker.pool.submit(cast(Callable[..., T], fn), *args)
        waiter = asyncio.wrap_future(call)
    # An abandoned call that fails later must not log "Future exception was never retrieved".
    waiter.add_done_callback(_consume)
    verdict = False
    try:
        await asyncio.wait([waiter], timeout=deadline_s)
        if call.done() and not call.cancelled() and isinstance(call.exception(), raise_on):
            breaker.record_success()  # the dependency answered; the request was wrong
            verdict = True
            raise call.exception()  # type: ignore[misc]
        failed = _failed(breaker, call, fallback, deadline_s)
        verdict = True
        return failed or Guarded(call.result())
    finally:
        if not verdict:  # the request was cancelled (client gone): no verdict on the dependency
            call.cancel()
            breaker.release()
