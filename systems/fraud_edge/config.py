"""fraud's settings (every MLSD_FRAUD_* variable), its scales, and the config of each step (its CLI flags).

Light to import on purpose (pydantic; no torch, numpy or FastAPI): `mlsd` reads SETTINGS to check the
environment before it runs anything, and the server and the locustfile read it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.bench.flags import BenchFlags
from infra.steps import ConfigError, DataFlags, ServeFlags, StepConfig, flag

DEV_BUNDLE_KEY = "mlsd-dev-bundle-key"  # demo only: a device gets its key at provisioning, never from git


class FraudSettings(BaseSettings):
    """The MLSD_FRAUD_* variables: read by the server, the bundle signer and the bench's locustfile."""

    model_config = SettingsConfigDict(env_prefix="MLSD_FRAUD_", extra="ignore")

    store: Literal["redis", "redis_cluster", "memory"] | None = Field(
        None,
        description="velocity state the server keeps: redis, redis_cluster (MLSD_REDIS_CLUSTER_URL) or memory "
        "(default: redis when MLSD_ONLINE_STORE=redis, redis_cluster when it is redis_cluster, else memory)",
    )
    max_lateness_s: int = Field(
        3600,
        ge=0,
        le=10**10,
        description="oldest event time /score accepts, in seconds before the server clock (else 422); the "
        "velocity state keeps this much beyond its 24 h windows so a late event still finds its history",
    )
    max_future_s: int = Field(
        300,
        ge=0,
        le=86_400,
        description="newest event time /score accepts, in seconds after the server clock",
    )
    redis_deadline_ms: float = Field(
        50.0, gt=0, le=5000, description="how long /score waits for Redis before it answers from local state"
    )
    journal: Path | None = Field(
        None,
        description="append-only record of transactions scored while Redis was out, replayed into Redis when "
        "it returns (default: <artifact dir>/journal/outage.jsonl)",
    )
    namespace: str = Field(
        "serve", description="Redis key namespace of the velocity state (mlsd:fraud:<namespace>:)"
    )
    bundle_key: SecretStr | None = Field(
        None,
        description="HMAC key for bundles signed without Ed25519 (legacy); unset: a demo key and a loud warning",
    )
    signing_key: Path | None = Field(
        None,
        description="Ed25519 private key (PEM file) `train` signs bundles with, beside the HMAC "
        "(systems.fraud_edge.bundle.generate_keypair makes one)",
    )
    verify_key: Path | None = Field(
        None,
        description="Ed25519 public key (PEM file) the scorer verifies bundles with; set, a bundle without a "
        "valid Ed25519 signature is refused and the HMAC is not consulted (default: the signing key's public half)",
    )
    stream: Path | None = Field(
        None, description="set by the bench: the JSON transactions locust replays to /score"
    )
    access_log: bool = Field(
        True, description="one JSON access-log line per request (the bench turns it off)"
    )


SETTINGS = FraudSettings

# The simulated population per scale: (cards, terminals, days). `small` builds in seconds on a laptop.
SCALES: dict[str, tuple[int, int, int]] = {
    "small": (3000, 400, 42),
    "medium": (20000, 2000, 60),
    "large": (100000, 8000, 90),
}


@dataclass
class RealDataFlags(DataFlags):
    """`--data creditcard:<path>`: the build steps and bench read the public CSV, in a folder of its own."""

    data_kinds = ("creditcard",)  # the public European card-holder CSV (DESIGN.md, "Real data")
    data: str | None = flag(
        None, "a public dataset instead of the simulator: creditcard:<path of creditcard.csv>"
    )

    def variant(self) -> str:
        """data-creditcard-<hash of the file's path>: real data never shares the simulator's folder."""
        return self.scale if self.data is None else self.data_variant()


@dataclass
class DataConfig(RealDataFlags):
    """Simulate the transaction stream of a scale (the flags override its size) and its batch features."""

    cards: int | None = flag(None, "number of cards (default: the scale's)")
    terminals: int | None = flag(
        None, "number of terminals, at least 10: one per city (default: the scale's)"
    )
    days: int | None = flag(
        None, "days of transactions, at least 24: the split needs them (default: the scale's)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, low in (("cards", 1), ("terminals", 10), ("days", 24)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"--{name} must be at least {low}, got {value}")


@dataclass
class TrainConfig(RealDataFlags):
    """LightGBM (the quality reference) and the MLP; ONNX fp32 / int8; thresholds; a signed bundle."""

    epochs: int = flag(8, "MLP epochs")
    batch_size: int = flag(512, "MLP batch size")
    lr: float = flag(2e-3, "MLP learning rate (Adam)")
    hidden: tuple[int, ...] = flag((64, 32), "MLP hidden widths, one flag per layer")
    lgbm_rounds: int = flag(300, "LightGBM boosting rounds (early stopping on validation)")
    mlflow: bool = flag(True, "log the run to MLflow")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.hidden = tuple(self.hidden)
        if not 1 <= self.epochs <= 200:
            raise ConfigError(f"--epochs must be between 1 and 200, got {self.epochs}")
        if self.batch_size < 1 or self.lgbm_rounds < 1 or self.lr <= 0:
            raise ConfigError("--batch-size, --lgbm-rounds and --lr must be positive")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"--hidden widths must be positive, got {list(self.hidden)}")


@dataclass
class EvalConfig(RealDataFlags):
    """Quality, cost by policy and drift monitors on the test split (eventual labels)."""


@dataclass
class ServeConfig(ServeFlags, StepConfig):
    """POST /score and POST /bundle/reload."""

    store: Literal["redis", "redis_cluster", "memory"] | None = flag(
        None, "velocity state (default: MLSD_FRAUD_STORE)"
    )


@dataclass
class ScoreConfig(StepConfig):
    """Score one transaction with the Python edge scorer, no server (in-process velocity store)."""

    card: str | None = flag(None, "card id (required)")
    amount: float | None = flag(None, "amount in --currency (required)")
    terminal: str = flag("t00001", "terminal id")
    currency: Literal["EUR", "USD", "GBP"] = flag("EUR", "currency of --amount")
    lat: float = flag(48.86, "terminal latitude")
    lon: float = flag(2.35, "terminal longitude")
    tx_id: str = flag(
        help="transaction id (default: cli<epoch ms>)", factory=lambda: f"cli{int(time.time() * 1000)}"
    )

    def __post_init__(self) -> None:
        if self.card is None or self.amount is None:
            raise ConfigError("--card and --amount are required")

    def request_fields(self) -> dict[str, object]:
        return {
            "tx_id": self.tx_id, "card_id": self.card, "terminal_id": self.terminal, "amount": self.amount,
            "currency": self.currency, "lat": self.lat, "lon": self.lon,
        }  # fmt: skip


@dataclass
class BenchConfig(BenchFlags, RealDataFlags):
    """Load-test POST /score with locust (after data, train and eval when their outputs are missing)."""

    duration: int = flag(60, "seconds of each counted run")
    rate: float = flag(300.0, "requests/s on /score")
    store: Literal["redis", "redis_cluster", "memory"] = flag("redis", "velocity state the server keeps")
    mlflow: bool = flag(True, "log the training run to MLflow (when bench trains first)")

    def __post_init__(self) -> None:
        BenchFlags.__post_init__(self)
        RealDataFlags.__post_init__(self)


@dataclass
class AllConfig(RealDataFlags):
    """`mlsd fraud all`: data, train, eval in order."""

    mlflow: bool = flag(True, "log the training run to MLflow")
