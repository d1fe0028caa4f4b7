"""One settings object for every system, read from the environment.

`mlsd settings` prints every variable with its default and meaning (the README's table is that table).

Each system adds its own settings under one prefix (MLSD_RECSYS_, MLSD_CTR_, MLSD_FRAUD_, MLSD_RAG_) in its
config.py; `mlsd` checks every MLSD_* variable in the environment against all of them (`check_environment`),
so a typo or a malformed value is one line and exit 2, not a setting silently ignored.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
SCALES = ("small", "medium", "large", "xlarge")
Scale = Literal["small", "medium", "large", "xlarge"]

# The Host names a server answers to by default (MLSD_ALLOWED_HOSTS; infra.serving's Host check): this machine's.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "testserver", "[::1]")
# A Host name as the header carries it, without its port: a DNS name, an IPv4 address, a bracketed IPv6 one, or *.
_HOST_NAME = re.compile(
    r"\*|\[[0-9a-f:.]+\]|[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?"
)

# Variables read outside any settings class: the test suite's and CI's switches.
TEST_ENV = {
    "MLSD_REQUIRE_SERVICES": "1 in CI: a test whose service (Redis, PostgreSQL) is missing fails instead of skipping",
    "MLSD_POSTGRES_URL": "PostgreSQL for the tests marked postgres (default postgresql://postgres@127.0.0.1:5432/postgres)",
    "MLSD_FUZZ_EXAMPLES": "requests per route and phase in the schema-fuzzing campaign (tests/campaign; default 500)",
}


class ServiceUnavailable(RuntimeError):
    """A service a step or server needs is down; the message says what to start or which setting to change."""


# Feast phones home unless told not to; set before any feast import.
os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("FEAST_TELEMETRY", "False")
# MLflow would install its own log handler and format at import; infra.logs gives it the project's one.
os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")


class Settings(BaseSettings):
    """Settings shared by every step; env vars override the defaults."""

    model_config = SettingsConfigDict(env_prefix="MLSD_", extra="ignore")

    data_dir: Path = Field(REPO_ROOT / ".mlsd", description="generated data, models, indexes, run outputs")
    online_store: Literal["sqlite", "redis", "redis_cluster"] = Field(
        "sqlite", description="Feast online store: sqlite, redis or redis_cluster"
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "MLSD_REDIS_URL"),
        description="Redis for the online store and streaming state",
    )
    redis_cluster_url: str = Field(
        "redis://127.0.0.1:7000",
        description="Redis Cluster seed node(s), comma-separated (`mlsd redis-cluster start` runs one)",
    )
    redis_timeout_s: float = Field(
        0.25, gt=0, description="connect and socket timeout (s) of Feast's Redis and Redis Cluster clients"
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster to connect to (e.g. ray://head:10001); unset: a local Ray in this process",
    )
    ray_cpus: int = Field(1, ge=1, description="CPUs a local Ray may use (ignored with MLSD_RAY_ADDRESS)")
    ray_object_store_mb: int = Field(
        512, ge=100, description="object-store memory (MB) of a local Ray (ignored with MLSD_RAY_ADDRESS)"
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "MLSD_MLFLOW_TRACKING_URI"),
        description="MLflow backend (default sqlite:///<data dir>/mlflow.db)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="torch device; auto = cuda when available"
    )
    seed: int = Field(0, description="seed for every generator and model")
    scale: Scale = Field("small", description="data scale for steps (bench picks its own default)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="level of every log line (mlsd's and the libraries'; DEBUG shows their routine lines too)",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="bearer token for the servers' admin routes (/stats/reset, /bundle/reload); "
        "unset: they answer 403",
    )

    allowed_hosts: str = Field(
        ",".join(LOCAL_HOSTS),
        description="Host names the servers answer to, comma-separated, port left out (a request for another "
        "Host is 400, against DNS rebinding); * for any, e.g. behind a load balancer that checks it",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, v: str) -> str:
        names = [n.strip().lower() for n in v.split(",")]
        bad = [n for n in names if not _HOST_NAME.fullmatch(n)]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not a host name: give names without scheme, port or path, comma-separated "
                "(api.example.com,127.0.0.1), or * for any"
            )
        return ",".join(names)

    @property
    def allowed_host_names(self) -> tuple[str, ...]:
        """MLSD_ALLOWED_HOSTS as the names create_app's Host check compares against (lower case)."""
        return tuple(self.allowed_hosts.split(","))

    @field_validator("online_store", "device", mode="before")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower() if isinstance(v, str) else v

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper() if isinstance(v, str) else v

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    def torch_device(self) -> str:
        """`cpu` or `cuda`: MLSD_DEVICE, or with `auto` whatever torch sees (torch imported only here)."""
        if self.device != "auto":
            return self.device
        import torch  # here, not at the top: `mlsd list` and the settings check must not load torch

        return "cuda" if torch.cuda.is_available() else "cpu"

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


def env_fields(settings: type[BaseSettings]) -> list[tuple[str, FieldInfo]]:
    """(variable, field) for every MLSD_* variable a settings class reads."""
    prefix = settings.model_config.get("env_prefix", "")
    out = []
    for name, f in settings.model_fields.items():
        alias = f.validation_alias
        names = list(alias.choices) if isinstance(alias, AliasChoices) else [f"{prefix}{name}".upper()]
        out += [(env, f) for env in names if isinstance(env, str) and env.startswith("MLSD_")]
    return out


def env_names(settings: type[BaseSettings]) -> dict[str, str]:
    """The MLSD_* variables a settings class reads, each with its description (for checks and the README)."""
    return {env: f.description or "" for env, f in env_fields(settings)}


def check_environment(settings_classes: list[type[BaseSettings]]) -> None:
    """Every MLSD_* variable set must be one some class reads, and every class must validate.

    Raises ValueError with one line naming the variable: unknown, or a value that does not validate."""
    known = set(TEST_ENV)
    for cls in settings_classes:
        known |= set(env_names(cls))
    unknown = sorted(k for k in os.environ if k.startswith("MLSD_") and k not in known)
    if unknown:
        raise ValueError(f"unknown setting {', '.join(unknown)} (the README lists every MLSD_* variable)")
    for cls in settings_classes:
        try:
            cls()
        except ValidationError as exc:
            raise ValueError(settings_error(exc, cls.model_config.get("env_prefix", "MLSD_"))) from None


def settings_error(exc: Exception, prefix: str = "MLSD_") -> str:
    """One line naming the env var that is wrong, for CLI output."""
    errors: list[dict] = getattr(exc, "errors", lambda: [])()
    if not errors:
        return str(exc)
    parts = []
    for err in errors:
        field = ".".join(str(x) for x in err.get("loc", ()))
        env = (prefix + field).upper() if field else "environment"
        parts.append(f"{env}: {err.get('msg')} (got {err.get('input')!r})")
    return "; ".join(parts)
