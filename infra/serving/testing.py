"""Test helpers: wait for an app under TestClient to finish loading; serve an app on loopback for a browser;
collect what a logger logs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


def wait_ready(client: Any, timeout_s: float = 60.0) -> None:
    """Poll /readyz until 200; fail with the app's own message if loading failed or took too long."""
    deadline = time.monotonic() + timeout_s
    while (r := client.get("/readyz")).status_code != 200:
        message = r.json().get("message", "")
        if message != "loading models and indexes" or time.monotonic() > deadline:
            raise AssertionError(f"app not ready: {message}")
        time.sleep(0.05)


@contextmanager
def served_on_loopback(app: Any, ready_timeout_s: float = 60.0) -> Iterator[str]:
    """A real uvicorn server for `app` on a free 127.0.0.1 port, in a thread (what a browser test drives): its URL
    once /readyz answers 200; stopped on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise AssertionError("the server thread stopped before it started listening")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        wait_ready(httpx.Client(base_url=url, timeout=2), ready_timeout_s)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def logged(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records logger `name` (and its children) handles inside the block. `mlsd` loggers do not propagate to
    the root (infra.logs), so pytest's caplog misses them when they were made after the test began."""
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
