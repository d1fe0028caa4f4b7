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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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

    # events: heavy-tailed activity, cluster ~ pi_u, video ~ pop within cluster
    activity = rng.lognormal(0, 0.9, n_u)
    n_events = rng.poisson(config.events_per_user * activity / activity.mean()) + 2
    ev_user = np.repeat(np.arange(n_u), n_events)
    cdf = np.cumsum(pref, axis=1)
    ev_cluster = (cdf[ev_user] < rng.random(ev_user.size)[:, None]).sum(1).clip(0, N_CLUSTERS - 1)
    # then a length bin b ~ g_u[b] * W[c, b] / Z_uc, then a video of cell (c, b) ~ pop
    length = duration_bin(duration)
    cell = cluster.astype(np.int64) * N_DURATION_BINS + length  # (V,) cell id, cells ordered (c, b)
    n_cells = N_CLUSTERS * N_DURATION_BINS
    cell_norm = np.bincount(cell, weights=pop, minlength=n_cells)  # W, flattened
    bin_weight = taste[ev_user] * cell_norm.reshape(N_CLUSTERS, N_DURATION_BINS)[ev_cluster]  # (E, NB)
    bin_cdf = np.cumsum(bin_weight, axis=1) / bin_weight.sum(1, keepdims=True)
    ev_bin = (bin_cdf < rng.random(ev_user.size)[:, None]).sum(1).clip(0, N_DURATION_BINS - 1)
    ev_cell = ev_cluster * N_DURATION_BINS + ev_bin
    order = np.argsort(cell, kind="stable")  # videos grouped by cell
    sorted_cell = cell[order]
    within = np.cumsum(pop[order]) - np.repeat(
        np.cumsum(cell_norm) - cell_norm, np.bincount(sorted_cell, minlength=n_cells)
    )
    within_frac = within / cell_norm[sorted_cell]  # in (0, 1] inside each cell segment
    key = sorted_cell + within_frac  # increasing: cell e occupies (e, e + 1]
    target = ev_cell + rng.random(ev_user.size) * 0.999999 + 1e-9
    pos = np.searchsorted(key, target).clip(0, n_v - 1)
    ev_video = order[pos]

    # timestamps: sessions of a few watches; a watch never precedes its video's upload
    ts = START_TS + rng.integers(0, config.days * DAY, ev_user.size)
    session_start = rng.random(ev_user.size) < 0.25
    early = ts <= upload_ts[ev_video]  # a watch before its upload: redraw it after the upload
    end = START_TS + config.days * DAY
    lo = upload_ts[ev_video][early] + 60
    ts[early] = lo + (rng.random(early.sum()) * np.maximum(end - lo, 1)).astype(np.int64)
    keep = ts < end
    liking = pref[ev_user, ev_cluster] * N_CLUSTERS * taste[ev_user, length[ev_video]]
    completion = 1 / (1 + np.exp(-(np.log(liking + 1e-6) * 0.6 + rng.normal(0, 0.7, ev_user.size))))
    events = pd.DataFrame(
        {"user_id": ev_user.astype(np.int64), "video_id": ev_video.astype(np.int64), "ts": ts.astype(np.int64),
         "completion": completion.astype(np.float32)}
    )[keep].sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)  # fmt: skip
    new_session = session_start[keep] | (events["user_id"].diff() != 0).to_numpy()
    events["session_id"] = np.cumsum(new_session).astype(np.int64)
    cluster_norm = cell_norm.reshape(N_CLUSTERS, N_DURATION_BINS)
    return Feed(
        config, videos, users, events, pref.astype(np.float32), cluster_norm, taste.astype(np.float32)
    )


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


def save(feed: Feed, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    feed.videos.to_parquet(out / "videos.parquet")
    feed.users.to_parquet(out / "users.parquet")
    feed.events.to_parquet(out / "events.parquet")
    np.save(out / "user_pref.npy", feed.user_pref)
    np.save(out / "cluster_norm.npy", feed.cluster_norm)
    np.save(out / "duration_pref.npy", feed.duration_pref)
    (out / "config.json").write_text(json.dumps(asdict(feed.config)))


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


def load_movielens(path: Path) -> pd.DataFrame:
    """MovieLens ratings (u.data, ratings.dat or ratings.csv) as watch events of the same schema.

    A rating r in 1..5 becomes completion r / 5; user and item ids are re-indexed from 0.
    """
    path = Path(path)
    name = path.name
    if name == "u.data":
        raw = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "ts"], engine="c")
    elif name.endswith(".dat"):
        raw = pd.read_csv(path, sep="::", names=["user", "item", "rating", "ts"], engine="python")
    elif name.endswith(".csv"):
        raw = pd.read_csv(path).rename(
            columns={"userId": "user", "movieId": "item", "rating": "rating", "timestamp": "ts"}
        )
        missing = {"user", "item", "rating", "ts"} - set(raw.columns)
        if missing:
            raise ValueError(
                f"{path} lacks MovieLens columns {sorted(missing)} (want userId,movieId,rating,timestamp)"
            )
    else:
        raise ValueError(f"{path}: not a MovieLens ratings file (u.data, ratings.dat or ratings.csv)")
    if raw.empty:
        raise ValueError(f"{path} holds no ratings")
    user_codes, _ = pd.factorize(raw["user"], sort=True)
    item_codes, _ = pd.factorize(raw["item"], sort=True)
    events = pd.DataFrame(
        {"user_id": user_codes.astype(np.int64), "video_id": item_codes.astype(np.int64),
         "ts": raw["ts"].astype(np.int64), "completion": (raw["rating"].astype(np.float32) / 5.0)}
    ).sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)  # fmt: skip
    gap = events.groupby("user_id")["ts"].diff().fillna(np.inf)
    events["session_id"] = (np.cumsum(gap.to_numpy() > 1800) - 1).astype(np.int64)  # from 0
    return events
