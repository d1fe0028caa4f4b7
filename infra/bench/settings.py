"""What the bench harness hands to locust through the environment (set by `run_bench`, not by hand)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BenchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLSD_BENCH_", extra="ignore")

    rate: float = Field(100.0, gt=0, description="set by the bench harness: requests/s on the system route")
    users: int = Field(4, ge=1, description="set by the bench harness: locust users (one loads /floor)")
    floor_rate: float = Field(20.0, gt=0, description="set by the bench harness: requests/s on /floor")
