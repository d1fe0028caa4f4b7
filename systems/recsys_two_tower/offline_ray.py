"""The offline pipeline on Ray Data (`--engine ray`): the point-in-time training join, the materialisation of
user features into the online store, and the catalog embedding with the ONNX video tower.

Feast stays what it is good at: the registry (which views a service reads, where their files are, their keys
and TTLs), the definitions, and the online store (rows are pushed through Feast's own write path,
`FeatureStore.write_to_online_store`). Ray Data does the work Feast's file offline store does in one process:

    point-in-time join   entity rows and feature rows hash-partitioned by entity key; each partition joined
                         as-of (the latest feature row with event_timestamp <= the entity row's, within TTL)
    materialise          feature rows hash-partitioned by entity key; each partition keeps its latest row per
                         key in [start, end] and writes it to the online store from the worker
    catalog embedding    map_batches over the catalog frame with one ONNX video-tower session per actor

Why not Feast's own Ray offline store and compute engine (contrib): measured on this machine with Feast 0.67
and Ray 2.60, its join of 20,000 entity rows took 180 s and its `materialize` wrote 0 rows (issue 11). A
partition here is a pandas `merge_asof`, so the join is the file store's rule in vectorised form; the test
`tests/recsys_two_tower/test_recsys_offline_ray.py` holds both engines to the same rows, online features and
embeddings.

Local or cluster: `infra.ray_runtime.init_ray()` starts a bounded local Ray (MLSD_RAY_CPUS, default 1) or
connects to MLSD_RAY_ADDRESS; nothing below depends on which. On a cluster the driver-side partitioning below
becomes the bottleneck first (it reads the view's parquet once on the driver); the next step there is
`ray.data.read_parquet` + a hash shuffle, with the same per-partition functions.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from infra.ray_runtime import RayRuntime, init_ray, shutdown_ray
from infra.steps import StepError
from systems.recsys_two_tower.config import TowerConfig
from systems.recsys_two_tower.features import compute
from systems.recsys_two_tower.features.partitioned import OfflineWriter, key_partition, read_part

# Ray workers import this module to run the functions below; it stays free of torch and onnxruntime (seconds to
# import in every worker) so the join and the materialisation start fast. The embedding imports them lazily.

TS = "event_timestamp"
_ROW = "_mlsd_row"  # the entity row's position: the result comes back in entity_df's order
_PART = "_mlsd_part"


@contextmanager
def ray_engine(num_cpus: int | None = None) -> Iterator[RayRuntime]:
    """Ray for one step: started here (and stopped after) unless it already runs. Never a silent fallback: a
    Ray that does not start is a StepError saying so."""
    started = not ray.is_initialized()
    try:
        runtime = init_ray(num_cpus=num_cpus)
    except Exception as exc:  # Ray raises a zoo of types on a failed start; the user needs one line
        raise StepError(
            f"--engine ray: Ray did not start ({type(exc).__name__}: {exc}); use --engine local"
        ) from exc
    try:
        yield runtime
    finally:
        if started:
            shutdown_ray()


def partitions_for(runtime: RayRuntime) -> int:
    """Two partitions per CPU: enough for every worker to stay busy, few enough that each is a real batch."""
    return max(2, int(runtime.cpus) * 2)


def _utc_ns(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, utc=True).astype("datetime64[ns, UTC]")


# ------------------------------------------------------------------------------------------ what Feast's registry says
@dataclass(frozen=True)
class ViewSource:
    """One feature view as the registry describes it: its offline file, join key, features and TTL."""

    name: str
    path: str
    key: str
    features: list[str]
    ttl: timedelta | None  # None: no expiry (Feast's ttl=0)

    def read(self) -> pd.DataFrame:
        frame = pd.read_parquet(self.path, columns=[self.key, TS, *self.features])
        return frame.assign(**{TS: _utc_ns(frame[TS])})


def view_sources(store: Any, service: Any) -> list[ViewSource]:
    """The views a FeatureService reads, from the Feast registry (the same objects the file store joins)."""
    out = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        (key,) = view.join_keys
        ttl = view.ttl if view.ttl and view.ttl.total_seconds() > 0 else None
        names = [f.name for f in projection.features]
        out.append(ViewSource(view.name, view.batch_source.path, key, names, ttl))
    return out


# ------------------------------------------------------------------------------------------ the point-in-time join
def asof_join(
    entities: pd.DataFrame, features: pd.DataFrame, key: str, ttl: timedelta | None
) -> pd.DataFrame:
    """Each entity row gets the latest feature row of its key with event_timestamp <= its own (and newer than
    its own minus ttl): Feast's point-in-time rule. Rows with no such feature row get nulls."""
    left = entities.assign(**{TS: _utc_ns(entities[TS])}).sort_values(TS, kind="stable")
    right = (
        features.assign(_feature_ts=_utc_ns(features[TS]))
        .drop(columns=TS)
        .sort_values("_feature_ts", kind="stable")
    )
    joined = pd.merge_asof(
        left, right, left_on=TS, right_on="_feature_ts", by=key, direction="backward",
        allow_exact_matches=True, tolerance=pd.Timedelta(ttl) if ttl else None,
    )  # fmt: skip
    return joined.drop(columns="_feature_ts")


