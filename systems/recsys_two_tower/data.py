"""Synthetic video feed with a known generating model, plus loaders for real MovieLens files.

Generating model (what the oracle knows and the models must learn):
- 16 topics x 8 sub-topics = 128 clusters. A video belongs to one cluster, has a power-law popularity
  `pop_v` (Zipf), a creator, a duration, an upload time, and a noisy 8-d content vector near its
  cluster's centroid (what a content encoder would see; it lets unseen videos embed: cold start).
- A user has a sparse preference pi_u over clusters (Dirichlet over 3 favourite clusters + a little
  everywhere) and a taste for video length: a favourite duration bin b_u (4 bins, DURATION_EDGES) with
  weight g_u[b] = exp(-DURATION_TASTE * |b - b_u|). A watch picks a cluster c ~ pi_u, then a video v in c
  with probability g_u[b(v)] * pop_v / Z_uc, Z_uc = sum_b g_u[b] * W[c, b] (W[c, b]: the popularity mass
  of cluster c's videos in bin b). So the true P(v | u) = pi_u[c(v)] * g_u[b(v)] * pop_v / Z_uc(v), and
  ranking by it is the oracle (exact: the sampler draws c, then b, then v from these very factors).
- The duration taste is a user x video interaction: no user feature and no video feature carries it alone
  (the user's recent watches reveal b_u, the video's duration reveals b(v)); a ranker that sees both
  (rank.py) can use it, a dot product of towers fed only ids, counts and topic mix has to learn it.
- Completion ratio rises with how much the user likes the cluster and the length; sessions are bursts.

Events have timestamps over `days` days; the split is temporal (train on the past, test on the future).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from infra.steps import ConfigError
from systems.recsys_two_tower.config import FeedConfig

N_TOPICS, N_SUB = 16, 8
N_CLUSTERS = N_TOPICS * N_SUB
CONTENT_DIM = 8
DAY = 86_400
START_TS = 1_767_225_600  # 2026-01-01T00:00:00Z: the feed's first day
DURATION_EDGES = (90, 150, 250)  # seconds: 4 length bins, about a quarter of the catalog each
N_DURATION_BINS = len(DURATION_EDGES) + 1
DURATION_TASTE = 1.2  # g_u[b] = exp(-DURATION_TASTE * |b - b_u|): a bin away weighs 0.30, three away 0.03


def duration_bin(duration_s: np.ndarray) -> np.ndarray:
    """The length bin (0 = shortest) of each duration: what the user's taste g_u is defined over."""
    return np.searchsorted(np.asarray(DURATION_EDGES), np.asarray(duration_s), side="right").astype(np.int64)


@dataclass
class Feed:
    """The generated world: tables plus the truth the oracle uses."""

    config: FeedConfig
    videos: pd.DataFrame  # video_id, cluster, topic, creator_id, duration_s, upload_ts, pop, content_0..7
    users: pd.DataFrame  # user_id, signup_ts
    events: pd.DataFrame  # user_id, video_id, ts, completion, session_id
    user_pref: np.ndarray  # (U, C) true cluster preferences pi_u
    cluster_norm: np.ndarray  # (C, NB) W[c, b] = sum of pop over cluster c's videos in length bin b
    duration_pref: np.ndarray  # (U, NB) true length taste g_u (unnormalised weights)

    @property
    def split_ts(self) -> int:
        return START_TS + (self.config.days - self.config.test_days) * DAY

    def true_scores(self, user_ids: np.ndarray) -> np.ndarray:
        """P(v | u) for each user over the whole catalog: (len(user_ids), n_videos)."""
        cluster = self.videos["cluster"].to_numpy()
        length = duration_bin(self.videos["duration_s"].to_numpy())
        g = self.duration_pref[user_ids]  # (B, NB)
        z = g @ self.cluster_norm.T  # (B, C): Z_uc
        within = g[:, length] * self.videos["pop"].to_numpy()[None, :] / z[:, cluster]  # (B, V)
        return (self.user_pref[user_ids][:, cluster] * within).astype(np.float32)


def generate(config: FeedConfig) -> Feed:
    """Draw users, videos and watch events from the generating model (deterministic for a seed)."""
    feed, chunks = generate_stream(config)
    return replace(feed, events=pd.concat(list(chunks), ignore_index=True))


