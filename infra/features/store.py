"""Feast helpers shared by every system: one code path for the SQLite, Redis and Redis Cluster online stores.

repo = FeatureRepo("recsys", repo_dir)           # writes feature_store.yaml for MLSD_ONLINE_STORE
repo.apply([user, video, user_stats_view, ...])  # register definitions
repo.materialize(start, end)                     # offline (parquet) -> online store
train_df = repo.historical(entity_df, service)   # point-in-time correct training set
rows, ms = repo.online(service, entity_rows)     # serving read, with its own latency
read = repo.online_reader(service, "user_id")    # the same read prepared once, for a server's hot path
rows = read([42])                                # == repo.online(service, [{"user_id": 42}])[0]
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import ParseResult, urlparse

os.environ.setdefault("FEAST_USAGE", "False")  # Feast telemetry off, before feast is imported

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import redis  # noqa: E402
import yaml  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

from infra.config import ServiceUnavailable, get_settings  # noqa: E402
from infra.features.online_memory import bytes_per_key  # noqa: E402
from infra.logs import strip_ansi  # noqa: E402

log = logging.getLogger("mlsd.features")


@contextlib.contextmanager
def feast_prints_logged() -> Iterator[None]:
    """Feast prints its materialization progress to stdout in colour; here it becomes log lines without it."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            yield
    finally:
        for line in strip_ansi(out.getvalue()).splitlines():
            if line.strip():
                log.info("feast: %s", line.strip())


class OnlineStoreUnavailable(ServiceUnavailable):
    """The online store could not be reached; the message says how to start it or switch stores."""


# What "the store did not answer" looks like from redis-py: refused or reset (ConnectionError), no reply within
# socket_timeout (redis's TimeoutError, which is not the builtin one), and a cluster with no reachable node or an
# uncovered slot (RedisClusterException, ClusterDownError).
STORE_DOWN_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.RedisClusterException,
    ConnectionRefusedError,
    TimeoutError,
)