def _join_partitions(
    batch: pd.DataFrame, views: dict[int, list[Any]], specs: list[ViewSource]
) -> pd.DataFrame:
    """One Ray Data batch of entity rows (one or more partitions): join every view as-of, partition by partition."""
    out = []
    for part, entities in batch.groupby(_PART, sort=False):
        joined = entities.drop(columns=_PART)
        for spec, ref in zip(specs, views[int(part)], strict=True):
            joined = asof_join(joined, ray.get(ref), spec.key, spec.ttl)
        out.append(joined)
    return pd.concat(out, ignore_index=True)


def historical(store: Any, entity_df: pd.DataFrame, service: Any, runtime: RayRuntime) -> pd.DataFrame:
    """The point-in-time join of `service` onto entity_df on Ray Data; entity_df's order, one row per entity row.

    Views are grouped by join key; for each key the entity rows and the views' rows are hash-partitioned the same
    way, and each partition is joined where it lands.
    """
    n = partitions_for(runtime)
    entities = entity_df.reset_index(drop=True).assign(
        **{_ROW: np.arange(len(entity_df)), TS: _utc_ns(entity_df[TS])}
    )
    result = entities
    by_key: dict[str, list[ViewSource]] = {}
    for spec in view_sources(store, service):
        by_key.setdefault(spec.key, []).append(spec)
    for key, specs in by_key.items():
        keyed = entities[[_ROW, key, TS]].assign(**{_PART: key_partition(entities[key].to_numpy(), n)})
        refs: dict[int, list[Any]] = {p: [] for p in range(n)}
        for spec in specs:
            frame = spec.read()
            part = key_partition(frame[spec.key].to_numpy(), n)
            for p in range(n):
                refs[p].append(ray.put(frame[part == p].reset_index(drop=True)))
        blocks = [keyed[keyed[_PART] == p] for p in range(n)]
        ds = ray.data.from_pandas([b for b in blocks if len(b)]).map_batches(
            _join_partitions,  # type: ignore[arg-type]  # Ray's stub types fn(batch) only; fn_kwargs fill the rest
            batch_format="pandas", batch_size=None,
            fn_kwargs={"views": refs, "specs": specs},
        )  # fmt: skip
        joined = _numpy_dtypes(ds.to_pandas().drop(columns=[key, TS]))
        result = result.merge(joined, on=_ROW, how="left")
    return result.sort_values(_ROW).drop(columns=_ROW).reset_index(drop=True)


def _numpy_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Ray Data hands back Arrow-backed columns; the local path (and every consumer) uses numpy ones."""
    out = {}
    for name, col in frame.items():
        if isinstance(col.dtype, pd.ArrowDtype):
            dtype = col.dtype.numpy_dtype
            col = col.astype(dtype if not col.isna().any() else np.float64 if dtype.kind in "iu" else dtype)
        out[name] = col
    return pd.DataFrame(out, index=frame.index)


# ------------------------------------------------------------------------------------------ materialisation
class OnlineWriter:
    """A Ray Data actor: its own FeatureStore on the repo (so a worker on another machine writes directly to
    the online store), the latest row per key of each batch pushed through Feast's write path."""

    def __init__(self, repo_dir: str, view: str, key: str) -> None:
        os.environ.setdefault("FEAST_USAGE", "False")
        from feast import FeatureStore  # here: an actor builds its own store, in its own process

        self.store = FeatureStore(repo_path=repo_dir)
        self.view, self.key = view, key

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        latest = batch.sort_values(TS, kind="stable").drop_duplicates(self.key, keep="last")
        with warnings.catch_warnings():  # Feast warns on an empty partition; an empty one writes nothing
            warnings.simplefilter("ignore")
            self.store.write_to_online_store(self.view, latest.drop(columns=_PART))
        return pd.DataFrame({"written": [len(latest)]})


def materialize(
    store: Any, repo_dir: Path, view_name: str, start: datetime, end: datetime, runtime: RayRuntime
) -> int:
    """Feast's `materialize` for one view on Ray Data: rows with event time in [start, end], the latest per
    key, written to the online store by the workers. Returns the number of keys written."""
    view = store.get_feature_view(view_name)
    (key,) = view.join_keys
    spec = ViewSource(view.name, view.batch_source.path, key, [f.name for f in view.features], None)
    frame = spec.read()
    frame = frame[(frame[TS] >= pd.Timestamp(start)) & (frame[TS] <= pd.Timestamp(end))]
    n = partitions_for(runtime)
    part = key_partition(frame[key].to_numpy(), n)
    blocks = [frame[part == p].assign(**{_PART: p}) for p in range(n)]
    ds = ray.data.from_pandas([b for b in blocks if len(b)]).map_batches(
        OnlineWriter, batch_format="pandas", batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=max(1, int(runtime.cpus))),
        fn_constructor_kwargs={"repo_dir": str(repo_dir), "view": view_name, "key": key},
    )  # fmt: skip
    return int(ds.to_pandas()["written"].sum())