def generate_stream(config: FeedConfig) -> tuple[Feed, Iterator[pd.DataFrame]]:
    """The feed of `generate` with its events as an iterator of chunks in (user, ts) order (Feed.events is empty):
    how the data step writes a feed larger than memory. The chunks concatenated are `generate`'s events, bit for
    bit; the events are drawn as the iterator starts, from the same random stream."""
    rng = np.random.default_rng(config.seed)
    n_v, n_u = config.n_videos, config.n_users
    n_creators = config.n_creators or max(50, n_v // 40)

    # videos: cluster, popularity (Zipf over a random permutation), creator, content vector
    cluster = rng.integers(0, N_CLUSTERS, n_v)
    rank = rng.permutation(n_v) + 1
    pop = (1.0 / rank**config.zipf_a).astype(np.float64)
    pop /= pop.sum()
    centroids = rng.normal(size=(N_CLUSTERS, CONTENT_DIM)).astype(np.float32)
    content = centroids[cluster] + 0.35 * rng.normal(size=(n_v, CONTENT_DIM)).astype(np.float32)
    creator_cluster = rng.integers(0, N_CLUSTERS, n_creators)  # creators make videos in one cluster mostly
    creator = rng.integers(0, n_creators, n_v)
    same = rng.random(n_v) < 0.8
    by_cluster = pd.Series(np.arange(n_creators)).groupby(creator_cluster).apply(np.array)
    for c in np.unique(cluster[same]):
        idx = np.flatnonzero(same & (cluster == c))
        options = by_cluster.get(c)
        if options is not None and len(options):
            creator[idx] = rng.choice(options, size=idx.size)
    # most of the catalog predates the window; ~3% is uploaded during it (cold-start videos)
    upload_ts = START_TS - rng.integers(1, 365 * DAY, n_v)
    fresh = rng.random(n_v) < 0.03
    upload_ts[fresh] = START_TS + rng.integers(0, config.days * DAY, fresh.sum())
    duration = np.exp(rng.normal(5.0, 0.8, n_v)).clip(10, 3600).astype(np.int32)
    videos = pd.DataFrame(
        {"video_id": np.arange(n_v, dtype=np.int64), "cluster": cluster.astype(np.int16),
         "topic": (cluster // N_SUB).astype(np.int16), "creator_id": creator.astype(np.int64),
         "duration_s": duration, "upload_ts": upload_ts.astype(np.int64), "pop": pop}
    )  # fmt: skip
    for j in range(CONTENT_DIM):
        videos[f"content_{j}"] = content[:, j]

    # users: sparse preferences over clusters
    pref = np.full((n_u, N_CLUSTERS), 0.02 / N_CLUSTERS)
    favourites = rng.integers(0, N_CLUSTERS, (n_u, 3))
    weights = rng.dirichlet([1.0, 1.0, 1.0], n_u) * 0.98
    np.add.at(pref, (np.repeat(np.arange(n_u), 3), favourites.ravel()), weights.ravel())
    pref /= pref.sum(1, keepdims=True)
    users = pd.DataFrame({"user_id": np.arange(n_u, dtype=np.int64),
                          "signup_ts": START_TS - rng.integers(DAY, 700 * DAY, n_u)})  # fmt: skip
    favourite_bin = rng.integers(0, N_DURATION_BINS, n_u)
    taste = np.exp(-DURATION_TASTE * np.abs(np.arange(N_DURATION_BINS)[None, :] - favourite_bin[:, None]))

    length = duration_bin(duration)
    cell = cluster.astype(np.int64) * N_DURATION_BINS + length  # (V,) cell id, cells ordered (c, b)
    cell_norm = np.bincount(cell, weights=pop, minlength=N_CLUSTERS * N_DURATION_BINS)  # W, flattened
    feed = Feed(config, videos, users, EVENTS_SCHEMA.copy(), pref.astype(np.float32),
                cell_norm.reshape(N_CLUSTERS, N_DURATION_BINS), taste.astype(np.float32))  # fmt: skip
    return feed, _draw_events(config, rng, pref, taste, pop, cell, cell_norm, upload_ts, length)


EVENTS_SCHEMA = pd.DataFrame(
    {"user_id": np.empty(0, np.int64), "video_id": np.empty(0, np.int64), "ts": np.empty(0, np.int64),
     "completion": np.empty(0, np.float32), "session_id": np.empty(0, np.int64)}
)  # fmt: skip
CHUNK_ROWS = 1 << 15  # events per chunk of a per-event computation over (events, clusters) or (events, bins)
EVENT_ROWS = 1 << 20  # events per chunk the stream yields


def _chunks(n: int, rows: int = CHUNK_ROWS) -> list[slice]:
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


def _draw_events(
    config: FeedConfig, rng: np.random.Generator, pref: np.ndarray, taste: np.ndarray, pop: np.ndarray,
    cell: np.ndarray, cell_norm: np.ndarray, upload_ts: np.ndarray, length: np.ndarray,
) -> Iterator[pd.DataFrame]:  # fmt: skip
    """The watch events, EVENT_ROWS at a time. Every random draw is one array over all events, in the order the
    model defines; what is derived from the draws is computed in chunks and kept in the narrowest integer that
    holds it, so memory per event is a few dozen bytes (an (events, clusters) matrix would be 1 KB)."""
    n_u, n_v = pref.shape[0], len(pop)
    # heavy-tailed activity, cluster ~ pi_u, video ~ pop within cluster
    activity = np.asarray(rng.lognormal(0, 0.9, n_u))
    n_events = rng.poisson(config.events_per_user * activity / activity.mean()) + 2
    ev_user = np.repeat(np.arange(n_u, dtype=np.int32), n_events)
    draw = rng.random(ev_user.size)
    ev_cluster = np.concatenate(  # the first cluster whose cumulative preference passes the draw
        [(np.cumsum(pref[ev_user[s]], axis=1) < draw[s, None]).sum(1) for s in _chunks(ev_user.size)]
    ).clip(0, N_CLUSTERS - 1).astype(np.int16)  # fmt: skip
    # then a length bin b ~ g_u[b] * W[c, b] / Z_uc, then a video of cell (c, b) ~ pop
    draw = rng.random(ev_user.size)
    ev_cell = np.concatenate([_draw_bin(taste[ev_user[s]], cell_norm, ev_cluster[s], draw[s])
                              for s in _chunks(ev_user.size)])  # fmt: skip
    ev_cell += ev_cluster.astype(np.int64) * N_DURATION_BINS
    del draw
    order = np.argsort(cell, kind="stable")  # videos grouped by cell
    sorted_cell = cell[order]
    n_cells = len(cell_norm)
    within = np.cumsum(pop[order]) - np.repeat(
        np.cumsum(cell_norm) - cell_norm, np.bincount(sorted_cell, minlength=n_cells)
    )
    within /= cell_norm[sorted_cell]  # in (0, 1] inside each cell segment
    key = sorted_cell + within  # increasing: cell e occupies (e, e + 1]
    del sorted_cell, within
    target = ev_cell + rng.random(ev_user.size) * 0.999999 + 1e-9
    del ev_cell
    ev_video = order[np.searchsorted(key, target).clip(0, n_v - 1)].astype(np.int32)
    del target, key, order

    # timestamps: sessions of a few watches; a watch never precedes its video's upload
    ts = START_TS + rng.integers(0, config.days * DAY, ev_user.size)
    session_start = rng.random(ev_user.size) < 0.25
    early = ts <= upload_ts[ev_video]  # a watch before its upload: redraw it after the upload
    end = START_TS + config.days * DAY
    lo = upload_ts[ev_video][early] + 60
    ts[early] = lo + (rng.random(early.sum()) * np.maximum(end - lo, 1)).astype(np.int64)
    del early, lo
    keep = ts < end
    liking = pref[ev_user, ev_cluster] * N_CLUSTERS * taste[ev_user, length[ev_video]]
    del ev_cluster
    completion = (1 / (1 + np.exp(-(np.log(liking + 1e-6) * 0.6 + rng.normal(0, 0.7, ev_user.size))))).astype(
        np.float32
    )
    del liking
    # the kept watches ordered by (user, ts), stably (what sort_values(["user_id", "ts"], kind="stable") of a frame
    # gave). A session starts at a new user or at the session_start draw of the kept watch with the same rank
    # before the sort, as that code paired them.
    kept = np.flatnonzero(keep)
    watch_order = kept[np.lexsort((ts[kept], ev_user[kept]))]
    new_session = session_start[kept]
    del kept, keep, session_start
    sessions = 0
    for s in _chunks(len(watch_order), EVENT_ROWS):
        rows = watch_order[s]
        user = ev_user[rows].astype(np.int64)
        starts = new_session[s]
        starts[1:] |= user[1:] != user[:-1]
        if s.start == 0:
            starts[0] = True
        else:
            starts[0] |= user[0] != ev_user[watch_order[s.start - 1]]
        session_id = sessions + np.cumsum(starts).astype(np.int64)
        sessions = int(session_id[-1])
        yield pd.DataFrame(
            {"user_id": user, "video_id": ev_video[rows].astype(np.int64), "ts": ts[rows].astype(np.int64),
             "completion": completion[rows], "session_id": session_id}
        )  # fmt: skip


def _draw_bin(taste: np.ndarray, cell_norm: np.ndarray, cluster: np.ndarray, draw: np.ndarray) -> np.ndarray:
    """Each event's cell's length part b ~ g_u[b] * W[c, b] / Z_uc from its uniform draw, for (n, NB) taste rows."""
    bin_weight = taste * cell_norm.reshape(N_CLUSTERS, N_DURATION_BINS)[cluster]  # (n, NB)
    bin_cdf = np.cumsum(bin_weight, axis=1) / bin_weight.sum(1, keepdims=True)
    return (bin_cdf < draw[:, None]).sum(1).clip(0, N_DURATION_BINS - 1)


def temporal_split(events: pd.DataFrame, split_ts: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on everything before split_ts, test on everything at or after it: no future in training."""
    return events[events["ts"] < split_ts].copy(), events[events["ts"] >= split_ts].copy()


def holdout_users(
    feed: Feed, max_users: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Users with at least one new (unwatched in training) video in the test period, their targets and
    their training watches (excluded from every ranking): who evaluation, the ANN sweep and the cross
    experiment ask about."""
    train = feed.events[feed.events["ts"] < feed.split_ts]
    test = feed.events[feed.events["ts"] >= feed.split_ts]
    seen = train.groupby("user_id")["video_id"].apply(lambda s: np.unique(s.to_numpy()))
    target = test.groupby("user_id")["video_id"].apply(lambda s: np.unique(s.to_numpy()))
    users, targets, seens = [], [], []
    for uid, t in target.items():
        s = seen.get(uid, np.empty(0, np.int64))
        new = np.setdiff1d(t, s)
        if len(new):
            users.append(uid)
            targets.append(new)
            seens.append(s)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(users), size=min(max_users, len(users)), replace=False))
    return np.asarray(users)[pick], [targets[i] for i in pick], [seens[i] for i in pick]


def save(feed: Feed, out: Path, events: Iterable[pd.DataFrame] | None = None) -> tuple[int, int]:
    """Write the feed's files; `events` (generate_stream's chunks) are written as they come instead of
    feed.events, first, so that what drew them is freed before the catalog is written. Returns (watch events,
    of which before the split)."""
    out.mkdir(parents=True, exist_ok=True)
    n_events = n_past = 0
    writer = None
    try:
        for chunk in [feed.events] if events is None else events:
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(out / "events.parquet", table.schema)
            writer.write_table(table)
            n_events += len(chunk)
            n_past += int((chunk["ts"].to_numpy() < feed.split_ts).sum())
    finally:
        if writer is not None:
            writer.close()
    feed.videos.to_parquet(out / "videos.parquet")
    feed.users.to_parquet(out / "users.parquet")
    np.save(out / "user_pref.npy", feed.user_pref)
    np.save(out / "cluster_norm.npy", feed.cluster_norm)
    np.save(out / "duration_pref.npy", feed.duration_pref)
    (out / "config.json").write_text(json.dumps(asdict(feed.config)))
    return n_events, n_past


def load(out: Path) -> Feed:
    config = FeedConfig(**json.loads((out / "config.json").read_text()))
    return Feed(
        config,
        pd.read_parquet(out / "videos.parquet"),
        pd.read_parquet(out / "users.parquet"),
        pd.read_parquet(out / "events.parquet"),
        np.load(out / "user_pref.npy"),
        np.load(out / "cluster_norm.npy"),
        np.load(out / "duration_pref.npy"),
    )


# ---- real data: MovieLens ------------------------------------------------------------------------
# `mlsd recsys all --data movielens:<dir>` turns a MovieLens download into a Feed of the generator's schema, so
# that features (Feast), train, index and eval run unchanged. What MovieLens lacks is said where it is filled in.

ML_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
             "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
             "War", "Western", "IMAX", "(no genres listed)")  # fmt: skip  # u.item's 19 flags in order, then ml-latest's
