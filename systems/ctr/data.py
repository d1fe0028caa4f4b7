"""A simulated ad marketplace whose click probability is known, and a loader for Criteo's TSV format.

Every impression carries its true click probability, built as

    P(click) = P(seen | position) * P(click | seen)
    logit P(click | seen) = base + segment + category + segment x category + advertiser + site + device
                            + quality + activity (or the new-user effect) + seasonality(hour)

so the Bayes-optimal AUC and log loss (score each row with its own true p) are the ceiling a model is
measured against. The logging policy puts `promoted` ads in the top slots although `promoted` has no
effect on clicks: a model that never sees the position learns it as relevance.

Shifts can be injected into a fresh day of traffic (`simulate_day(..., shift=...)`): a feature's
distribution (device mix, user activity), a new advertiser mix, or concept drift (the truth changes).

The data step writes `market.json` (the world's config) and `log.parquet` (the impressions, truth
included) to the artifact folder; `features.training_rows` turns the log into `rows.parquet`.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from infra.artifacts import Artifacts
from infra.steps import StepError
from systems.ctr.config import SCALES

DAY_S = 86_400
EPOCH = pd.Timestamp("2026-01-05", tz="UTC")  # day 0 of the simulation (a Monday)
SEEN_BY_POSITION = np.array([1.0, 0.72, 0.55, 0.43, 0.35])  # P(seen | slot 1..5)
MISSING_ACTIVITY = -3.0  # what the training pipeline writes for a user with no activity snapshot yet

N_SEGMENTS, N_CATEGORIES, N_DEVICES = 8, 12, 3


@dataclass(frozen=True)
class MarketConfig:
    n_users: int = 6_000
    n_ads: int = 400
    n_advertisers: int = 40
    n_sites: int = 30
    n_days: int = 14
    impressions_per_day: int = SCALES["small"]
    base_logit: float = -2.3
    new_user_fraction: float = 0.2  # users who join during the simulation (no activity snapshot on day 1)
    seed: int = 0

    @classmethod
    def for_scale(cls, scale: str, seed: int = 0, **overrides: object) -> MarketConfig:
        """The scale's impressions per day (config.SCALES); StepError for a scale ctr does not have."""
        if scale not in SCALES:
            raise StepError(f"ctr has no scale '{scale}'; scales: {', '.join(SCALES)}")
        return replace(cls(seed=seed, impressions_per_day=SCALES[scale]), **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Shift:
    """A change injected into one simulated day; the defaults change nothing."""

    device_mix: tuple[float, float, float] | None = None  # P(device); default (0.55, 0.35, 0.10)
    activity_offset: float = 0.0  # added to every user's activity (a covariate shift)
    new_advertisers: float = 0.0  # share of traffic served by ads of advertisers never seen in training
    concept_drift: float = 0.0  # 0..1: how far the segment x category tastes move to new ones
    user_propensity: float = 0.0  # sd of a per-user click propensity no model feature carries


@dataclass
class Market:
    """The world's fixed parts: users, ads and the true click model's weights."""

    config: MarketConfig
    users: pd.DataFrame  # user_id, user_segment, join_day, activity0
    ads: pd.DataFrame  # ad_id, advertiser_id, ad_category, ad_quality, promoted, bid
    weights: dict[str, np.ndarray]


def make_market(config: MarketConfig) -> Market:
    rng = np.random.default_rng(config.seed)
    users = pd.DataFrame(
        {
            "user_id": np.arange(config.n_users, dtype=np.int64),
            "user_segment": rng.integers(0, N_SEGMENTS, config.n_users),
            "join_day": np.where(
                rng.random(config.n_users) < config.new_user_fraction,
                rng.integers(1, config.n_days, config.n_users),
                0,
            ),
            "activity0": rng.normal(0.0, 1.0, config.n_users),
        }
    )
    ads = pd.DataFrame(
        {
            "ad_id": np.arange(config.n_ads, dtype=np.int64),
            "advertiser_id": rng.integers(0, config.n_advertisers, config.n_ads),
            "ad_category": rng.integers(0, N_CATEGORIES, config.n_ads),
            "ad_quality": rng.normal(0.0, 1.0, config.n_ads).astype(np.float32),
            "promoted": (rng.random(config.n_ads) < 0.2).astype(np.int64),
            "bid": np.exp(rng.normal(0.0, 0.5, config.n_ads)).astype(np.float32),
        }
    )
    weights = {
        "segment": rng.normal(0, 0.25, N_SEGMENTS),
        "category": rng.normal(0, 0.25, N_CATEGORIES),
        "taste": rng.normal(0, 0.55, (N_SEGMENTS, N_CATEGORIES)),  # the interaction LR cannot see
        "taste_new": rng.normal(0, 0.55, (N_SEGMENTS, N_CATEGORIES)),  # where concept drift moves it
        # advertisers never seen in training (ids >= n_advertisers) are drawn with a worse mean
        "advertiser": np.concatenate(
            [rng.normal(0, 0.3, config.n_advertisers), rng.normal(-0.6, 0.3, config.n_advertisers)]
        ),
        "site": rng.normal(0, 0.2, config.n_sites),
        "device": np.array([0.0, -0.15, 0.25]),
        "quality": np.array(0.45),
        "activity": np.array(0.5),
        "new_user": np.array(0.35),
    }
    return Market(config, users, ads, weights)


def user_activity(market: Market, day: int) -> np.ndarray:
    """Each user's activity on `day`: a slow random walk (so a snapshot from another day is wrong)."""
    steps = np.random.default_rng([market.config.seed, 7]).normal(
        0.0, 0.25, (market.config.n_days + 30, market.config.n_users)
    )
    return market.users["activity0"].to_numpy() + steps[: day + 1].sum(axis=0)


def activity_snapshots(market: Market) -> pd.DataFrame:
    """The batch job's output: one row per (user, day since joining), stamped at that day's 00:00 UTC.

    On the day a user joins, the row has a segment (from signup) but no activity yet (null): the first
    activity value arrives with the next day's batch.
    """
    frames = []
    join_day = market.users["join_day"].to_numpy()
    for day in range(market.config.n_days + 1):
        known = join_day <= day
        activity = np.where(join_day < day, user_activity(market, day), np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "user_id": market.users["user_id"].to_numpy()[known],
                    "user_segment": market.users["user_segment"].to_numpy()[known],
                    "user_activity": activity[known].astype(np.float32),
                    "event_timestamp": EPOCH + pd.Timedelta(days=day),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def ad_snapshot(market: Market) -> pd.DataFrame:
    return market.ads.drop(columns=["bid"]).assign(event_timestamp=EPOCH - pd.Timedelta(days=1))


def true_logit_seen(market: Market, frame: pd.DataFrame, shift: Shift = Shift()) -> np.ndarray:
    """logit P(click | seen) for each row of an impression frame (needs the true activity columns)."""
    w = market.weights
    seg = frame["user_segment"].to_numpy()
    cat = frame["ad_category"].to_numpy()
    taste = (1 - shift.concept_drift) * w["taste"] + shift.concept_drift * w["taste_new"]
    hour = frame["hour"].to_numpy()
    activity_term = np.where(
        frame["is_new_user"].to_numpy(),
        w["new_user"],
        w["activity"] * np.tanh(frame["true_activity"].to_numpy()),
    )
    logit = (
        market.config.base_logit
        + w["segment"][seg]
        + w["category"][cat]
        + taste[seg, cat]
        + w["advertiser"][frame["advertiser_id"].to_numpy()]
        + w["site"][frame["site_id"].to_numpy()]
        + w["device"][frame["device"].to_numpy()]
        + w["quality"] * frame["ad_quality"].to_numpy()
        + activity_term
        + 0.35 * np.sin(2 * np.pi * (hour - 14) / 24 + np.pi / 2)  # evening peak
    )
    if shift.user_propensity:
        logit = logit + shift.user_propensity * user_propensity(market)[frame["user_id"].to_numpy()]
    return logit


def user_propensity(market: Market) -> np.ndarray:
    """A per-user N(0, 1) click propensity, switched on by Shift.user_propensity."""
    return np.random.default_rng([market.config.seed, 13]).normal(0, 1, market.config.n_users)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate_day(
    market: Market, day: int, n: int | None = None, shift: Shift = Shift(), seed: int = 0
) -> pd.DataFrame:
    """One day of logged impressions with their true probabilities and drawn clicks."""
    cfg = market.config
    n = n or cfg.impressions_per_day
    rng = np.random.default_rng([cfg.seed, day, seed, 11])
    # only users who have joined by `day` are active
    active = market.users.index[market.users["join_day"].to_numpy() <= day].to_numpy()
    user = rng.choice(active, n)
    ads = market.ads
    ad = rng.integers(0, cfg.n_ads, n)
    advertiser = ads["advertiser_id"].to_numpy()[ad]
    if shift.new_advertisers:  # some traffic moves to advertisers the model never saw
        moved = rng.random(n) < shift.new_advertisers
        advertiser = np.where(moved, cfg.n_advertisers + advertiser, advertiser)
    # seconds of the day: more traffic in the evening
    hour = rng.choice(24, n, p=_hour_weights())
    ts = day * DAY_S + hour * 3600 + rng.integers(0, 3600, n)
    mix = np.array(shift.device_mix or (0.55, 0.35, 0.10))
    device = rng.choice(N_DEVICES, n, p=mix / mix.sum())
    promoted = ads["promoted"].to_numpy()[ad]
    # logging policy: promoted ads get the top two slots 70% of the time, others are uniform
    position = np.where((promoted == 1) & (rng.random(n) < 0.7), rng.integers(1, 3, n), rng.integers(1, 6, n))
    joined_today = market.users["join_day"].to_numpy()[user] == day
    frame = pd.DataFrame(
        {
            "request_id": [f"d{day}-{i}" for i in range(n)],
            "ts": ts.astype(np.int64),
            "event_timestamp": EPOCH + pd.to_timedelta(ts, unit="s"),
            "user_id": user.astype(np.int64),
            "ad_id": ad.astype(np.int64),
            "site_id": rng.integers(0, cfg.n_sites, n),
            "device": device,
            "hour": hour,
            "position": position,
            # columns the model never sees: the truth behind each click
            "user_segment": market.users["user_segment"].to_numpy()[user],
            "ad_category": ads["ad_category"].to_numpy()[ad],
            "advertiser_id": advertiser,
            "ad_quality": ads["ad_quality"].to_numpy()[ad],
            "promoted": promoted,
            "bid": ads["bid"].to_numpy()[ad],
            "is_new_user": joined_today,
            "true_activity": user_activity(market, day)[user] + shift.activity_offset,
        }
    )
    p_seen = SEEN_BY_POSITION[position - 1]
    p_click_seen = sigmoid(true_logit_seen(market, frame, shift))
    frame["p_click_seen"] = p_click_seen
    frame["p_true"] = p_seen * p_click_seen
    frame["click"] = (rng.random(n) < frame["p_true"].to_numpy()).astype(np.int64)
    return frame


def _hour_weights() -> np.ndarray:
    w = 1.0 + 0.6 * np.sin(2 * np.pi * (np.arange(24) - 14) / 24 + np.pi / 2)
    return w / w.sum()


def simulate_log(market: Market, days: range | None = None) -> pd.DataFrame:
    """The impression log of every simulated day, in time order."""
    days = days if days is not None else range(market.config.n_days)
    return pd.concat([simulate_day(market, d) for d in days], ignore_index=True)


# --- the data step's artifacts -----------------------------------------------------------------------


def write_log(config: MarketConfig, art: Artifacts) -> tuple[Market, pd.DataFrame]:
    """Build the market, simulate its impression log; write market.json and log.parquet."""
    market = make_market(config)
    art.path("market.json").write_text(json.dumps(asdict(config)))
    log = simulate_log(market)
    log.to_parquet(art.path("log.parquet"))
    return market, log


def load_market(art: Artifacts) -> Market:
    """The market the data step simulated (rebuilt from its config: the same seed gives the same world)."""
    path = art.require("market.json", "data")
    return make_market(MarketConfig(**json.loads(path.read_text())))


def load_log(art: Artifacts, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(art.require("log.parquet", "data"), columns=columns)


def load_rows(art: Artifacts) -> pd.DataFrame:
    """The point-in-time training rows (features as of each impression, and its click)."""
    return pd.read_parquet(art.require("rows.parquet", "data"))


# --- the public Criteo display-ads format --------------------------------------------------------------

CRITEO_INT = [f"I{i}" for i in range(1, 14)]
CRITEO_CAT = [f"C{i}" for i in range(1, 27)]


class DataFormatError(StepError, ValueError):
    """A public file that is not in its format: one line naming the file, the row and what was expected."""


CRITEO_FIELDS = 1 + len(CRITEO_INT) + len(CRITEO_CAT)  # 40 tab-separated fields a line
_HEX = r"[0-9a-fA-F]{1,16}"  # a hashed categorical: 8 hex digits in the Kaggle and Terabyte files


def load_criteo_tsv(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """Criteo Kaggle/Terabyte TSV: label, 13 integer columns, 26 hashed categoricals (hex); no header.

    Every line is checked (40 fields, a 0/1 label, integers, hex categoricals): a line that is not in the
    format is a DataFormatError naming the file, the line and what was expected, never a half-read frame.
    Missing integers stay NaN, missing categoricals become "" (their own bucket after hashing).
    """
    names = ["label", *CRITEO_INT, *CRITEO_CAT]
    _check_field_counts(path, nrows)
    try:
        raw = pd.read_csv(path, sep="\t", header=None, names=names, nrows=nrows, dtype=str,
                          keep_default_na=False, index_col=False, quoting=3)  # fmt: skip
    except pd.errors.ParserError as exc:  # "Expected 40 fields in line 7, saw 41"
        found = re.search(r"line (\d+), saw (\d+)", str(exc))
        where = f"line {found[1]} has {found[2]} fields" if found else str(exc).splitlines()[0]
        raise DataFormatError(f"{path}: {where}; expected {CRITEO_FIELDS} tab-separated fields "
                              "(label, I1..I13, C1..C26)") from None  # fmt: skip
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: byte {exc.start} is not text; expected the Criteo TSV "
                              "(decompress train.txt first, or pass a .gz)") from None  # fmt: skip
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: the file is empty; expected Criteo TSV lines") from None
    label = raw["label"].to_numpy(dtype=object)
    _first_bad(path, ~np.isin(label, ["0", "1"]), lambda i: f"label must be 0 or 1, got {label[i]!r}")
    for col in CRITEO_INT:
        bad = ~raw[col].str.fullmatch(r"-?\d*").to_numpy(dtype=bool)
        _first_bad(path, bad, _bad_value(col, raw[col], "an integer or empty"))
    for col in CRITEO_CAT:
        bad = ~raw[col].str.fullmatch(f"(?:{_HEX})?").to_numpy(dtype=bool)
        _first_bad(path, bad, _bad_value(col, raw[col], "a hex hash or empty"))
    frame = raw[CRITEO_CAT].copy()
    frame.insert(0, "label", raw["label"].astype(np.int64))
    for j, col in enumerate(CRITEO_INT):
        frame.insert(
            1 + j, col, pd.to_numeric(raw[col].replace("", np.nan), errors="raise").astype("float64")
        )
    return frame


def _check_field_counts(path: Path, nrows: int | None) -> None:
    """Every line has 40 fields (pandas pads a short line with empty strings, which Criteo uses for missing)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        for i, line in enumerate(f):
            if nrows is not None and i >= nrows:
                break
            fields = line.count(b"\t") + 1
            if fields != CRITEO_FIELDS:
                raise DataFormatError(f"{path}: line {i + 1} has {fields} fields; expected {CRITEO_FIELDS} "
                                      "tab-separated fields (label, I1..I13, C1..C26)")  # fmt: skip


def _bad_value(col: str, values: pd.Series, expected: str) -> Callable[[int], str]:
    """The message for row i of a column whose value is not `expected`."""
    return lambda i: f"{col} must be {expected}, got {values.iloc[i]!r}"


def _first_bad(path: Path, bad: np.ndarray, what: Callable[[int], str]) -> None:
    """DataFormatError for the first row flagged `bad` (its 1-based line in a file without a header)."""
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFormatError(f"{path}: line {i + 1}: {what(i)}")


def criteo_categorical_ids(frame: pd.DataFrame) -> np.ndarray:
    """(N, 26) int64: each hex categorical as its integer value ("" -> 0), ready for field hashing."""
    out = np.zeros((len(frame), len(CRITEO_CAT)), dtype=np.int64)
    for j, col in enumerate(CRITEO_CAT):
        values = frame[col].to_numpy(dtype=object)
        out[:, j] = [int(v, 16) & 0x7FFF_FFFF_FFFF_FFFF if v else 0 for v in values]
    return out


def criteo_numeric(frame: pd.DataFrame) -> np.ndarray:
    """(N, 13) float32: log(1 + max(x, 0)), missing -> -1 (the usual Criteo transform)."""
    x = frame[CRITEO_INT].to_numpy(dtype=np.float64)
    return np.where(np.isnan(x), -1.0, np.log1p(np.clip(x, 0, None))).astype(np.float32)