# ------------------------------------------------------------------------------------------ catalog embedding
class VideoTowerEmbedder:
    """A Ray Data actor holding one ONNX Runtime session of the video tower (one intra-op thread: Ray's CPUs
    are the parallelism)."""

    def __init__(self, onnx_path: str, tower: dict, seen: np.ndarray, as_of_ts: int) -> None:
        from infra.serving.onnx import make_session  # here: only the embedding actors need onnxruntime

        self.session = make_session(onnx_path, threads=1, prefer_gpu=False)
        self.cfg, self.seen, self.as_of_ts = TowerConfig(**tower), seen, as_of_ts

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        return {
            "video_id": batch["video_id"].to_numpy(np.int64),
            "embedding": embed_onnx(self.session, batch, self.cfg, self.seen, self.as_of_ts),
        }


def embed_onnx(
    session: Any, frame: pd.DataFrame, cfg: TowerConfig, seen: np.ndarray, as_of_ts: int
) -> np.ndarray:
    """(len(frame), D) video-tower vectors from one ONNX session: the single-process path and each actor's."""
    from systems.recsys_two_tower.features.transform import video_inputs  # here: it imports torch (see top)

    bucket, topic, creator, dense = video_inputs(frame, cfg, seen, as_of_ts)
    feed = {"video_bucket": bucket, "topic": topic, "creator_bucket": creator, "dense": dense}
    return session.run(None, feed)[0]


def embed_catalog(
    onnx_path: Path, frame: pd.DataFrame, cfg: TowerConfig, seen: np.ndarray, as_of_ts: int,
    runtime: RayRuntime, batch_size: int = 16_384,
) -> np.ndarray:  # fmt: skip
    """(n_videos, D) unit vectors, row i = video i, by map_batches over the catalog frame (batch inference).

    The frame goes in as ready-made blocks, not through `repartition`: an all-to-all repartition needs a CPU for
    its tasks while the actor pool holds every CPU of a 1-CPU Ray, which hangs.
    """
    blocks = [frame.iloc[i : i + batch_size] for i in range(0, len(frame), batch_size)]
    ds = ray.data.from_pandas(blocks).map_batches(
        VideoTowerEmbedder,
        batch_format="pandas",
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=max(1, int(runtime.cpus))),
        fn_constructor_kwargs={
            "onnx_path": str(onnx_path),
            "tower": cfg.to_dict(),
            "seen": seen,
            "as_of_ts": as_of_ts,
        },
    )
    out = np.empty((len(frame), cfg.out_dim), dtype=np.float32)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        out[batch["video_id"]] = batch["embedding"]
    return out


# ------------------------------------------------------------------------------------------ user snapshots
class SnapshotPartition:
    """A Ray Data actor: a user partition's file in, its user snapshots out (compute.user_snapshots, the function
    the single-process loop of features/partitioned.py runs). It reads its file itself, so a partition is never
    split across batches the way a block of a read_parquet dataset can be."""

    def __init__(self, root: str, parts: str, n: int) -> None:
        self.parts, self.n = Path(parts), n
        self.catalog = pd.read_parquet(Path(root) / "videos.parquet", columns=["video_id", "cluster"])
        self.users = pd.read_parquet(Path(root) / "users.parquet", columns=["user_id", "signup_ts"])
        self.user_part = key_partition(self.users["user_id"].to_numpy(), n)
        self.schema = pq.read_schema(Path(root) / "events.parquet")

    def __call__(self, batch: dict[str, np.ndarray]) -> pd.DataFrame:
        out = []
        for p in batch["part"]:
            events = read_part(self.parts, "user", int(p), self.schema)
            out.append(compute.user_snapshots(events, self.catalog, self.users[self.user_part == p]))
        return pd.concat(out, ignore_index=True)


def user_snapshots(root: Path, parts: Path, n: int, out: Path, runtime: RayRuntime) -> int:
    """The user_stats offline file from the user partitions under `parts` on Ray Data (one partition per task,
    an actor per CPU), written by the driver a block at a time. Returns the rows written."""
    ds = ray.data.from_items([{"part": p} for p in range(n)], override_num_blocks=n).map_batches(
        SnapshotPartition, batch_size=1, compute=ray.data.ActorPoolStrategy(size=max(1, int(runtime.cpus))),
        fn_constructor_kwargs={"root": str(root), "parts": str(parts), "n": n},
    )  # fmt: skip
    writer = OfflineWriter(out)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            writer.write(
                cast(pa.Table, batch).to_pandas()
            )  # Arrow -> numpy-backed columns, timestamps with their UTC zone
    finally:
        writer.close()
    return writer.rows