RATINGS_FILES = ("u.data", "ratings.dat", "ratings.csv")
TRAIN_DAYS, TEST_DAYS = 24, 4  # the real timeline is mapped onto the generator's 28-day window


class DataFormatError(ConfigError):
    """A real-data file is not in the format its name promises: one line naming the file, the row, what was
    expected (`mlsd` prints it and exits 2)."""


def _bad(path: Path, row: int, expected: str, got: str) -> DataFormatError:
    return DataFormatError(f"{path}: row {row}: expected {expected}, got {got[:60]!r}")


def _check_int_columns(
    path: Path, raw: pd.DataFrame, cols: list[str] | list[int], expected: str, first_row: int
) -> None:
    """Every value of `cols` an integer (rating may be a decimal in ratings.csv), else the first bad row."""
    for col in cols:
        values = pd.to_numeric(raw[col], errors="coerce")
        bad = values.isna().to_numpy()
        if col != "rating":
            bad |= ~np.isclose(values.fillna(0).to_numpy(np.float64) % 1, 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            got = "|".join("" if pd.isna(v) else str(v) for v in raw.iloc[i].to_numpy())
            raise _bad(path, i + first_row, expected, got)


def _read(path: Path, expected: str, **kwargs) -> pd.DataFrame:
    """pandas.read_csv with its parser errors (too many fields on line N) as one DataFormatError line."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], **kwargs)
    except pd.errors.ParserError as exc:
        import re  # only on this error path: the row pandas names

        m = re.search(r"line (\d+)", str(exc))
        raise DataFormatError(f"{path}: row {m.group(1) if m else '?'}: expected {expected}") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path}: byte {exc.start}: expected text in {kwargs.get('encoding', 'utf-8')}"
        ) from None


def ratings_file(path: Path) -> Path:
    """The ratings file of a MovieLens folder (or the file itself)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataFormatError(
            f"{path}: not a MovieLens ratings file; expected one of {', '.join(RATINGS_FILES)}"
        )
    for name in RATINGS_FILES:
        if (path / name).is_file():
            return path / name
    raise DataFormatError(f"{path}: no MovieLens ratings file; expected one of {', '.join(RATINGS_FILES)}")


def read_movielens_ratings(path: Path) -> pd.DataFrame:
    """MovieLens ratings as columns user, item (the dataset's own ids), rating, ts; strict about the format.

    u.data (ml-100k): `user<TAB>item<TAB>rating<TAB>ts`, no header. ratings.dat (ml-1m, ml-10m):
    `user::item::rating::ts`, no header. ratings.csv (ml-latest, ml-25m): header `userId,movieId,rating,timestamp`.
    """
    path = ratings_file(path)
    cols = ["user", "item", "rating", "ts"]
    if path.name == "u.data":
        expected = "4 tab-separated integers user, item, rating, timestamp"
        raw, first = _read(path, expected, sep="\t", names=cols, header=None), 1
    elif path.name.endswith(".dat"):
        # `::` read as `:` with empty fields between (pandas' C parser; the regex one is ~20x slower)
        expected = "user::item::rating::timestamp"
        raw, first = _read(path, expected, sep=":", names=list("abcdefg"), header=None), 1
        if raw[["b", "d", "f"]].notna().any().any() or raw["g"].isna().any():
            bad = raw[["b", "d", "f"]].notna().any(axis=1) | raw["g"].isna()
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise _bad(path, i + 1, expected, ":".join("" if pd.isna(v) else v for v in raw.iloc[i]))
        raw = raw[["a", "c", "e", "g"]].set_axis(cols, axis=1)
    elif path.name.endswith(".csv"):
        expected = "userId,movieId,rating,timestamp"
        raw, first = _read(path, expected, sep=","), 2
        if list(raw.columns[:4]) != ["userId", "movieId", "rating", "timestamp"]:
            raise _bad(path, 1, f"the header {expected}", ",".join(map(str, raw.columns)))
        raw = raw.iloc[:, :4].set_axis(cols, axis=1)
    else:
        raise DataFormatError(
            f"{path}: not a MovieLens ratings file; expected one of {', '.join(RATINGS_FILES)}"
        )
    if raw.empty:
        raise DataFormatError(f"{path}: row {first}: expected ratings, got an empty file")
    _check_int_columns(path, raw, cols, expected, first)
    out = raw.apply(pd.to_numeric)
    bad = ~out["rating"].between(0.5, 5).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _bad(path, i + first, "a rating in 0.5..5", str(raw["rating"].iloc[i]))
    return out.astype({"user": np.int64, "item": np.int64, "rating": np.float32, "ts": np.int64})


def load_movielens(path: Path) -> pd.DataFrame:
    """MovieLens ratings as watch events of the feed's schema (user_id, video_id, ts, completion, session_id).

    A rating r in 0.5..5 becomes completion r / 5; user and item ids are re-indexed from 0; a gap of more than
    30 minutes (or a new user) starts a session.
    """
    raw = read_movielens_ratings(path)
    user_codes, _ = pd.factorize(raw["user"], sort=True)
    item_codes, _ = pd.factorize(raw["item"], sort=True)
    events = pd.DataFrame(
        {"user_id": user_codes.astype(np.int64), "video_id": item_codes.astype(np.int64),
         "ts": raw["ts"].to_numpy(np.int64), "completion": raw["rating"].to_numpy(np.float32) / 5.0}
    ).sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)  # fmt: skip
    gap = events.groupby("user_id")["ts"].diff().fillna(np.inf)
    events["session_id"] = (np.cumsum(gap.to_numpy() > 1800) - 1).astype(np.int64)  # from 0
    return events


