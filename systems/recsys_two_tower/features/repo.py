"""The `features` step: write the offline parquet snapshots, register them in Feast, fill the online store.

`open_features` is the one way a later stage gets the Feast handle: the repo plus the three services it reads.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from feast import FeatureService

from infra.artifacts import atomic_write
from infra.features import FeatureRepo
from infra.steps import StepError
from systems.recsys_two_tower.data import DAY, START_TS, Feed
from systems.recsys_two_tower.features import compute, definitions, partitioned

OFFLINE_DIR, REPO_DIR = "offline", "feature_repo"  # under the scale's artifact folder
TRENDING_K = 500  # the cold-start list's length


@dataclass(frozen=True)
class RecsysFeatures:
    """The recsys Feast repo of one scale and the services its stages read."""

    repo: FeatureRepo
    user_serving: FeatureService  # user_stats: what /recommend reads online
    training: FeatureService  # user_stats + video_content + video_popularity, joined point-in-time
    catalog: FeatureService  # video_content + video_popularity: what the catalog is embedded from


MATERIALIZED = f"{REPO_DIR}/materialized.json"  # which online store the features step filled


def project_name(root: Path, scale: str, new: bool = False) -> str:
    """The Feast project of an artifact folder: `recsys_<scale>_<8 hex>`, drawn once when the features step builds
    the repo and read back from its feature_store.yaml after. Two artifact folders that share one Redis (two test
    runs, two deployments) must not write each other's keys, which one name per scale would let them do."""
    path = root / REPO_DIR / "feature_store.yaml"
    if not new and path.exists():
        return yaml.safe_load(path.read_text())["project"]
    return f"recsys_{scale}_{uuid.uuid4().hex[:8]}"


def open_features(root: Path, scale: str, online_store: str | None = None) -> RecsysFeatures:
    """The Feast repo under an artifact folder (SQLite or Redis online store per MLSD_ONLINE_STORE)."""
    defs = definitions.build(root / OFFLINE_DIR)
    repo = FeatureRepo(project_name(root, scale), root / REPO_DIR, online_store=online_store)
    return RecsysFeatures(repo, defs.user_serving, defs.training, defs.catalog)


def build_features(
    feed: Feed, root: Path, scale: str, online_store: str | None = None, engine: str = "local"
) -> dict[str, int]:
    """In memory: compute snapshots from all events of `feed`, apply definitions, materialize user_stats online: by
    Feast in this process (engine "local") or by Ray Data workers pushing rows through Feast's write path (engine
    "ray"). The reference the partitioned path (`build_features_partitioned`, what the step runs) is tested against;
    tune's validation feeds and the tests that build a feed in memory use it."""
    offline = root / OFFLINE_DIR
    offline.mkdir(parents=True, exist_ok=True)
    users = compute.user_snapshots(feed.events, feed.videos, feed.users)
    videos = compute.video_content(feed.videos)
    popularity = compute.video_popularity(feed.events, feed.videos)
    users.to_parquet(offline / "user_stats.parquet")
    videos.to_parquet(offline / "video_content.parquet")
    popularity.to_parquet(offline / "video_popularity.parquet")
    trending = trending_videos(feed.events, START_TS + feed.config.days * DAY, TRENDING_K)
    np.save(root / "trending.npy", trending)

    repo = FeatureRepo(project_name(root, scale, new=True), root / REPO_DIR, online_store=online_store)
    repo.apply(definitions.build(offline).all())
    start, end = materialisation_window(feed.config.days)
    counts = {"user_snapshots": len(users), "videos": len(videos), "popularity_rows": len(popularity)}
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, got {engine!r}")
    if engine == "local":
        repo.materialize(start, end, views=["user_stats"])
        write_materialized(root, repo.online_store)
        return counts
    return {**counts, "users_materialized (ray)": _materialize_on_ray(repo, root, start, end)}


