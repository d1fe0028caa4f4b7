"""The features step out of core: the feed cut into partitions on disk, each partition's snapshots computed by the
very functions of the in-memory path (compute.py), streamed into the Feast offline files and the online store.

    events.parquet --(one streaming pass)--> _parts/user/part-<p>.parquet  (user hash)  -> user_stats, online rows
                                         +-> _parts/video/part-<p>.parquet (video hash) -> video_popularity
    videos.parquet --(streamed in batches)--> video_content

Every user snapshot depends on that user's events alone and every popularity row on that video's alone, so a
partition by user hash (by video hash) holds everything its rows need and the union of the partitions' rows is
the in-memory result (test_recsys_features.py::test_partitioned_features_equal_the_in_memory_ones guards it).
What stays in memory is one partition (`ROWS_PER_PARTITION` events, whatever the feed's size) and catalog-sized
lookups (a video's cluster and upload time: 18 B a video, 0.18 GB at 10M videos). Memory and the events' share
of the time measured per scale: benchmarks/recsys/offline_scale.py.

Plain pyarrow + pandas, not Ray Data: each partition is one vectorised pandas job of seconds and there is nothing
to overlap it with on one CPU, so Ray's worker start and object-store copies are pure overhead here (measured in
DESIGN.md's scale section). On a cluster the partitions are the unit Ray Data would hand out.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from systems.recsys_two_tower.data import DAY
from systems.recsys_two_tower.features import compute

# Events per partition: the in-memory snapshot job costs ~1.3 KB per event (13.5 GB at 10.4M), so ~0.65 GB here.
ROWS_PER_PARTITION = 500_000
BATCH_ROWS = 1 << 20  # rows per streamed read of a parquet file
TS = "event_timestamp"


def key_partition(keys: np.ndarray, n: int) -> np.ndarray:
    """A stable hash partition of int64 entity keys (Fibonacci hashing; Python's hash() differs per process)."""
    mixed = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # wraps mod 2^64, as intended
    return ((mixed >> np.uint64(32)) % np.uint64(n)).astype(np.int64)


def n_partitions(n_events: int, rows_per_partition: int = ROWS_PER_PARTITION) -> int:
    return max(1, math.ceil(n_events / rows_per_partition))


def stream(path: Path, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """A parquet file in batches of BATCH_ROWS rows, never the whole file."""
    yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns)


def partition_events(events: Path, out: Path, n: int) -> None:
    """One pass over events.parquet: every batch split by user hash into out/user/part-<p>.parquet and by video
    hash into out/video/part-<p>.parquet. A partition keeps the file's row order (the in-memory path's order)."""
    writers: dict[tuple[str, int], pq.ParquetWriter] = {}
    try:
        for batch in stream(events):
            table = pa.Table.from_batches([batch])
            for key in ("user", "video"):
                part = key_partition(batch.column(f"{key}_id").to_numpy(), n)
                order = np.argsort(part, kind="stable")
                bounds = np.searchsorted(part[order], np.arange(n + 1))
                grouped = table.take(pa.array(order))
                for p in range(n):
                    if bounds[p + 1] > bounds[p]:
                        if (key, p) not in writers:
                            (out / key).mkdir(parents=True, exist_ok=True)
                            writers[key, p] = pq.ParquetWriter(
                                out / key / f"part-{p:05d}.parquet", table.schema
                            )
                        writers[key, p].write_table(grouped.slice(bounds[p], bounds[p + 1] - bounds[p]))
    finally:
        for w in writers.values():
            w.close()


def read_part(out: Path, key: str, p: int, schema: pa.Schema) -> pd.DataFrame:
    """One partition's events (an empty frame of the events' schema when no event hashed there)."""
    path = out / key / f"part-{p:05d}.parquet"
    return pd.read_parquet(path) if path.exists() else schema.empty_table().to_pandas()


class OfflineWriter:
    """One Feast offline file written a partition at a time (a row group each), with the first partition's schema."""

    def __init__(self, path: Path) -> None:
        self.path, self.writer, self.rows = path, None, 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.writer is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self.writer = writer = pq.ParquetWriter(self.path, table.schema)
        else:
            writer = self.writer
            table = pa.Table.from_pandas(frame, schema=writer.schema, preserve_index=False)
        writer.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass(frozen=True)
class OfflineCounts:
    user_snapshots: int
    videos: int
    popularity_rows: int
    partitions: int
    users_to_materialise: int


def latest_in_window(
    snapshots: pd.DataFrame, key: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """What Feast's `materialize(start, end)` writes: per key, the newest row with event time in [start, end]."""
    inside = snapshots[(snapshots[TS] >= start) & (snapshots[TS] <= end)]
    return inside.sort_values(TS, kind="stable").drop_duplicates(key, keep="last")


def build_offline(
    root: Path, offline: Path, window: tuple[pd.Timestamp, pd.Timestamp], latest: Path,
    rows_per_partition: int = ROWS_PER_PARTITION, progress: Callable[[str], None] = lambda _: None,
) -> OfflineCounts:  # fmt: skip
    """The three offline files of the recsys repo from the feed under `root`, a partition at a time, and `latest`:
    each user's newest snapshot in `window`, the rows the materialisation writes online (`materialise`)."""
    events = root / "events.parquet"
    n = n_partitions(pq.ParquetFile(events).metadata.num_rows, rows_per_partition)
    parts = offline / "_parts"
    shutil.rmtree(parts, ignore_errors=True)
    progress(f"partitioning the events by user and by video hash ({n} partitions)")
    partition_events(events, parts, n)
    schema = pq.read_schema(events)

    # catalog- and user-sized lookups: a video's cluster and upload time, a user's signup (not the events)
    catalog = pd.read_parquet(root / "videos.parquet", columns=["video_id", "cluster", "upload_ts"])
    users = pd.read_parquet(root / "users.parquet", columns=["user_id", "signup_ts"])
    user_part = key_partition(users["user_id"].to_numpy(), n)
    video_part = key_partition(catalog["video_id"].to_numpy(), n)

    user_stats, online = OfflineWriter(offline / "user_stats.parquet"), OfflineWriter(latest)
    try:
        for p in range(n):
            progress(f"user snapshots, partition {p + 1}/{n}")
            snaps = compute.user_snapshots(
                read_part(parts, "user", p, schema), catalog, users[user_part == p]
            )
            user_stats.write(snaps)
            online.write(latest_in_window(snaps, "user_id", *window))
            del snaps
    finally:
        user_stats.close()
        online.close()

    popularity = OfflineWriter(offline / "video_popularity.parquet")
    try:
        for p in range(n):
            progress(f"video popularity, partition {p + 1}/{n}")
            popularity.write(
                compute.video_popularity(read_part(parts, "video", p, schema), catalog[video_part == p])
            )
    finally:
        popularity.close()
    del catalog

    content = OfflineWriter(offline / "video_content.parquet")
    try:
        for batch in stream(root / "videos.parquet"):
            content.write(compute.video_content(batch.to_pandas()))
    finally:
        content.close()
    shutil.rmtree(parts)
    return OfflineCounts(user_stats.rows, content.rows, popularity.rows, n, online.rows)


def materialise(latest: Path, write_online: Callable[[pd.DataFrame], None], batch_rows: int = 20_000) -> int:
    """Stream the newest-snapshot rows into the online store, `batch_rows` keys per write (Feast turns each value
    into a proto: a whole file at once would cost gigabytes). Returns the keys written."""
    written = 0
    for batch in pq.ParquetFile(latest).iter_batches(batch_size=batch_rows):
        frame = batch.to_pandas()
        write_online(frame)
        written += len(frame)
    return written


def video_watch_counts(root: Path, n_videos: int, since_ts: int, before_ts: int) -> np.ndarray:
    """(n_videos,) watches per video with since_ts <= ts < before_ts, counted over the streamed events."""
    counts = np.zeros(n_videos, np.int64)
    for batch in stream(root / "events.parquet", columns=["video_id", "ts"]):
        ts, vid = batch.column("ts").to_numpy(), batch.column("video_id").to_numpy()
        counts += np.bincount(vid[(ts >= since_ts) & (ts < before_ts)], minlength=n_videos)
    return counts


def recent_window(now_ts: int) -> tuple[int, int]:
    """The trending window: the 7 days before now_ts."""
    return now_ts - 7 * DAY, now_ts