def load_movielens_items(folder: Path) -> pd.DataFrame | None:
    """Item side features where the folder has them: columns item, year (float, NaN when unknown), genres
    (a (n, len(ML_GENRES)) multi-hot in column g_<j>). u.item (latin-1, `|`), movies.dat (latin-1, `::`,
    genres `A|B`), movies.csv (utf-8, header movieId,title,genres). None when there is no such file."""
    folder = Path(folder)
    folder = folder if folder.is_dir() else folder.parent
    if (folder / "u.item").is_file():
        path = folder / "u.item"
        expected = "24 `|`-separated fields: id|title|release date|video date|url|19 genre flags"
        raw = _read(path, expected, sep="|", header=None, encoding="latin-1")
        if raw.shape[1] != 24:
            raise _bad(path, 1, expected, f"{raw.shape[1]} fields")
        _check_int_columns(path, raw, [0], expected, 1)
        flags = raw.iloc[:, 5:24].fillna("0")
        bad = ~flags.isin(["0", "1"]).all(axis=1).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _bad(path, i + 1, "genre flags 0 or 1 in fields 6..24", "|".join(flags.iloc[i]))
        multi_hot = np.zeros((len(raw), len(ML_GENRES)), np.float32)
        multi_hot[:, :19] = flags.to_numpy(int)
        year = pd.to_datetime(raw[2], format="%d-%b-%Y", errors="coerce").dt.year.to_numpy(np.float64)
        title = raw[1].fillna("")
    elif (folder / "movies.dat").is_file() or (folder / "movies.csv").is_file():
        if (folder / "movies.dat").is_file():
            path = folder / "movies.dat"
            lines = path.read_text(encoding="latin-1").splitlines()
            parts = [line.split("::") for line in lines]
            for i, p in enumerate(parts):
                if len(p) != 3 or not p[0].isdigit():
                    raise _bad(path, i + 1, "movieId::title::genres", lines[i])
            raw = pd.DataFrame(parts)
        else:
            path = folder / "movies.csv"
            raw = _read(path, "movieId,title,genres", sep=",")
            if list(raw.columns[:3]) != ["movieId", "title", "genres"]:
                raise _bad(path, 1, "the header movieId,title,genres", ",".join(map(str, raw.columns)))
            raw = raw.iloc[:, :3].set_axis([0, 1, 2], axis=1)
            _check_int_columns(path, raw, [0], "movieId,title,genres", 2)
        index = {g: j for j, g in enumerate(ML_GENRES)}
        multi_hot = np.zeros((len(raw), len(ML_GENRES)), np.float32)
        for i, gs in enumerate(raw[2].fillna("")):
            for g in gs.split("|"):
                if g in index:
                    multi_hot[i, index[g]] = 1.0
        title = raw[1].fillna("")
        year = np.full(len(raw), np.nan)
    else:
        return None
    from_title = pd.to_numeric(title.str.extract(r"\((\d{4})\)\s*$")[0], errors="coerce").to_numpy(np.float64)
    year = np.where(np.isnan(year), from_title, year)  # the release date is missing on a few rows
    items = pd.DataFrame({"item": raw[0].astype(np.int64), "year": year})
    for j in range(len(ML_GENRES)):
        items[f"g_{j}"] = multi_hot[:, j]
    return items