def build_features_partitioned(
    root: Path, scale: str, online_store: str | None = None, engine: str = "local",
    rows_per_partition: int = partitioned.ROWS_PER_PARTITION, progress: Callable[[str], None] = lambda _: None,
) -> dict[str, float]:  # fmt: skip
    """The features step out of core, from the feed files under `root` (never the whole feed in memory): the same
    offline files, trending list and online rows as `build_features`, a partition at a time (partitioned.py)."""
    config = json.loads((root / "config.json").read_text())
    offline = root / OFFLINE_DIR
    offline.mkdir(parents=True, exist_ok=True)
    start, end = materialisation_window(config["days"])
    latest = offline / "_user_stats_latest.parquet"  # each user's newest snapshot: what goes online
    counts = partitioned.build_offline(
        root, offline, (pd.Timestamp(start), pd.Timestamp(end)), latest, rows_per_partition, progress
    )
    now = START_TS + config["days"] * DAY
    watches = partitioned.video_watch_counts(root, config["n_videos"], now - compute.TRENDING_DAYS * DAY, now)
    np.save(root / "trending.npy", compute.trending_from_counts(watches, TRENDING_K))

    repo = FeatureRepo(project_name(root, scale, new=True), root / REPO_DIR, online_store=online_store)
    repo.apply(definitions.build(offline).all())
    out: dict[str, float] = {"user_snapshots": counts.user_snapshots, "videos": counts.videos,
           "popularity_rows": counts.popularity_rows, "partitions": counts.partitions}  # fmt: skip
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, got {engine!r}")
    if engine == "local":
        progress(f"materialising {counts.users_to_materialise:,} users")
        repo.check_online_store()
        t0 = time.perf_counter()
        out["users_materialized"] = partitioned.materialise(
            latest, lambda f: repo.write_online("user_stats", f)
        )
        out["materialise s"] = round(time.perf_counter() - t0, 1)
        repo.record_materialized("user_stats", start, end)
        write_materialized(root, repo.online_store)
    else:
        out["users_materialized (ray)"] = _materialize_on_ray(repo, root, start, end)
    latest.unlink()
    return out


def materialisation_window(days: int) -> tuple[datetime, datetime]:
    """What the features step materialises: event times from the day before the feed to its end."""
    return datetime.fromtimestamp(START_TS - DAY, UTC), datetime.fromtimestamp(START_TS + days * DAY, UTC)


def _materialize_on_ray(repo: FeatureRepo, root: Path, start: datetime, end: datetime) -> int:
    # here, not at the top: Ray takes seconds to import, and only --engine ray needs it
    from systems.recsys_two_tower import offline_ray

    repo.check_online_store()
    with offline_ray.ray_engine() as runtime:
        written = offline_ray.materialize(repo.store, repo.repo_dir, "user_stats", start, end, runtime)
    write_materialized(root, repo.online_store)
    return written


class OnlineStoreMismatch(StepError):
    """The online store asked for is not the one the features step materialised into; the message says what to run."""


def write_materialized(root: Path, online_store: str) -> None:
    """Record which online store the features step filled (feature_store.yaml is rewritten for the current
    MLSD_ONLINE_STORE each time the repo is opened, so it cannot say)."""
    with atomic_write(root / MATERIALIZED, "w") as f:
        f.write(json.dumps({"online_store": online_store}))


def check_materialized(root: Path, online_store: str, flags: str) -> None:
    """OnlineStoreMismatch when the features of this artifact folder went into another online store: the empty
    store would answer every user as unknown (the trending list, no error anywhere). `flags` are the folder's
    `mlsd recsys features` flags, for the command the message gives. A folder from before this record passes."""
    path = root / MATERIALIZED
    if not path.exists():
        return
    filled = json.loads(path.read_text())["online_store"]
    if filled != online_store:
        raise OnlineStoreMismatch(
            f"the user features of {root.name} were materialised into the {filled} online store, but "
            f"MLSD_ONLINE_STORE={online_store}: fill it with `MLSD_ONLINE_STORE={online_store} mlsd recsys features "
            f"{flags}`, or set MLSD_ONLINE_STORE={filled}"
        )


def trending_videos(events: pd.DataFrame, now_ts: int, k: int) -> np.ndarray:
    """Most-watched videos of the last 7 days before now_ts: the cold-start answer."""
    recent = events[(events["ts"] < now_ts) & (events["ts"] >= now_ts - compute.TRENDING_DAYS * DAY)]
    return compute.trending_from_counts(np.bincount(recent["video_id"].to_numpy()), k)
