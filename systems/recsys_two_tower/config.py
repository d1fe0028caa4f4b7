"""recsys settings (MLSD_RECSYS_*), the data scales, the tower shape and one config per step (its CLI flags).

Light to import (pydantic and dataclasses only): `mlsd` reads SETTINGS to check the environment.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.bench.flags import BenchFlags
from infra.config import Scale
from infra.steps import ConfigError, ServeFlags, StepConfig, StepError, flag


class RecsysSettings(BaseSettings):
    """What the recsys server and its load test read from the environment."""

    model_config = SettingsConfigDict(env_prefix="MLSD_RECSYS_", extra="ignore")

    scale: Scale | None = Field(
        None,
        description="the artifact scale the recsys server loads (default: MLSD_SCALE); "
        "`mlsd recsys serve/bench --scale` set it for the server they start",
    )
    variant: str | None = Field(
        None,
        description="an artifact folder the recsys server loads instead of the scale's: "
        "`mlsd recsys bench --data` sets it to the dataset's folder (data_movielens_<hash>)",
    )
    users: int = Field(
        20_000, ge=1, description="known users the recsys load test draws from (set by `mlsd recsys bench`)"
    )
    users_file: Path | None = Field(
        None,
        description="a JSON list of user ids the load test draws from instead of 0..users-1 "
        "(set by `mlsd recsys bench --data`: the dataset's test users)",
    )
    feature_deadline_ms: float = Field(
        50.0, gt=0, le=10_000,
        description="how long /recommend waits for the online user features before answering degraded",
    )  # fmt: skip


SETTINGS = RecsysSettings


# ------------------------------------------------------------------------------------------ data scales
@dataclass(frozen=True)
class FeedConfig:
    """The size and shape of a generated feed (data.generate draws it)."""

    n_users: int
    n_videos: int
    events_per_user: float  # mean; the activity is heavy-tailed
    days: int = 28
    test_days: int = 4
    zipf_a: float = 1.1  # popularity exponent
    n_creators: int | None = None
    seed: int = 0


SCALES: dict[str, FeedConfig] = {
    "small": FeedConfig(n_users=1_500, n_videos=6_000, events_per_user=40),
    "medium": FeedConfig(n_users=20_000, n_videos=1_000_000, events_per_user=40),
    "large": FeedConfig(n_users=200_000, n_videos=5_000_000, events_per_user=50),
    # xlarge: the catalog curve's top point; `mlsd recsys sweep` measures the index on it (DESIGN.md says how)
    "xlarge": FeedConfig(n_users=400_000, n_videos=10_000_000, events_per_user=50),
}


def feed_config(scale: str, seed: int) -> FeedConfig:
    """The feed of a scale, drawn with this seed; StepError for a scale recsys does not define."""
    if scale not in SCALES:
        raise StepError(f"recsys has no '{scale}' scale; supported: {', '.join(SCALES)}")
    return replace(SCALES[scale], seed=seed)


# ------------------------------------------------------------------------------------------ the model's shape
@dataclass
class TowerConfig:
    """Both towers' sizes (model.TwoTower builds them; saved beside the weights)."""

    user_buckets: int = 1 << 15
    video_buckets: int = 1 << 18
    creator_buckets: int = 1 << 14
    id_dim: int = 32
    hidden: int = 128
    out_dim: int = 64
    history_len: int = 20
    temperature: float = 0.05
    logq: float = 1.0  # strength of the logQ correction: 1 = the unbiased full softmax, 0 = none
    uniform_negatives: int = 0  # videos drawn uniformly per batch beside the in-batch ones (mixed negatives)
    init_std: float = 0.0  # std of the embeddings' initial values; 0 = PyTorch's default N(0, 1)
    features: bool = (
        True  # False: ids alone (user history and counts, video popularity/completion/age gated to 0)
    )

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------ step configs
def _at_least(cfg: StepConfig, low: int, *names: str) -> None:
    """ConfigError naming the first flag below `low`."""
    for name in names:
        if getattr(cfg, name) < low:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {low} (got {getattr(cfg, name)})")


DATA_KINDS = ("movielens",)