def _map_time(ts: np.ndarray, lo: int, hi: int, start: int, days: int) -> np.ndarray:
    """ts in [lo, hi] mapped linearly (order kept) onto [start, start + days) in seconds."""
    frac = (ts - lo) / max(hi - lo, 1)
    return (start + np.minimum(frac, 1 - 1e-9) * days * DAY).astype(np.int64)


def split_test(user: np.ndarray, ts: np.ndarray, protocol: str, seed: int) -> np.ndarray:
    """The test rows (a bool mask) of ratings by `protocol`. "temporal": the project's split, the last 20% of
    ratings by time. "random": the public benchmark tables' split (Microsoft recommenders'
    python_stratified_split), per user a random 25% of their ratings."""
    if protocol == "temporal":
        return ts >= int(np.quantile(ts, 0.8))
    if protocol != "random":
        raise ValueError(f"unknown protocol {protocol!r}; temporal or random")
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(ts)), user))  # users grouped, random within a user
    rank = np.empty(len(ts), np.int64)
    counts = np.bincount(user)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank[order] = np.arange(len(ts)) - starts
    n_train = np.round(counts * 0.75).astype(np.int64)
    return rank >= n_train[user]


def check_items_known(path: Path, rated: np.ndarray, listed: np.ndarray) -> None:
    """DataFormatError at the first rating of an item the folder's item file does not list: every MovieLens
    release lists each rated item, so such a row was added to the copy (one public copy of ml-latest-small ends
    with `999,999999,5.0,...`, well-formed and foreign)."""
    unknown = ~np.isin(rated, listed)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        row = i + (2 if path.name.endswith(".csv") else 1)
        raise DataFormatError(
            f"{path}: row {row}: expected an item the folder's item file lists, got item {int(rated[i])}"
        )


