"""Shared fixtures: settings in a temp data dir, Redis and PostgreSQL for the service-backed tests.

A missing service skips its tests locally, but fails them when MLSD_REQUIRE_SERVICES=1 (CI sets it):
CI has Redis and PostgreSQL, so a skip there would hide a broken test.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REQUIRE_SERVICES = os.environ.get("MLSD_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("MLSD_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` skip, with the reason, where torch sees no CUDA device (CI has none; gpu-check runs them)."""
    import torch  # here, not at the top: only when some test is marked cuda is it worth the import

    if not any(item.get_closest_marker("cuda") for item in items) or torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch sees none); `make gpu-check` runs these on one")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


def service_missing(what: str) -> None:
    """Skip locally; fail under MLSD_REQUIRE_SERVICES=1."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} (MLSD_REQUIRE_SERVICES=1, so this is a failure, not a skip)")
    pytest.skip(what)


@pytest.fixture
def redis_server_binary() -> str:
    """The path of redis-server, for tests that start their own; none installed: skip, or fail in CI."""
    path = shutil.which("redis-server")
    if path is None or shutil.which("redis-cli") is None:
        service_missing("redis-server/redis-cli are not installed (apt-get install redis-server)")
    return str(path)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data dir and MLflow DB, and fresh cached settings."""
    from infra.config import get_settings

    data_dir = tmp_path / "mlsd"
    monkeypatch.setenv("MLSD_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLSD_ONLINE_STORE", raising=False)
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


@pytest.fixture
def chromium() -> str:
    """Headless Chromium's path for the browser tests: skipped where it is not installed, failed in CI."""
    from infra.serving.browser import chromium_path

    path = chromium_path()
    if path:
        return path
    msg = "headless Chromium is not installed (apt-get install chromium)"
    if REQUIRE_SERVICES:
        pytest.fail(f"{msg} (MLSD_REQUIRE_SERVICES=1, so this is a failure, not a skip)")
    pytest.skip(msg)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """For a test that calls configure_logging in-process: the loggers it sets up are put back as they were
    after it, so a later test's captured output does not depend on the order tests ran in."""
    import logging

    names = ["", "mlsd", "mlsd.access"]
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}  # fmt: skip
    yield
    for n, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url_session() -> Iterator[str]:
    """REDIS_URL if it answers, else a throwaway redis-server on a free port, else skip/fail."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if _redis_ping(url):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing(f"Redis at {url} is not answering and redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        if _redis_ping(url):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        service_missing(f"a throwaway redis-server on port {port} did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_url_session: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REDIS_URL", redis_url_session)
    from infra.config import get_settings

    get_settings.cache_clear()
    return redis_url_session


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A name no other test run uses: Feast projects and Redis keys stay apart. After the test, the keys that
    carry it are deleted from the Redis the test used (Feast's end with the project name, the velocity
    store's start with its prefix): the machine's Redis is shared, and CI runs again and again."""
    name = "t" + uuid.uuid4().hex[:10]
    yield name
    if "redis_url" not in request.fixturenames:
        return
    import redis

    url = request.getfixturevalue("redis_url_session")
    if _redis_ping(url):
        with redis.Redis.from_url(url) as client:
            keys = list(client.scan_iter(match=f"*{name}*", count=5000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped after), as a URL."""
    import psycopg2

    try:
        conn = psycopg2.connect(POSTGRES_URL, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        service_missing(f"PostgreSQL at {POSTGRES_URL} is not reachable: {str(exc).strip()}")
    conn.autocommit = True
    name = "mlsd_test_" + uuid.uuid4().hex[:8]
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    base = POSTGRES_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": [1, 2]}} -> {"a.b.0": 1, "a.b.1": 2}: every leaf of a nested JSON value, by its path."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}


def golden_differences(
    golden: dict, got: dict, atol: float | dict[str, float] = 1e-6
) -> tuple[list[str], float]:
    """What in `got` differs from `golden` (numbers beyond atol, other values exactly, or missing), and the
    largest numeric difference seen. `atol` may be a dict: the longest of its keys found in a value's path sets
    that value's tolerance ("" matches every path: the default). The golden checks of every system compare through this one function."""
    want, have = _flatten(golden), _flatten(got)
    wrong, largest = [], 0.0
    for key, expected in want.items():
        if key not in have:
            wrong.append(f"{key}: missing")
        elif isinstance(expected, int | float) and not isinstance(expected, bool):
            diff = abs(float(have[key]) - float(expected))  # type: ignore[arg-type]
            largest = max(largest, diff)
            if diff > _tolerance(atol, key):
                wrong.append(f"{key}: {have[key]!r} != {expected!r} (|diff| {diff:.3g})")
        elif have[key] != expected:
            wrong.append(f"{key}: {have[key]!r} != {expected!r}")
    return wrong, largest


def _tolerance(atol: float | dict[str, float], key: str) -> float:
    if not isinstance(atol, dict):
        return atol
    pattern = max((p for p in atol if p in key), key=len)
    return atol[pattern]


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512dq", "avx512bw", "avx512vl",
              "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")  # fmt: skip