@dataclass
class RealDataFlags(StepConfig):
    """--data: a real public dataset instead of the generated feed, in its own artifact folder."""

    data: str = flag("", "a real dataset instead of the generated feed: movielens:<folder with u.data, ratings.dat or ratings.csv>")  # fmt: skip
    protocol: Literal["temporal", "random"] = flag("temporal", "the split of --data: temporal (the project's) or random (the public tables': 75/25 per user)")  # fmt: skip

    def __post_init__(self) -> None:
        if not self.data:
            return
        kind, _, path = self.data.partition(":")
        if kind not in DATA_KINDS or not path:
            raise ConfigError(f"--data must be <kind>:<path> with kind one of {', '.join(DATA_KINDS)} (got {self.data!r})")  # fmt: skip
        if not Path(path).exists():
            raise ConfigError(f"--data {self.data}: {path} does not exist")

    def variant(self) -> str:
        """data_<kind>_<hash of the resolved path>[_random] (underscores: it names a Feast project): never the
        simulator's folder."""
        if not self.data:
            return self.scale
        kind, _, path = self.data.partition(":")
        digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:8]
        return f"data_{kind}_{digest}" + ("_random" if self.protocol == "random" else "")


@dataclass
class DataConfig(RealDataFlags):
    """`mlsd recsys data`: the feed of --scale (small: 1,500 users x 6,000 videos; medium: 20,000 x 1M)."""


Engine = Literal["local", "ray"]
ENGINE_HELP = (
    "where the offline work runs: local (one process, Feast's file store) or ray (Ray Data; MLSD_RAY_*)"
)


@dataclass
class FeaturesConfig(RealDataFlags):
    """`mlsd recsys features`: snapshots -> Feast offline files -> online store (MLSD_ONLINE_STORE)."""

    engine: Engine = flag("local", ENGINE_HELP + ": the materialisation")


