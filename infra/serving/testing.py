"""Test helper: wait for an app under TestClient to finish loading."""

from __future__ import annotations

import time
from typing import Any


def wait_ready(client: Any, timeout_s: float = 60.0) -> None:
    """Poll /readyz until 200; fail with the app's own message if loading failed or took too long."""
    deadline = time.monotonic() + timeout_s
    while (r := client.get("/readyz")).status_code != 200:
        message = r.json().get("message", "")
        if message != "loading models and indexes" or time.monotonic() > deadline:
            raise AssertionError(f"app not ready: {message}")
        time.sleep(0.05)