def cpu_kind() -> str:
    """The CPU's vector instruction sets, e.g. "x86_64 avx,avx2,avx512f,...": what numpy, torch, ONNX Runtime
    and FAISS pick their float kernels by. Seeded runs agree to the last bit on one kind, not across kinds."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return f"{platform.machine()} {','.join(f for f in SIMD_FLAGS if f in flags) or 'baseline'}"


def _same_shape(golden: object, got: object) -> object:
    """`got`'s values at `golden`'s paths only (a capture holds what the golden file holds, not timings)."""
    if isinstance(golden, dict) and isinstance(got, dict):
        return {k: _same_shape(v, got[k]) for k, v in golden.items() if k in got}
    if isinstance(golden, list) and isinstance(got, list):
        return [_same_shape(g, h) for g, h in zip(golden, got, strict=False)]
    return got


@pytest.fixture
def golden_check() -> Callable[..., None]:
    """Assert `got` reproduces `golden`; prints the largest difference and the mode (pytest -rP).

    Seeded runs agree to the last bit only on one CPU kind (cpu_kind): another kind's float kernels (AVX-512 vs
    AVX2, another BLAS path) move a trained model in the fourth decimal, and a tuned threshold with it. So:
    - where `<golden>.cpus.json` holds a capture for this CPU kind, `got` must equal it within `atol` (1e-6);
    - elsewhere `got` must be within `cross_cpu` of the golden file (the old code's numbers), a tolerance set
      from the spread measured between two CPU kinds; GOLDEN_CAPTURE=1 then records this kind's numbers
      (only when that check passes), so later runs on it are exact again.
    """

    def check(
        golden: dict, got: dict, atol: float = 1e-6, *, file: Path, cross_cpu: float | dict[str, float]
    ) -> None:
        captures_file = file.with_name(file.stem + ".cpus.json")
        captures = json.loads(captures_file.read_text()) if captures_file.exists() else {}
        kind = cpu_kind()
        if kind in captures:
            wrong, largest = golden_differences(captures[kind], got, atol)
            mode = f"exact (atol {atol:g}) against the capture for this CPU kind ({kind}) in {captures_file.name}"
        else:
            wrong, largest = golden_differences(golden, got, cross_cpu)
            mode = f"no capture for this CPU kind ({kind}): within the cross-CPU tolerance {cross_cpu}"
            if not wrong and os.environ.get("GOLDEN_CAPTURE") == "1":
                captures[kind] = _same_shape(golden, got)
                captures_file.write_text(json.dumps(captures, indent=1, sort_keys=True) + "\n")
                mode += f"; captured into {captures_file.name}"
        print(
            f"golden check: {len(_flatten(golden))} values, largest numeric difference {largest:.3g}; {mode}"
        )
        assert not wrong, f"{len(wrong)} values differ ({mode}; largest {largest:.3g}):\n" + "\n".join(
            wrong[:40]
        )

    return check


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MLSD_REDIS_CLUSTER_URL if a healthy Redis Cluster answers there, else a throwaway three-master cluster on
    free ports (infra.redis_cluster, AOF off), stopped at the end; no redis-server: skip, or fail in CI."""
    # here, not at the top: this fixture was appended, and only sessions that use a cluster need the module
    from infra import redis_cluster
    from infra.config import ServiceUnavailable

    url = os.environ.get("MLSD_REDIS_CLUSTER_URL")
    if url and redis_cluster.seed_is_healthy(url):
        yield url
        return
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        service_missing(redis_cluster.INSTALL_HINT)
    spec = redis_cluster.ClusterSpec(
        port_base=redis_cluster.free_port_base(),
        appendonly=False,
        root=tmp_path_factory.mktemp("redis-cluster"),
    )
    try:
        redis_cluster.start(spec)
    except ServiceUnavailable as exc:
        redis_cluster.stop(spec)
        service_missing(f"a throwaway Redis Cluster did not start: {exc}")
    yield spec.url
    redis_cluster.stop(spec, remove_data=True)


@pytest.fixture
def capture_threads() -> Iterator[None]:
    """torch on the threads the golden numbers were captured with: the CLI's default on this 2-core machine kind.
    Other tests (and MiniLM(threads=1)) leave torch on one thread, and a trained ranker or reranker moves in the
    third decimal with the thread count: float sums run in another order."""
    import torch  # here: only the golden checks need it

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
