"""One log format for every process: a server's and a step's output, captured as a user piping it would see it."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import httpx
import pytest

from infra.config import REPO_ROOT, get_settings
from infra.logs import IGNORED_WARNINGS, configure_logging

# the in-process configure_logging calls here leave the loggers as they found them (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("restored_logging")

LOG_LINE = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S")
# Lines a user saw before: onnxruntime through basicConfig, MLflow's own format, uvicorn's default format.
NOISE = ("WARNING:root:", "Please consider", "SADeprecationWarning", "INFO:     ", "mlflow.store.db.utils")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSD_")}
    return {**env, "MLSD_DATA_DIR": str(tmp_path / "mlsd"), "PYTHONPATH": str(REPO_ROOT), **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_lines(text: str) -> list[dict]:
    """Every line is a log line in the one format or a JSON access line (returned); no colour, no known noise."""
    assert "\x1b[" not in text, "colour codes in piped output"
    for noise in NOISE:
        assert noise not in text, f"noise line {noise!r} in:\n{text}"
    access = []
    for line in text.splitlines():
        if line.startswith("{"):
            access.append(json.loads(line))
        else:
            assert LOG_LINE.match(line), f"not in the one log format: {line!r}\n{text}"
    return access


def test_a_server_logs_one_format_and_one_access_line_per_request(tmp_path: Path) -> None:
    port = _free_port()
    code = textwrap.dedent(f"""
        from infra.serving import create_app, run_server
        run_server(create_app("demo", load_in_background=False), "127.0.0.1", {port})
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(tmp_path, MLSD_ADMIN_TOKEN="t"),
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        for _ in range(2):
            assert httpx.get(f"http://127.0.0.1:{port}/floor", timeout=5).status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    access = _check_lines(out)
    assert [a["path"] for a in access] == ["/floor", "/floor"], out
    assert "Uvicorn running on" in out  # uvicorn's own lines, in the project's format


def test_log_level_governs_the_libraries_too(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import logging
        from infra.logs import configure_logging
        configure_logging()
        logging.getLogger("uvicorn.error").info("uvicorn info")
        logging.getLogger("mlsd.x").info("mlsd info")
        logging.getLogger("some.library").warning("library warning")
        logging.warning("Please consider to run pre-processing before quantization. Refer to example")
        import warnings
        warnings.simplefilter("once", DeprecationWarning)  # what importing Feast does
        warnings.warn_explicit("The ``noload`` loader strategy is deprecated", DeprecationWarning,
                               "sqlalchemy_store.py", 327, module="mlflow.store.tracking.sqlalchemy_store")
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(tmp_path, MLSD_LOG_LEVEL="WARNING"),
        cwd=REPO_ROOT,
        check=True,
    ).stderr
    _check_lines(out)
    assert "uvicorn info" not in out and "mlsd info" not in out
    assert re.search(r"WARNING some\.library: library warning", out)
    debug = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(tmp_path, MLSD_LOG_LEVEL="DEBUG"),
        cwd=REPO_ROOT,
        check=True,
    ).stderr
    assert "DEBUG root: Please consider" in debug  # demoted, not lost
    assert "DEBUG py.warnings: sqlalchemy_store.py:327: DeprecationWarning: The ``noload``" in debug
    assert "INFO uvicorn.error: uvicorn info" in debug


def test_mlflows_sqlalchemy_deprecation_is_silenced() -> None:
    get_settings.cache_clear()
    configure_logging()
    with warnings.catch_warnings(record=True) as seen:
        warnings.filterwarnings("always", message="another deprecation")
        message, module = IGNORED_WARNINGS[0]
        warnings.warn_explicit(
            "The ``noload`` loader strategy is deprecated and will be removed",
            DeprecationWarning,
            "sqlalchemy_store.py",
            327,
            module=f"{module}.tracking.sqlalchemy_store",
        )
        warnings.warn_explicit("another deprecation", DeprecationWarning, "x.py", 1, module="mlflow.x")
    assert [str(w.message) for w in seen] == ["another deprecation"]


@pytest.mark.slow
def test_a_training_step_logs_one_format_without_the_known_noise(tmp_path: Path) -> None:
    """fraud's data and train steps: quantization warnings, a provider line per session and MLflow's own
    format were the noise; piped, the output is the one format plus the tables (no colour)."""
    env = _env(tmp_path)
    cli = [sys.executable, "-m", "mlsd.cli", "fraud"]
    data = ["data", "--cards", "300", "--terminals", "20", "--days", "30"]
    subprocess.run([*cli, *data], capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=True)
    run = subprocess.run(
        [*cli, "train", "--epochs", "1", "--lgbm-rounds", "5"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        check=True,
    )
    err = run.stderr
    assert "\x1b[" not in run.stdout + err
    for noise in NOISE:
        assert noise not in run.stdout + err, noise
    logged = [line for line in err.splitlines() if LOG_LINE.match(line)]
    assert logged, err
    assert len([line for line in logged if "runs on CPUExecutionProvider" in line]) == 1, err


def test_a_second_call_with_another_level_moves_every_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSD_LOG_LEVEL", "DEBUG")
    get_settings.cache_clear()
    configure_logging()
    handlers = [*logging.getLogger().handlers, *logging.getLogger("mlsd").handlers]
    record = logging.LogRecord("mlsd.x", logging.DEBUG, __file__, 1, "shown at DEBUG", None, None)
    ours = [h for h in handlers if getattr(h, "_mlsd", False)]
    assert len(ours) == 2 and all(h.filter(record) for h in ours)
    monkeypatch.setenv("MLSD_LOG_LEVEL", "INFO")
    get_settings.cache_clear()
    configure_logging()
    assert not any(h.filter(record) for h in ours)
