"""ctr's settings (MLSD_CTR_*), its scales, the benchmark it runs, and one config per step (flags of `mlsd ctr`).

Kept light to import (pydantic and dataclasses only): `mlsd` reads SETTINGS to check the environment and a
locustfile may build it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.bench.flags import BenchFlags
from infra.config import REPO_ROOT
from infra.steps import ConfigError, DataFlags, ServeFlags, StepConfig, flag
from infra.system import BenchSpec

SCALES = {"small": 40_000, "medium": 150_000, "large": 600_000}  # impressions per simulated day
RESULTS = REPO_ROOT / "benchmarks" / "results" / "ctr"  # the small reports DESIGN.md quotes (committed)
Alias = Literal["champion", "challenger"]


class CtrSettings(BaseSettings):
    """What the ctr server reads from the environment (a server started by uvicorn or the bench has no flags)."""

    model_config = SettingsConfigDict(env_prefix="MLSD_CTR_", extra="ignore")

    alias: Alias = Field("champion", description="ctr server: the registry alias of the model it loads")
    stream: Path | None = Field(None, description="set by `bench --data criteo`: the /score_rows requests locust replays (the DeepFM of their folder is served)")  # fmt: skip

    def as_env(self) -> dict[str, str]:
        """These settings as the environment of a child process (the server the bench starts); unset ones left out."""
        prefix = self.model_config["env_prefix"]
        return {
            f"{prefix}{name}".upper(): str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }


SETTINGS = CtrSettings

BENCH = BenchSpec(
    app="systems.ctr.serve:build_app",
    locustfile="benchmarks/ctr/locustfile.py",
    route="predict",
    slo_p99_ms=30.0,
    target_p99_ms=15.0,
    rate=40.0,
    users=4,
    duration_s=60,
    ready_timeout_s=180,
)


def _between(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"--{name.replace('_', '-')} must be between {low:,} and {high:,}, got {value:,}")


@dataclass
class RealDataFlags(DataFlags):
    """`--data criteo:<path>` and `--rows N`: every build step and bench read the same file, in its own folder."""

    data_kinds = ("criteo",)  # the Criteo display-ads TSV (DESIGN.md, "Real data")
    data: str | None = flag(None, "a public dataset instead of the simulator: criteo:<path of train.txt>")
    rows: int = flag(1_000_000, "with --data: read the first N rows of the file (in file order)")

    def __post_init__(self) -> None:
        _between("rows", self.rows, 100, 50_000_000)
        super().__post_init__()

    def variant(self) -> str:
        """data-criteo-<hash of the file's path and --rows>: real data never shares the simulator's folder."""
        return self.scale if self.data is None else self.data_variant(self.rows)


@dataclass
class DataConfig(RealDataFlags):
    """The simulated marketplace: the scale sets impressions per day; the rest overrides the world's size."""

    n_days: int | None = flag(None, "days of impressions (default 14; the last 3 are held out)")
    impressions_per_day: int | None = flag(None, "impressions per day (default: the scale's)")
    n_users: int | None = flag(None, "users (default 6000)")
    n_ads: int | None = flag(None, "ads (default 400)")
    n_advertisers: int | None = flag(None, "advertisers (default 40)")
    n_sites: int | None = flag(None, "sites (default 30)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_days is not None:
            _between("n_days", self.n_days, 4, 60)  # a train day, and 3 test days
        for name in ("impressions_per_day", "n_users", "n_ads", "n_advertisers", "n_sites"):
            value = getattr(self, name)
            if value is not None:
                _between(name, value, 1, 10_000_000)

    def market_overrides(self) -> dict[str, int]:
        """The MarketConfig fields given on the command line."""
        names = ("n_days", "impressions_per_day", "n_users", "n_ads", "n_advertisers", "n_sites")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


@dataclass
class TrainConfig(RealDataFlags):
    """Hashed LR and DeepFM on the first days, scored on the last three, registered in MLflow."""

    epochs: int = flag(3, "epochs per model")
    batch_size: int = flag(1024, "minibatch size")

    def __post_init__(self) -> None:
        super().__post_init__()
        _between("epochs", self.epochs, 1, 50)
        _between("batch_size", self.batch_size, 1, 1_000_000)


@dataclass
class EvalConfig(RealDataFlags):
    """LR and DeepFM retrained over seeds 0..N-1: mean ± std, and the reliability plot."""

    seeds: int = flag(3, "seeds to train each model with")
    epochs: int = flag(3, "with --data: epochs per model (the simulator's eval uses train's defaults)")
    batch_size: int = flag(1024, "with --data: minibatch size")
    publish: bool = flag(True, "copy eval.json and reliability.png to --out (default: on)")
    out: Path = flag(
        RESULTS / "eval", "where --publish copies the report (default: benchmarks/results/ctr/eval)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _between("seeds", self.seeds, 1, 10)


@dataclass
class ServeConfig(ServeFlags, StepConfig):
    """POST /predict with uvicorn, on the model behind a registry alias."""

    alias: Alias = flag(help="registry alias of the model to serve (default: MLSD_CTR_ALIAS)",
                        factory=lambda: CtrSettings().alias)  # fmt: skip


@dataclass
class ExperimentConfig(StepConfig):
    """Simulated online A/B tests of the registered models, and the diagnostic that explains each."""

    # the names of experiment.SCENARIO_NAMES (tests/ctr/test_ctr_pipeline_shape.py checks they agree)
    scenario: Literal["all", "deepfm-vs-lr", "leaked-feature", "position-as-relevance", "miscalibration",
                      "offline-metric-not-kpi", "novelty"] = flag("all", "one scenario, or all")  # fmt: skip
    days: int = flag(10, "days the A/B runs")
    requests_per_day: int = flag(6000, "requests per day, both arms together")
    promote: bool = flag(False, "make the challenger champion if it wins deepfm-vs-lr")

    def __post_init__(self) -> None:
        _between("days", self.days, 2, 60)
        _between("requests_per_day", self.requests_per_day, 100, 200_000)

    def scenario_names(self) -> list[str] | None:
        return None if self.scenario == "all" else [self.scenario]


@dataclass
class MonitorConfig(StepConfig):
    """Drift signals on injected shifts against the real damage; a windowed HTML report."""

    rows: int = flag(30_000, "impressions per window")
    out: Path = flag(RESULTS / "monitoring", "report folder (default: benchmarks/results/ctr/monitoring)")

    def __post_init__(self) -> None:
        _between("rows", self.rows, 1000, 1_000_000)


@dataclass
class SkewConfig(StepConfig):
    """Train/serving skew: logged impressions replayed through the serving path, joined to training rows."""

    case: Literal["all", "clean", "missing-default", "timezone", "leaky-join"] = flag(
        "all", "one case, or all"
    )
    rows: int = flag(3000, "logged impressions to replay")

    def __post_init__(self) -> None:
        _between("rows", self.rows, 100, 100_000)


@dataclass
class BenchConfig(BenchFlags, RealDataFlags):
    """Train if needed, A/B and promote, serve the champion, load-test /predict beside the floor route."""

    duration: int = flag(BENCH.duration_s, "seconds of each counted run")
    rate: float = flag(BENCH.rate, "requests/s on /predict")

    def __post_init__(self) -> None:
        BenchFlags.__post_init__(self)
        RealDataFlags.__post_init__(self)


@dataclass
class AllConfig(RealDataFlags):
    """`mlsd ctr all`: data → train → eval; flags flow to the steps that have them."""

    epochs: int = flag(3, "epochs per model (train)")
    batch_size: int = flag(1024, "minibatch size (train)")
    seeds: int = flag(3, "seeds per model (eval)")
    publish: bool = flag(False, "copy eval's report to benchmarks/results/ctr/eval (default: off)")

    def __post_init__(self) -> None:
        super().__post_init__()
        _between("epochs", self.epochs, 1, 50)
        _between("seeds", self.seeds, 1, 10)