def redis_connection_string(url: str) -> str:
    """redis://host:port/db -> Feast's "host:port,db=N[,password=...]" form."""
    parsed = urlparse(url if "://" in url else f"redis://{url}")
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL must look like redis://host:port/db, got {url!r}")
    parts = [f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 6379}"]
    db = (parsed.path or "/0").lstrip("/") or "0"
    parts.append(f"db={int(db)}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def cluster_seeds(urls: str) -> list[ParseResult]:
    """MLSD_REDIS_CLUSTER_URL ("redis://host1:port1,redis://host2:port2" or "host:port,...") parsed per seed."""
    seeds = [urlparse(u if "://" in u else f"redis://{u}") for u in (u.strip() for u in urls.split(",")) if u]
    if not seeds or any(s.scheme not in ("redis", "rediss") for s in seeds):
        raise ValueError(
            f"MLSD_REDIS_CLUSTER_URL must look like redis://host:port[,redis://host:port], got {urls!r}"
        )
    return seeds


def redis_cluster_connection_string(urls: str) -> str:
    """Seed-node URLs -> Feast's "host1:port1,host2:port2[,password=...][,ssl=true]" for redis_type: redis_cluster.

    No db: a cluster has only database 0. One reachable seed is enough; the client learns the other nodes
    and the slot map from it (CLUSTER SLOTS).
    """
    seeds = cluster_seeds(urls)
    parts = [f"{s.hostname or '127.0.0.1'}:{s.port or 6379}" for s in seeds]
    if seeds[0].password:
        parts.append(f"password={seeds[0].password}")
    if seeds[0].scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def redis_client_options(online_store: str, timeout_s: float) -> str:
    """The connection-string parameters that give Feast's client a deadline and no hidden retries.

    Feast 0.67 passes every `name=value` of the connection string (JSON-decoded) to redis-py's `Redis` or
    `RedisCluster` constructor (RedisOnlineStore._get_client), so the deadline needs no patch to Feast:
    - socket_connect_timeout, socket_timeout: without them a paused or unreachable Redis blocks a read forever.
    - retries off: redis-py 7 retries a failed command 3 times with a jittered backoff of up to 2, 4 and 8 s,
      which turns a 0.25 s timeout into seconds. `retry=null` gives a plain client no retry; a cluster client
      takes `cluster_error_retry_attempts=0`. A serving read that fails should fail within its deadline and
      let the caller degrade; a retry belongs to the caller.
    Measured with every node paused (SIGSTOP) and 0.25 s: a single Redis read fails in 0.26 s; a cluster read in
    1.0 to 1.8 s, because the pipeline waits on each master in turn and then redis-py refreshes the slot map
    from each known node, so the bound is about (2 x masters + 1) x timeout. A request deadline tighter than
    that is the caller's to enforce.
    """
    options = f"socket_connect_timeout={timeout_s},socket_timeout={timeout_s}"
    if online_store == "redis_cluster":
        return options + ",cluster_error_retry_attempts=0"
    return options + ",retry=null"


def feature_store_config(
    project: str,
    repo_dir: Path,
    online_store: str,
    redis_url: str | None = None,
    redis_cluster_url: str | None = None,
    timeout_s: float = 0.25,
) -> dict[str, Any]:
    """The feature_store.yaml contents: local provider, file offline store, SQLite, Redis or Redis Cluster."""
    if online_store == "sqlite":
        online: dict[str, Any] = {"type": "sqlite", "path": str(repo_dir / "online_store.db")}
    elif online_store == "redis":
        connection = redis_connection_string(redis_url or "")
        online = {
            "type": "redis",
            "connection_string": f"{connection},{redis_client_options(online_store, timeout_s)}",
        }
    elif online_store == "redis_cluster":
        connection = redis_cluster_connection_string(redis_cluster_url or "")
        online = {
            "type": "redis",
            "redis_type": "redis_cluster",
            "connection_string": f"{connection},{redis_client_options(online_store, timeout_s)}",
        }
    else:
        raise ValueError(f"MLSD_ONLINE_STORE must be sqlite, redis or redis_cluster, got {online_store!r}")
    return {
        "project": project,
        "provider": "local",
        "registry": str(repo_dir / "registry.db"),
        "offline_store": {"type": "file"},
        "online_store": online,
        "entity_key_serialization_version": 3,
    }


def redacted(url: str) -> str:
    """The URL(s) without a password, for messages (a 503 body or a log must not carry credentials)."""
    return re.sub(r"(://[^:@/,]*):[^@/,]*@", r"\1:***@", url)


def _unavailable(store: str, url: str | None, exc: Exception) -> OnlineStoreUnavailable:
    # redis-py quotes the failed pipeline command, binary entity key included: printable text only, and short
    what = f"{type(exc).__name__}: " + re.sub(r"[^ -~]+", "?", str(exc))[:200]
    if store == "redis":
        return OnlineStoreUnavailable(
            f"Redis at {redacted(url or '')} did not answer ({what}); start it with "
            "`redis-server --daemonize yes` or set MLSD_ONLINE_STORE=sqlite"
        )
    if store == "redis_cluster":
        return OnlineStoreUnavailable(
            f"Redis Cluster at {redacted(url or '')} did not answer ({what}); start a local one with "
            "`mlsd redis-cluster start` or set MLSD_ONLINE_STORE=sqlite"
        )
    return OnlineStoreUnavailable(
        f"the SQLite online store failed ({exc}); re-run the system's `features` step"
    )


def online_store_client(store: str, url: str, timeout_s: float) -> redis.Redis | redis.RedisCluster:
    """A client to an online store's Redis (or Redis Cluster), with the deadline Feast's client has."""
    timeouts: dict[str, Any] = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    if store == "redis":
        return redis.Redis.from_url(url, retry=None, **timeouts)
    if store == "redis_cluster":
        seeds = cluster_seeds(url)
        return redis.RedisCluster(
            startup_nodes=[
                redis.cluster.ClusterNode(s.hostname or "127.0.0.1", s.port or 6379) for s in seeds
            ],
            password=seeds[0].password,
            ssl=seeds[0].scheme == "rediss",
            retry=Retry(NoBackoff(), retries=0),
            **timeouts,
        )
    raise ValueError(f"the {store} online store has no Redis client")


def check_online_store(store: str | None = None, url: str | None = None) -> None:
    """OnlineStoreUnavailable, within the timeout and naming what to run, when the online store (default:
    MLSD_ONLINE_STORE at its URL setting) does not answer; a server's preflight and a step's before writing."""
    settings = get_settings()
    store = store or settings.online_store
    if store == "sqlite":
        return
    url = url or (settings.redis_cluster_url if store == "redis_cluster" else settings.redis_url)
    try:
        client = online_store_client(store, url, settings.redis_timeout_s)  # a cluster client reads the slot
        client.ping()  # map when it is made: that can fail already
        client.close()
    except (redis.exceptions.RedisError, *STORE_DOWN_ERRORS) as exc:
        raise _unavailable(store, url, exc) from exc


class FeatureRepo:
    """A Feast feature repo in a folder of .mlsd/, configured for the chosen online store."""

    def __init__(
        self,
        project: str,
        repo_dir: Path,
        online_store: str | None = None,
        redis_url: str | None = None,
    ) -> None:
        settings = get_settings()
        self.project = project
        self.repo_dir = Path(repo_dir)
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        self.online_store = online_store or settings.online_store
        self.timeout_s = settings.redis_timeout_s
        if self.online_store == "redis_cluster":
            self.redis_url = redis_url or settings.redis_cluster_url
        else:
            self.redis_url = redis_url or settings.redis_url
        config = feature_store_config(
            project,
            self.repo_dir,
            self.online_store,
            redis_url=self.redis_url,
            redis_cluster_url=self.redis_url,
            timeout_s=self.timeout_s,
        )
        (self.repo_dir / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        from feast import FeatureStore  # here: importing feast takes seconds, and not every step needs it

        # Importing feast turns DeprecationWarnings on ("once"); redis-py deprecates the one scalar that can turn
        # a cluster client's retries off from a connection string (redis_client_options says why it is there).
        warnings.filterwarnings(
            "ignore", message=".*'cluster_error_retry_attempts'", category=DeprecationWarning
        )
        self.store = FeatureStore(repo_path=str(self.repo_dir))

    def redis_client(self) -> redis.Redis | redis.RedisCluster:
        """A client to the online store's Redis (or Redis Cluster), with the same deadline Feast's has."""
        return online_store_client(self.online_store, self.redis_url, self.timeout_s)

    def online_bytes_per_entity(self, sample: int = 1000) -> float:
        """Mean Redis memory (bytes) of one entity key of this project: MEMORY USAGE over a sample."""
        client = self.redis_client()
        try:
            # Feast's key is the serialized entity key followed by the project name (feast's _redis_key)
            return bytes_per_key(client, f"*{self.project}", sample=sample)
        finally:
            client.close()

    def check_online_store(self) -> None:
        """Fail within the timeout with a clear message when Redis is down, before Feast starts writing."""
        check_online_store(self.online_store, self.redis_url)

    def apply(self, objects: Sequence[Any]) -> None:
        """Register entities, feature views and services (idempotent)."""
        self.check_online_store()
        try:
            self.store.apply(list(objects))
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unavailable(self.online_store, self.redis_url, exc) from exc
            raise

    def materialize(self, start: datetime, end: datetime, views: list[str] | None = None) -> None:
        """Load feature values with event time in [start, end] from the offline files into the online store."""
        self.check_online_store()
        try:
            with feast_prints_logged():
                self.store.materialize(start_date=start, end_date=end, feature_views=views)
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unavailable(self.online_store, self.redis_url, exc) from exc
            raise

    def write_online(self, view: str, frame: pd.DataFrame) -> None:
        """Write rows (one per entity key: the latest) into the online store through Feast's write path, the one
        `materialize` ends in; a job that computes its rows in partitions calls this once per partition."""
        if frame.empty:
            return
        try:
            self.store.write_to_online_store(view, frame)
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unavailable(self.online_store, self.redis_url, exc) from exc
            raise

    def record_materialized(self, view: str, start: datetime, end: datetime) -> None:
        """Record in the registry that `view` is online for [start, end], as Feast's own `materialize` does."""
        self.store.registry.apply_materialization(self.store.get_feature_view(view), self.project, start, end)

    def historical(self, entity_df: pd.DataFrame, features: Any) -> pd.DataFrame:
        """Point-in-time join: each entity row gets feature values as of its own event_timestamp.

        A left join in entity_df's order, one feature view at a time on that view's distinct (join keys,
        event_timestamp) rows. Feast's file offline store keeps one entity row per (join keys, timestamp) and
        returns the others with no features at all (two ratings by one user in the same second: 47% of
        MovieLens-100k's training rows); a view's values depend only on its keys and the time, so joining the
        distinct rows and merging back gives every row its values. Rows with no value yet come back with nulls,
        as a training set needs them. `features` is a FeatureService or a list of "view:feature" references.
        """
        keyed = entity_df.reset_index(drop=True)
        out = keyed.copy()
        for view, names in _features_by_view(features).items():
            keys = [*self.store.get_feature_view(view).join_keys, "event_timestamp"]
            distinct = keyed[keys].drop_duplicates().reset_index(drop=True)
            distinct["_mlsd_key"] = np.arange(len(distinct))
            joined = self.store.get_historical_features(
                entity_df=distinct, features=[f"{view}:{name}" for name in names]
            ).to_df()
            values = distinct.merge(joined[["_mlsd_key", *names]], on="_mlsd_key", how="left")
            out = out.merge(values.drop(columns="_mlsd_key"), on=keys, how="left", validate="many_to_one")
        return out

    def online(self, features: Any, entity_rows: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], float]:
        """Read the latest values from the online store; returns (columns, milliseconds)."""
        t0 = time.perf_counter()
        try:
            result = self.store.get_online_features(features=features, entity_rows=entity_rows).to_dict()
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unavailable(self.online_store, self.redis_url, exc) from exc
            raise
        return result, (time.perf_counter() - t0) * 1000.0

    def online_reader(self, service: Any, join_key: str) -> OnlineReader:
        """`online(service, rows)` for int64 entity keys, with what does not change between reads done once."""
        return OnlineReader(self, service, join_key)

    def feature_service(self, name: str) -> Any:
        return self.store.get_feature_service(name)


# Value fields a read returns as they are; any other kind (lists, maps, timestamps) goes through Feast's converter
_SCALAR_VALUES = frozenset(
    {"int32_val", "int64_val", "float_val", "double_val", "string_val", "bool_val", "bytes_val"}
)


class OnlineReader:
    """The serving read of one feature service on int64 entity keys, prepared once: the rows Feast wrote to its
    online store, read on keys serialized by Feast's own code, with what never changes between reads done once.

    `get_online_features` does per call what a server need not: it resolves the service's views in the registry,
    validates and type-converts the entity rows, de-duplicates them, builds a response protobuf, then a dict from
    it; the SQLite store also converts every row's timestamp. That made it recsys /recommend's biggest stage
    (p50 3.0 ms on a slow machine). Here the views, the SQL or the Redis hash fields, and the store's own client
    are prepared once; a read serializes the keys (`serialize_entity_key`), fetches the value bytes in one query
    (SQLite) or one HMGET per key (Redis, Redis Cluster) and parses them as Feast does (ValueProto; scalars as
    they are, other kinds through `feast_value_type_to_python_type`). Feast stays the registry and the write path
    (apply, materialize): only the read is ours, ~25 lines that follow Feast's online stores (sqlite.py and
    redis.py `online_read`). Guarded by a test that both reads return the same columns for the same keys, known
    and unknown, on SQLite and Redis (tests/recsys_two_tower/test_recsys_feature_read.py); each way timed by
    `python -m benchmarks.recsys.feature_read`.
    """

    def __init__(self, repo: FeatureRepo, service: Any, join_key: str) -> None:
        # here, not at the top: importing feast takes seconds (FeatureRepo imports it for the same reason)
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id, compute_versioned_name
        from feast.infra.online_stores.redis import _mmh3
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        self.repo, self.join_key = repo, join_key
        self._entity_key, self._value, self._to_python = EntityKey, Value, feast_value_type_to_python_type
        self._serialize = serialize_entity_key
        config = repo.store.config
        self._key_version = config.entity_key_serialization_version
        versioned = config.registry.enable_online_feature_view_versioning
        views = [(repo.store.get_feature_view(p.name), [f.name for f in p.features])
                 for p in service.feature_view_projections]  # fmt: skip
        # FeatureStore has no public handle on its online store; the provider's is the one get_online_features uses
        # (its connection or client is made on the first read and kept by the store, as for Feast's own reads)
        self._store: Any = repo.store._get_provider().online_store  # SqliteOnlineStore or RedisOnlineStore
        self._config = config
        self._sqlite = config.online_store.type == "sqlite"
        if self._sqlite:
            tables = [compute_table_id(config.project, view, versioned) for view, _ in views]
            self._views: list[tuple[list[str], Any]] = [
                (names, f'SELECT entity_key, feature_name, value FROM "{table}" WHERE entity_key IN ')
                for table, (_, names) in zip(tables, views, strict=True)
            ]  # (feature names, the SQL query on SQLite or the hash fields on Redis)
        else:  # Redis or Redis Cluster: one hash per entity, key = serialized entity key + project
            self._project = config.project.encode()
            self._views = [(names, [_mmh3(f"{compute_versioned_name(view, versioned)}:{n}") for n in names])
                           for view, names in views]  # fmt: skip

    def __call__(self, entity_ids: Sequence[int]) -> dict[str, list[Any]]:
        """{join key: ids, feature: values} for these ids; None where the store has no value (as Feast's read)."""
        protos = [self._entity_key(join_keys=[self.join_key], entity_values=[self._value(int64_val=int(e))])
                  for e in entity_ids]  # fmt: skip
        keys = [self._serialize(p, entity_key_serialization_version=self._key_version) for p in protos]
        out: dict[str, list[Any]] = {self.join_key: [int(e) for e in entity_ids]}
        try:
            for names, query in self._views:
                raw = (
                    self._sqlite_values(keys, names, query)
                    if self._sqlite
                    else self._redis_values(keys, query)
                )
                for j, name in enumerate(names):
                    out[name] = [self._decode(row[j]) for row in raw]
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unavailable(self.repo.online_store, self.repo.redis_url, exc) from exc
            raise
        return out

    def _sqlite_values(self, keys: list[bytes], names: list[str], query: str) -> list[list[bytes | None]]:
        """Each key's value bytes in `names` order: one query for all keys (Feast's table: key, name, value)."""
        rows = (
            self._store._get_conn(self._config)
            .execute(query + f"({','.join('?' * len(keys))})", keys)
            .fetchall()
        )
        by_key: dict[bytes, dict[str, bytes]] = {}
        for key, name, value in rows:
            by_key.setdefault(key, {})[name] = value
        return [[by_key.get(k, {}).get(n) for n in names] for k in keys]

    def _redis_values(self, keys: list[bytes], fields: list[bytes]) -> list[list[bytes | None]]:
        """Each key's value bytes in the prepared fields' order: HMGET on the entity's hash."""
        client = self._store._get_client(self._config.online_store)  # Feast's, with its timeouts
        return [client.hmget(k + self._project, fields) for k in keys]

    def _decode(self, raw: bytes | None) -> Any:
        """A stored ValueProto's Python value, as get_online_features gives it (None: no value)."""
        if not raw:
            return None
        value = self._value()
        value.ParseFromString(raw)
        kind = value.WhichOneof("val")
        if kind in _SCALAR_VALUES:
            return getattr(value, kind)
        return self._to_python(value)


def _features_by_view(features: Any) -> dict[str, list[str]]:
    """{view name: feature names} of a FeatureService or of a list of "view:feature" references, in order."""
    by_view: dict[str, list[str]] = {}
    if isinstance(features, (list, tuple)):
        for ref in features:
            view, _, name = ref.partition(":")
            by_view.setdefault(view, []).append(name)
        return by_view
    for projection in features.feature_view_projections:
        by_view.setdefault(projection.name_to_use(), []).extend(f.name for f in projection.features)
    return by_view


def _is_connection_error(exc: BaseException) -> bool:
    """Did the online store fail to answer (refused, timed out, cluster down), anywhere in the cause chain?"""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, STORE_DOWN_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
