"""Test helpers: wait for an app under TestClient to finish loading; collect what a logger logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def wait_ready(client: Any, timeout_s: float = 60.0) -> None:
    """Poll /readyz until 200; fail with the app's own message if loading failed or took too long."""
    deadline = time.monotonic() + timeout_s
    while (r := client.get("/readyz")).status_code != 200:
        message = r.json().get("message", "")
        if message != "loading models and indexes" or time.monotonic() > deadline:
            raise AssertionError(f"app not ready: {message}")
        time.sleep(0.05)


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
