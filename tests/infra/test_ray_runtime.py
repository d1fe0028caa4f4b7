"""Ray: a bounded local runtime runs a Ray Data pipeline, shuts down clean, and the same code joins a cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest
import ray

from infra.config import REPO_ROOT, Settings
from infra.ray_runtime import init_ray, shutdown_ray

# The pipeline both tests run: the same code on a local Ray and through an address.
PIPELINE = """
import pandas as pd
import ray

def watch_share(batch: pd.DataFrame) -> pd.DataFrame:
    return batch.assign(share=batch.watches / batch.watches.sum())

frame = pd.DataFrame({"user_id": range(6), "watches": [1, 2, 3, 4, 5, 5]})
out = ray.data.from_pandas(frame).map_batches(watch_share, batch_format="pandas", batch_size=3).to_pandas()
"""


def _ray_processes() -> list[str]:
    """Ray's own processes started under this one (GCS, raylet, agents, workers)."""
    names = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "ray" in cmd or proc.name() in ("gcs_server", "raylet"):
            names.append(proc.name())
    return names


def test_local_ray_is_bounded_runs_ray_data_and_shuts_down_clean() -> None:
    runtime = init_ray(num_cpus=1, object_store_mb=256)
    try:
        assert runtime.local and runtime.cpus == 1 and runtime.object_store_mb == pytest.approx(256)
        assert init_ray() == runtime  # a second call returns the running one
        scope: dict = {}
        exec(PIPELINE, scope)
        out = scope["out"].sort_values("user_id").reset_index(drop=True)
        # batch_size=3: each batch is normalised on its own, which shows the function ran per batch
        expected = pd.DataFrame(
            {
                "user_id": range(6),
                "watches": [1, 2, 3, 4, 5, 5],
                "share": [1 / 6, 2 / 6, 3 / 6, 4 / 14, 5 / 14, 5 / 14],
            }
        )
        pd.testing.assert_frame_equal(out, expected, check_dtype=False)
        assert _ray_processes()
    finally:
        shutdown_ray()
    assert not ray.is_initialized()
    deadline = time.monotonic() + 15
    while _ray_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ray_processes() == []


@pytest.mark.slow
def test_same_code_connects_to_an_existing_ray_by_address() -> None:
    """A local Ray stands in for a cluster; a second process with MLSD_RAY_ADDRESS runs the same pipeline on it."""
    runtime = init_ray(num_cpus=1)
    try:
        script = (
            "from infra.ray_runtime import init_ray, shutdown_ray\n"
            "runtime = init_ray()\n"
            f"{PIPELINE}\n"
            "print(runtime.local, runtime.cpus, round(out.share.sum(), 6))\n"
            "shutdown_ray()\n"
        )
        env = {**os.environ, "MLSD_RAY_ADDRESS": runtime.address, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.split()[-3:] == ["False", "1.0", "2.0"]  # not local; the cluster's one CPU
    finally:
        shutdown_ray()


def test_ray_settings_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        Settings().ray_cpus == 1 and Settings().ray_object_store_mb == 512 and Settings().ray_address is None
    )
    monkeypatch.setenv("MLSD_RAY_CPUS", "0")
    with pytest.raises(ValueError, match="ray_cpus"):
        Settings()
