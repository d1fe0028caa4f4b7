"""One settings object for every system, read from the environment.

| variable               | default                                  | meaning                                   |
|------------------------|------------------------------------------|-------------------------------------------|
| MLSD_DATA_DIR          | <repo>/.mlsd                             | generated data, models, indexes, runs     |
| MLSD_ONLINE_STORE      | sqlite                                   | Feast online store: sqlite or redis       |
| REDIS_URL              | redis://127.0.0.1:6379/0                 | Redis for the online store and state      |
| MLFLOW_TRACKING_URI    | sqlite:///<data dir>/mlflow.db           | MLflow backend store                      |
| MLSD_DEVICE            | cuda when available, else cpu            | torch device                              |
| MLSD_SEED              | 0                                        | seed for every generator and model        |
| MLSD_SCALE             | small                                    | data scale: small, medium or large        |
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
SCALES = ("small", "medium", "large")
Scale = Literal["small", "medium", "large"]

# Feast phones home unless told not to; set before any feast import.
os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("FEAST_TELEMETRY", "False")


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # torch is a hard dependency, but config must import without it
        return "cpu"


class Settings(BaseSettings):
    """Settings shared by every step; env vars override the defaults."""

    model_config = SettingsConfigDict(env_prefix="MLSD_", extra="ignore")

    data_dir: Path = REPO_ROOT / ".mlsd"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL", "MLSD_REDIS_URL")
    )
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "MLSD_MLFLOW_TRACKING_URI")
    )
    device: str = Field(default_factory=_default_device)
    seed: int = 0
    scale: Scale = "small"

    @field_validator("online_store", mode="before")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower() if isinstance(v, str) else v

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    def system_dir(self, system: str) -> Path:
        """Where one system keeps its artifacts: <data dir>/<system>/ (created)."""
        path = self.data_dir / system
        path.mkdir(parents=True, exist_ok=True)
        return path


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_error(exc: Exception) -> str:
    """One line naming the env var that is wrong, for CLI output."""
    errors = getattr(exc, "errors", lambda: [])()
    if not errors:
        return str(exc)
    parts = []
    for err in errors:
        field = ".".join(str(x) for x in err.get("loc", ()))
        env = "MLSD_" + field.upper() if field else "environment"
        parts.append(f"{env}: {err.get('msg')} (got {err.get('input')!r})")
    return "; ".join(parts)
