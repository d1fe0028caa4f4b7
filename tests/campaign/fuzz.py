"""One schemathesis run over an app's OpenAPI document: every operation, positive then negative examples
(schema-valid and schema-violating requests), each response held to check_response: never >= 500, every 4xx
in the one error shape.

Driven with hypothesis directly (one `given` per operation and mode) rather than schemathesis's pytest plugin,
so the app is built once per session by a fixture; `derandomize` makes CI send the same requests every run."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi

from infra.config import get_settings

FUZZ = {name: Counter() for name in ("rag", "ctr", "fraud", "recsys")}
MIN_REQUESTS = 1000  # per API, in CI
ERROR_KEYS = {"error", "message", "fields"}


def check_response(system: str, status: int, body: bytes) -> None:
    """The campaign's two promises for one response: never >= 500, every 4xx in the one error shape."""
    counts = FUZZ[system]
    counts["requests"] += 1
    counts[f"{status // 100}xx"] += 1
    assert status < 500, f"{system}: {status} {body[:300]!r}"
    if 400 <= status < 500:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        ok = isinstance(doc, dict) and set(doc) == ERROR_KEYS and isinstance(doc["error"], str)
        ok = ok and isinstance(doc["message"], str) and isinstance(doc["fields"], list)
        counts["4xx_bad_shape"] += not ok
        assert ok, f"{system}: {status} not in the error shape: {body[:300]!r}"


def serve_ready(app, timeout_s: float = 180.0) -> None:  # noqa: ANN001
    """Start the app's lifespan in schemathesis's ASGI client (kept for the session) and wait for /readyz."""
    deadline = time.monotonic() + timeout_s
    with asgi.get_client(app) as client:
        while time.monotonic() < deadline:
            r = client.get("/readyz")
            if r.status_code == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"not ready after {timeout_s} s: {r.text}")


def settled_readyz(client, timeout_s: float = 120.0):  # noqa: ANN001, ANN201
    """/readyz once loading has finished (ready, or failed with a reason)."""
    deadline = time.monotonic() + timeout_s
    while (r := client.get("/readyz")).status_code == 503 and "loading" in r.json()["message"]:
        assert time.monotonic() < deadline, "still loading"
        time.sleep(0.1)
    return r


def schema_of(app) -> schemathesis.schemas.BaseSchema:  # noqa: ANN001
    return schemathesis.openapi.from_asgi("/openapi.json", app)


class session_env:
    """MLSD_DATA_DIR (and other variables) pointed at a session folder while a world is built and loaded."""

    def __init__(self, data_dir: Path, **env: str | None) -> None:
        self.mp = pytest.MonkeyPatch()
        self.env = {"MLSD_DATA_DIR": str(data_dir), "MLSD_SCALE": "small", **env}

    def __enter__(self) -> None:
        for k, v in self.env.items():
            if v is None:
                self.mp.delenv(k, raising=False)
            else:
                self.mp.setenv(k, v)
        get_settings.cache_clear()

    def __exit__(self, *exc: object) -> None:
        self.mp.undo()
        get_settings.cache_clear()


def fuzz_budget() -> int:
    """Examples per operation and mode (positive, negative) of a route with a body: MLSD_FUZZ_EXAMPLES, else 500,
    so that one body route alone sends 1,000 requests."""
    return int(os.environ.get("MLSD_FUZZ_EXAMPLES", "500"))


TIME_BUDGET_S = (
    600.0  # per API: past it no new operation starts (the run fails if it then fell short of 1,000)
)


def fuzz_api(system: str, schema) -> dict[str, int]:  # noqa: ANN001
    """Every operation of `schema`, positive and negative; returns the requests sent per operation."""
    t0, sent = time.monotonic(), {}
    for result in schema.get_all_operations():
        op = result.ok()
        # the routes that take a body get the budget; the ops routes (a 403 or a constant) a few examples
        examples = fuzz_budget() if op.body else min(50, fuzz_budget())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() - t0 > TIME_BUDGET_S:
                break
            before = FUZZ[system]["requests"]

            # no shrinking: it replays a failure for minutes (5xx counts would include the replays); the first
            # failing request is reported as it was sent
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=op.as_strategy(generation_mode=mode))
            def one(case) -> None:  # noqa: ANN001
                try:
                    response = case.call()
                except Exception:  # the in-process client re-raises what the server did not handle: a 500
                    FUZZ[system]["requests"] += 1
                    FUZZ[system]["5xx"] += 1
                    raise
                check_response(system, response.status_code, response.content)

            try:
                one()
            except Exception as exc:
                if "Unsatisfiable" in type(exc).__name__ or "no negative" in str(exc).lower():
                    continue  # nothing in this operation can be made invalid (no parameters, no body)
                raise
            sent[f"{op.method.upper()} {op.path} {mode.value}"] = FUZZ[system]["requests"] - before
    assert FUZZ[system]["requests"] >= min(MIN_REQUESTS, fuzz_budget()), f"{system}: only {sent}"
    return sent