def movielens_feed(path: Path, protocol: str = "temporal", seed: int = 0) -> Feed:
    """A MovieLens download as a Feed of the generator's schema; the split (`split_test`) sits at Feed.split_ts.

    The real timestamps are mapped, in order, onto the generator's window (train on days 0..24, test on 24..28),
    so every later step runs as is.
    """
    ratings = read_movielens_ratings(path)
    user_codes, _ = pd.factorize(ratings["user"], sort=True)
    item_codes, item_ids = pd.factorize(ratings["item"], sort=True)
    ts = ratings["ts"].to_numpy(np.int64)
    test = split_test(user_codes, ts, protocol, seed)
    n_v = len(item_ids)

    # items: genre -> topic and cluster, year -> content; what MovieLens lacks is a constant
    side = load_movielens_items(path)
    multi_hot = np.zeros((n_v, len(ML_GENRES)), np.float32)
    year = np.full(n_v, np.nan)
    if side is not None:
        check_items_known(ratings_file(path), ratings["item"].to_numpy(), side["item"].to_numpy())
        row = pd.Series(np.arange(len(side)), index=side["item"].to_numpy()).reindex(item_ids).to_numpy()
        known = ~np.isnan(row)
        multi_hot[known] = side[[f"g_{j}" for j in range(len(ML_GENRES))]].to_numpy()[row[known].astype(int)]
        year[known] = side["year"].to_numpy()[row[known].astype(int)]
    main_genre = np.where(multi_hot.any(1), multi_hot.argmax(1), 0)
    decade = np.clip((np.nan_to_num(year, nan=1990) - 1930) // 10, 0, N_SUB - 1).astype(np.int64)
    cluster = (main_genre % N_TOPICS) * N_SUB + decade  # 21 genres fold onto 16 topics (the last few share)
    proj = np.random.default_rng(0).normal(size=(len(ML_GENRES), CONTENT_DIM - 1)).astype(np.float32)
    year_z = np.nan_to_num((year - 1990) / 15, nan=0.0).astype(np.float32)
    content = np.column_stack([year_z, multi_hot @ proj / np.sqrt(multi_hot.sum(1, keepdims=True).clip(1))])
    static = pd.DataFrame(
        {"video_id": np.arange(n_v, dtype=np.int64), "cluster": cluster.astype(np.int16),
         "topic": (cluster // N_SUB).astype(np.int16),
         "creator_id": np.nan_to_num(year, nan=0).astype(np.int64),  # no creator: the release year stands in
         "duration_s": np.full(n_v, 6_000, np.int32)}  # no duration in MovieLens: a constant, so uninformative
    )  # fmt: skip
    for j in range(CONTENT_DIM):
        static[f"content_{j}"] = content[:, j]
    completion = ratings["rating"].to_numpy(np.float32) / 5.0  # a rating as the completion signal
    return _ratings_feed(
        user_codes, item_codes, ts, completion, test, static, int(user_codes.max()) + 1, seed
    )


def validation_feed(feed: Feed, protocol: str, seed: int) -> Feed:
    """The training ratings of a real-data feed, split again by the same protocol: the models are tuned on this
    feed's split and the original test split is never read. Same users, items and item features."""
    past = feed.events[feed.events["ts"] < feed.split_ts]
    user, ts = past["user_id"].to_numpy(np.int64), past["ts"].to_numpy(np.int64)
    test = split_test(user, ts, protocol, seed)
    static = feed.videos.drop(columns=["upload_ts", "pop"])
    return _ratings_feed(user, past["video_id"].to_numpy(np.int64), ts, past["completion"].to_numpy(np.float32),
                         test, static, feed.config.n_users, seed)  # fmt: skip


def _ratings_feed(
    user: np.ndarray, item: np.ndarray, ts: np.ndarray, completion: np.ndarray, test: np.ndarray,
    static: pd.DataFrame, n_users: int, seed: int,
) -> Feed:  # fmt: skip
    """Ratings and their test mask as a Feed: times mapped in order onto the window, train before split_ts."""
    split_ts = START_TS + TRAIN_DAYS * DAY
    new_ts = np.empty(len(ts), np.int64)
    for part, start, days in ((~test, START_TS, TRAIN_DAYS), (test, split_ts, TEST_DAYS)):
        if part.any():
            new_ts[part] = _map_time(ts[part], ts[part].min(), ts[part].max(), start, days)
    events = pd.DataFrame(
        {"user_id": user.astype(np.int64), "video_id": item.astype(np.int64), "ts": new_ts, "completion": completion}
    ).sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)  # fmt: skip
    events["session_id"] = np.cumsum((events["user_id"].diff() != 0).to_numpy()).astype(np.int64)
    n_u, n_v = n_users, len(static)
    first_seen = events.groupby("video_id")["ts"].min().reindex(range(n_v)).to_numpy()
    pop = np.bincount(events.loc[events["ts"] < split_ts, "video_id"], minlength=n_v) + 1.0
    videos = static.assign(upload_ts=(first_seen - 60).astype(np.int64), pop=pop / pop.sum())
    videos = videos[["video_id", "cluster", "topic", "creator_id", "duration_s", "upload_ts", "pop",
                     *[f"content_{j}" for j in range(CONTENT_DIM)]]]  # fmt: skip
    first_user = events.groupby("user_id")["ts"].min().reindex(range(n_u)).to_numpy()
    users = pd.DataFrame(
        {"user_id": np.arange(n_u, dtype=np.int64), "signup_ts": (first_user - 60).astype(np.int64)}
    )
    config = FeedConfig(n_users=n_u, n_videos=n_v, events_per_user=len(events) / n_u,
                        days=TRAIN_DAYS + TEST_DAYS, test_days=TEST_DAYS, seed=seed)  # fmt: skip
    # no generating model behind real data: no oracle (eval leaves that row out when source.json says so)
    return Feed(config, videos, users, events, np.zeros((n_u, N_CLUSTERS), np.float32),
                np.ones((N_CLUSTERS, N_DURATION_BINS)), np.ones((n_u, N_DURATION_BINS)))  # fmt: skip