@dataclass
class TrainConfig(RealDataFlags):
    epochs: int = flag(4, "training epochs")
    batch_size: int = flag(1024, "global batch (the in-batch softmax's negatives)")
    lr: float = flag(3e-3, "Adam learning rate")
    max_rows: int = flag(400_000, "most recent training watches joined point-in-time from Feast")
    user_buckets: int = flag(TowerConfig.user_buckets, "hash buckets for user ids")
    video_buckets: int = flag(TowerConfig.video_buckets, "hash buckets for video ids")
    creator_buckets: int = flag(TowerConfig.creator_buckets, "hash buckets for creator ids")
    id_dim: int = flag(TowerConfig.id_dim, "size of the id embeddings")
    hidden: int = flag(TowerConfig.hidden, "hidden units of each tower's MLP")
    out_dim: int = flag(TowerConfig.out_dim, "size of the shared user/video space (the index's dimension)")
    temperature: float = flag(TowerConfig.temperature, "softmax temperature on the cosine scores")
    logq: float = flag(TowerConfig.logq, "strength of the logQ correction (1: unbiased, 0: none)")
    uniform_negatives: int = flag(0, "videos drawn uniformly per batch beside the in-batch negatives (0: in-batch only)")  # fmt: skip
    init_std: float = flag(0.0, "std of the embeddings' initial values (0: PyTorch's N(0, 1))")
    features: bool = flag(True, "feed the towers the Feast features beside the ids: user history and counts, video popularity, completion and age (--no-features: ids, topic and creator alone)")  # fmt: skip
    min_completion: float = flag(
        0.0, "train only on watches completed at least this much (MovieLens: rating / 5)"
    )
    tuned: bool = flag(True, "with --data: use the settings `mlsd recsys tune` chose on validation (tuned.json) over these flags")  # fmt: skip
    engine: Engine = flag("local", ENGINE_HELP + ": the point-in-time training join")

    def __post_init__(self) -> None:
        RealDataFlags.__post_init__(self)
        _at_least(self, 1, "epochs", "batch_size", "max_rows", "id_dim", "hidden", "out_dim")
        _at_least(self, 0, "uniform_negatives")
        _at_least(self, 2, "user_buckets", "video_buckets", "creator_buckets")  # bucket 0 is padding
        for name in ("lr", "temperature"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be positive (got {getattr(self, name)})")
        if not 0 <= self.logq <= 1:
            raise ConfigError(f"--logq must be in [0, 1] (got {self.logq})")
        if self.init_std < 0 or not 0 <= self.min_completion <= 1:
            raise ConfigError("--init-std must be >= 0 and --min-completion in [0, 1]")

    def tower(self) -> TowerConfig:
        return TowerConfig(
            user_buckets=self.user_buckets,
            video_buckets=self.video_buckets,
            creator_buckets=self.creator_buckets,
            id_dim=self.id_dim,
            hidden=self.hidden,
            out_dim=self.out_dim,
            temperature=self.temperature,
            logq=self.logq,
            uniform_negatives=self.uniform_negatives,
            init_std=self.init_std,
            features=self.features,
        )


@dataclass
class EvalConfig(RealDataFlags):
    eval_users: int = flag(1000, "test users (with a new video in the future split) to evaluate on")

    def __post_init__(self) -> None:
        RealDataFlags.__post_init__(self)
        _at_least(self, 1, "eval_users")


@dataclass
class TuneConfig(TrainConfig):
    """`mlsd recsys tune --data ...`: the validation table and the settings `train --data` then uses."""

    max_epochs: int = flag(30, "epochs each candidate trains, scored on validation after each")
    seeds: int = flag(3, "seeds for the chosen setting (validation) and for --final (test)")
    eval_users: int = flag(1000, "users scored on validation (and on test with --final)")
    final: bool = flag(False, "after tuning, train the chosen setting on the whole training split and read the test split, once")  # fmt: skip

    def __post_init__(self) -> None:
        TrainConfig.__post_init__(self)
        _at_least(self, 1, "max_epochs", "seeds", "eval_users")
        if not self.data:
            raise ConfigError(
                "tune chooses training settings for a real dataset: pass --data movielens:<folder>"
            )


# the index step's candidate families (index.py says what each is)
INDEX_FAMILIES = ("ivf_flat", "ivf_pqfs_refine", "hnsw")


@dataclass
class IndexConfig(EvalConfig):
    """The sweep's queries are the evaluation's users (their vectors as of the split), hence --eval-users."""

    nlist: tuple[int, ...] = flag((), "IVF list counts to sweep (default: 64 and 256 under 100,000 videos, else 2048 and 4096)")  # fmt: skip
    families: tuple[str, ...] = flag((), "index families to sweep: ivf_flat, ivf_pqfs_refine (IVF + 4-bit fast-scan PQ, shortlist re-scored), hnsw (default: ivf_flat under 100,000 videos, all three at 100,000 or more)")  # fmt: skip
    engine: Engine = flag(
        "local", ENGINE_HELP + ": the catalog embedding (ray: the exported ONNX video tower)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.nlist = tuple(self.nlist)
        if any(n < 1 for n in self.nlist):
            raise ConfigError(f"--nlist must be at least 1 (got {list(self.nlist)})")
        self.families = tuple(self.families)
        if bad := [f for f in self.families if f not in INDEX_FAMILIES]:
            raise ConfigError(f"--families: unknown {bad}; supported: {', '.join(INDEX_FAMILIES)}")


@dataclass
class RankConfig(RealDataFlags):
    rank_users: int = flag(3000, "users active in the last training days whose candidates train the ranker")
    rank_epochs: int = flag(300, "full-batch Adam steps of the ranker")

    def __post_init__(self) -> None:
        _at_least(self, 1, "rank_users", "rank_epochs")


@dataclass
class CrossConfig(RealDataFlags):
    rerank_users: int = flag(300, "test users for the re-ranking comparison")
    full_users: int = flag(5, "users whose whole catalog the cross model scores (slow by design)")
    cross_steps: int = flag(400, "training steps of the cross model")

    def __post_init__(self) -> None:
        RealDataFlags.__post_init__(self)
        _at_least(self, 1, "rerank_users", "full_users", "cross_steps")


SWEEP_FAMILIES = ("ivf_flat", "ivf_sq8", "ivf_pq", "ivf_pq_refine", "hnsw")


@dataclass
class SweepConfig(StepConfig):
    """`mlsd recsys sweep`: the catalog curve at --scale (or --scales), written to benchmarks/results/recsys/sweep."""

    scales: tuple[str, ...] = flag((), "scales to sweep in one run (default: --scale)")
    queries: int = flag(500, "queries with exact ground truth (brute force over the catalog each)")
    single_queries: int = flag(200, "queries timed one at a time (batch-1 p50/p99)")
    hnsw_max_videos: int = flag(
        1_000_000, "build HNSW only up to this many videos (its build is the slow one)"
    )
    families: tuple[str, ...] = flag(SWEEP_FAMILIES, "index families to sweep")
    videos: int = flag(0, "override the scale's catalog size (0: the scale's; for quick runs)")
    out: str = flag("", "report folder (default: benchmarks/results/recsys/sweep); scales not swept are kept")
    max_nlist: int = flag(8192, "cap on IVF lists (default ~4 sqrt(n)): bounds k-means and the assignment")
    nprobes: tuple[int, ...] = flag((), "nprobe grid (default 1, 2, 4, ..., 256 up to nlist)")
    note: str = flag("", "what else ran on the machine, written beside this run's scales in the report")

    def __post_init__(self) -> None:
        self.scales, self.families = tuple(self.scales), tuple(self.families)
        self.nprobes = tuple(self.nprobes)
        _at_least(self, 10, "queries")
        _at_least(self, 1, "single_queries", "max_nlist")
        if any(p < 1 for p in self.nprobes):
            raise ConfigError(f"--nprobes must be at least 1 (got {list(self.nprobes)})")
        if bad := [s for s in self.scales if s not in SCALES]:
            raise ConfigError(f"--scales: unknown {bad}; supported: {', '.join(SCALES)}")
        if bad := [f for f in self.families if f not in SWEEP_FAMILIES]:
            raise ConfigError(f"--families: unknown {bad}; supported: {', '.join(SWEEP_FAMILIES)}")


@dataclass
class CapacityConfig(StepConfig):
    """The plan's stated assumptions (flags); the per-core rate, bytes/user and index curves are read from reports."""

    users: float = flag(100e6, "users")
    daily_active_share: float = flag(0.3, "share of users active on a day")
    feed_requests_per_dau: float = flag(20.0, "feed requests per active user per day")
    peak_to_mean: float = flag(3.0, "peak QPS over mean QPS")
    videos: float = flag(50e6, "videos in the catalog")
    dim: int = flag(64, "embedding dimension")
    index_type: str = flag("ivf_sq8", "index family: ivf_flat, ivf_sq8, ivf_pq, ivf_pq_refine or hnsw")
    p99_budget_ms: float = flag(50.0, "/recommend p99 budget")
    ann_budget_share: float = flag(0.3, "share of the p99 budget the ANN search may use")
    machine_ram_gb: float = flag(64.0, "RAM of one serving / store machine")
    index_ram_share: float = flag(0.5, "share of a machine's RAM the index may take")

    def __post_init__(self) -> None:
        if not 0 < self.daily_active_share <= 1:
            raise ConfigError(f"--daily-active-share must be in (0, 1] (got {self.daily_active_share})")
        if self.index_type not in SWEEP_FAMILIES:
            raise ConfigError(
                f"--index-type: unknown '{self.index_type}'; supported: {', '.join(SWEEP_FAMILIES)}"
            )
        for name in ("ann_budget_share", "index_ram_share"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in (0, 1] (got {getattr(self, name)})")


@dataclass
class BuildConfig(TrainConfig, IndexConfig, RankConfig, CrossConfig):
    """The flags of every build step: `all`, `serve` and `bench` hand them to the steps they run first."""

    def __post_init__(self) -> None:
        TrainConfig.__post_init__(self)
        IndexConfig.__post_init__(self)
        RankConfig.__post_init__(self)
        CrossConfig.__post_init__(self)


@dataclass
class ServeConfig(ServeFlags, BuildConfig):
    """/recommend on this scale's model, index and features."""


@dataclass
class BenchConfig(BuildConfig, BenchFlags):
    scale: Literal["small", "medium", "large", "xlarge"] = flag("medium", "data scale (bench default: medium, the scale DESIGN.md reports)")  # fmt: skip
    duration: int | None = flag(None, "seconds of each counted run (default: 60)")
    rate: float | None = flag(None, "requests/s on /recommend (default: 200)")

    def __post_init__(self) -> None:
        BuildConfig.__post_init__(self)
        BenchFlags.__post_init__(self)
