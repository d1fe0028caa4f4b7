"""Transactions with a known truth, the data step's artifacts, the label-delay split, and a loader for the
public credit-card CSV.

The simulator draws cards (a home city, a spend level, a rate) and terminals (a city, a location), then
legitimate purchases near home, then four fraud patterns that a single transaction cannot reveal; each
needs history, which is what the velocity features carry:

| pattern              | what it looks like                                     | the feature that sees it        |
|----------------------|--------------------------------------------------------|---------------------------------|
| compromised terminal | a burst of many different cards on one terminal in 1 h | terminal count / amount 10m, 1h |
| card testing         | 5-15 tiny charges on one card in minutes, then a big one | card count 10m, amount sum    |
| account takeover     | amounts 5-30x the card's usual, at a new terminal      | amount vs card mean, distinct   |
| geo jump             | a purchase far from home soon after a local one        | distance from usual, since last |

Labels arrive late: a fraud's chargeback lands 1-30 days after the purchase (`label_ts`). A model trained
at time T only knows the frauds whose chargeback arrived before T; `temporal_split` respects that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from infra.artifacts import Artifacts, atomic_write
from infra.steps import StepError
from systems.fraud_edge.config import SCALES

DAY = 86_400
CURRENCIES = ("EUR", "USD", "GBP")
# Fixed rates to EUR for the demo; a real edge device gets a rate table with its bundle.
EUR_PER_UNIT = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}
FRAUD_TYPES = ("legit", "compromised_terminal", "card_testing", "account_takeover", "geo_jump")
CITIES = np.array(
    [  # (lat, lon) of ten European cities: Paris, Berlin, Madrid, Rome, Warsaw, Lisbon, Dublin, Prague, Vienna, Oslo
        (48.86, 2.35), (52.52, 13.40), (40.42, -3.70), (41.90, 12.50), (52.23, 21.01),
        (38.72, -9.14), (53.35, -6.26), (50.08, 14.44), (48.21, 16.37), (59.91, 10.75),
    ]
)  # fmt: skip

COLUMNS = [
    "tx_id", "ts", "card_id", "terminal_id", "amount_cents", "currency", "lat_e6", "lon_e6",
    "is_fraud", "fraud_type", "label_ts",
]  # fmt: skip


@dataclass(frozen=True)
class SimConfig:
    """Sizes per scale; `small` builds in seconds on a laptop."""

    n_cards: int = 3000
    n_terminals: int = 400
    days: int = 42
    tx_per_card_day: float = 1.5
    incidents_per_1k_cards_day: float = 1.6  # fraud incidents (each 1-20 transactions)
    seed: int = 0

    @classmethod
    def tiny(cls, seed: int = 1) -> SimConfig:
        """Five weeks of 500 cards: enough for every split and pattern, built in a second (tests)."""
        return cls(n_cards=500, n_terminals=40, days=35, seed=seed)

    @classmethod
    def for_scale(cls, scale: str, seed: int = 0) -> SimConfig:
        """The sizes of a scale in config.SCALES; StepError naming the supported ones for any other."""
        if scale not in SCALES:
            raise StepError(f"fraud has no '{scale}' scale; supported: {', '.join(SCALES)}")
        n_cards, n_terminals, days = SCALES[scale]
        return cls(n_cards=n_cards, n_terminals=n_terminals, days=days, seed=seed)


def _daytime_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into the day, mostly 08:00-22:00."""
    hours = np.clip(rng.normal(15.0, 3.5, n), 0.0, 23.99)
    return (hours * 3600).astype(np.int64)


def simulate_transactions(cfg: SimConfig) -> pd.DataFrame:
    """One row per transaction, sorted by (ts, tx_id); amounts in integer cents, locations in micro-degrees."""
    if cfg.n_terminals < len(CITIES):
        raise ValueError(f"n_terminals must be >= {len(CITIES)} (one per city), got {cfg.n_terminals}")
    rng = np.random.default_rng(cfg.seed)
    # Terminals: a city each (every city gets at least one), scattered ~10 km around it.
    term_city = np.concatenate(
        [np.arange(len(CITIES)), rng.integers(0, len(CITIES), cfg.n_terminals - len(CITIES))]
    )
    term_loc = CITIES[term_city] + rng.normal(0, 0.08, (cfg.n_terminals, 2))
    by_city = [np.flatnonzero(term_city == c) for c in range(len(CITIES))]
    # Cards: a home city, a handful of usual terminals there, a spend level and a rate.
    card_city = rng.integers(0, len(CITIES), cfg.n_cards)
    card_mean = rng.lognormal(np.log(40.0), 0.6, cfg.n_cards)  # EUR
    card_rate = rng.gamma(2.0, cfg.tx_per_card_day / 2.0, cfg.n_cards)
    usual = [rng.choice(by_city[c], size=min(6, len(by_city[c])), replace=False) for c in card_city]

    rows: list[tuple] = []
    # Legitimate purchases.
    n_tx = rng.poisson(card_rate * cfg.days)
    for card in range(cfg.n_cards):
        n = int(n_tx[card])
        if n == 0:
            continue
        days = rng.integers(0, cfg.days, n)
        ts = days * DAY + _daytime_seconds(rng, n)
        terms = rng.choice(usual[card], size=n)
        amounts = np.maximum(50, (rng.lognormal(np.log(card_mean[card]), 0.5, n) * 100).astype(np.int64))
        # Legit noise the model must not flag: trips abroad (2%) and big-ticket purchases (1%).
        abroad = rng.random(n) < 0.02
        if abroad.any():
            trip_city = (card_city[card] + 1 + rng.integers(len(CITIES) - 1)) % len(CITIES)
            terms[abroad] = rng.choice(by_city[trip_city], size=int(abroad.sum()))
        big = rng.random(n) < 0.01
        amounts[big] = amounts[big] * rng.integers(5, 15, int(big.sum()))
        for t, term, amt in zip(ts, terms, amounts, strict=True):
            rows.append((int(t), card, int(term), int(amt), 0, "legit"))

    # Fraud incidents; each picks a victim card (or terminal) and a start time.
    n_incidents = rng.poisson(cfg.incidents_per_1k_cards_day * cfg.n_cards / 1000 * cfg.days)
    kinds = rng.choice(FRAUD_TYPES[1:], size=n_incidents, p=[0.1, 0.2, 0.35, 0.35])
    for kind in kinds:
        start = int(rng.integers(DAY, cfg.days * DAY - DAY))
        if kind == "compromised_terminal":
            term = int(rng.integers(cfg.n_terminals))
            victims = rng.choice(cfg.n_cards, size=int(rng.integers(8, 20)), replace=False)
            offsets = np.sort(rng.integers(0, int(rng.integers(1, 6)) * 3600, len(victims)))
            for card, off in zip(victims, offsets, strict=True):
                amt = int(rng.uniform(80, 400) * 100)
                rows.append((start + int(off), int(card), term, amt, 1, kind))
        elif kind == "card_testing":
            card = int(rng.integers(cfg.n_cards))
            far = by_city[(card_city[card] + 1 + rng.integers(len(CITIES) - 1)) % len(CITIES)]
            term = int(rng.choice(far))
            n = int(rng.integers(3, 15))
            offsets = np.sort(rng.integers(0, 900, n))
            for off in offsets:
                rows.append((start + int(off), card, term, int(rng.integers(50, 300)), 1, kind))
            rows.append((start + 620, card, term, int(rng.uniform(200, 900) * 100), 1, kind))
        elif kind == "account_takeover":
            card = int(rng.integers(cfg.n_cards))
            for k in range(int(rng.integers(1, 4))):
                term = int(rng.integers(cfg.n_terminals))
                amt = int(card_mean[card] * rng.uniform(2, 30) * 100)
                rows.append((start + k * int(rng.integers(300, 7200)), card, term, amt, 1, kind))
        else:  # geo_jump: a local purchase, then one far away within the hour
            card = int(rng.integers(cfg.n_cards))
            home_term = int(rng.choice(usual[card]))
            far_city = (card_city[card] + 1 + rng.integers(len(CITIES) - 1)) % len(CITIES)
            far_term = int(rng.choice(by_city[far_city]))
            amt_home = int(card_mean[card] * 100)
            rows.append((start, card, home_term, amt_home, 0, "legit"))
            amt_far = int(card_mean[card] * rng.uniform(1, 6) * 100)
            rows.append((start + int(rng.integers(300, 3600)), card, far_term, amt_far, 1, kind))

    df = pd.DataFrame(rows, columns=["ts", "card", "terminal", "amount_cents", "is_fraud", "fraud_type"])
    df = df.sort_values(["ts", "card"], kind="stable").reset_index(drop=True)
    df["tx_id"] = [f"tx{i:08d}" for i in range(len(df))]
    df["card_id"] = "c" + df["card"].astype(str).str.zfill(6)
    df["terminal_id"] = "t" + df["terminal"].astype(str).str.zfill(5)
    loc = np.round(term_loc[df["terminal"].to_numpy()] * 1e6).astype(np.int64)
    df["lat_e6"], df["lon_e6"] = loc[:, 0], loc[:, 1]
    df["currency"] = "EUR"
    # Chargebacks land 1-30 days later (median ~6 days); legit rows never get one.
    delay = np.clip(rng.lognormal(np.log(6 * DAY), 0.7, len(df)), DAY, 30 * DAY).astype(np.int64)
    df["label_ts"] = np.where(df["is_fraud"] == 1, df["ts"] + delay, -1)
    return df[COLUMNS]


# ---------------------------------------------------------------------------------------------------
# the data step's artifacts: the stream and its batch features (features/velocity.py computes them)
# ---------------------------------------------------------------------------------------------------
TRANSACTIONS = "transactions.parquet"
FEATURES = "features.npy"  # (N, D) float32, row i = model features of transaction i


def save_data(art: Artifacts, stream: pd.DataFrame, x: np.ndarray) -> None:
    """Write the stream and its feature matrix (the data step's outputs)."""
    stream.to_parquet(art.path(TRANSACTIONS), index=False)
    with atomic_write(art.path(FEATURES)) as f:  # written last: its presence means the step finished
        np.save(f, x)


def load_data(art: Artifacts) -> tuple[pd.DataFrame, np.ndarray]:
    """The stream and its (N, D) features; MissingArtifact naming `mlsd fraud data` when absent."""
    x = np.load(art.require(FEATURES, "data"))
    return pd.read_parquet(art.require(TRANSACTIONS, "data")), x


@dataclass(frozen=True)
class Split:
    """Row indices of one time-ordered split, with the times that define it."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    train_end: int
    valid_end: int
    label_cutoff: int  # "now" for the training job: labels known at this time
    test_start: int


def temporal_split(
    df: pd.DataFrame, warmup_days: int = 2, gap_days: int = 7, test_days: int = 10, valid_days: int = 4
) -> Split:
    """Train | valid | label-delay gap | test, by time; train/valid labels are those known at the cutoff.

    The model is built at `label_cutoff` = start of test. Rows in the `gap_days` before it are dropped:
    their chargebacks have mostly not arrived, so their labels would be wrong (fraud marked legit).
    The first `warmup_days` are dropped too: the velocity windows and card profiles are still empty.
    """
    ts = df["ts"].to_numpy()
    end = int(ts.max()) + 1
    test_start = end - test_days * DAY
    label_cutoff = test_start
    valid_end = test_start - gap_days * DAY
    train_end = valid_end - valid_days * DAY
    start = int(ts.min()) + warmup_days * DAY
    if train_end <= start:
        raise ValueError(f"{(end - ts.min()) / DAY:.0f} days of data is too short for this split")
    return Split(
        train=np.flatnonzero((ts >= start) & (ts < train_end)),
        valid=np.flatnonzero((ts >= train_end) & (ts < valid_end)),
        test=np.flatnonzero(ts >= test_start),
        train_end=train_end,
        valid_end=valid_end,
        label_cutoff=label_cutoff,
        test_start=test_start,
    )


def labels_known_at(df: pd.DataFrame, cutoff: int) -> np.ndarray:
    """What the training job sees: fraud only where its chargeback had arrived by `cutoff`."""
    label_ts = df["label_ts"].to_numpy()
    return ((df["is_fraud"].to_numpy() == 1) & (label_ts >= 0) & (label_ts <= cutoff)).astype(np.int8)


# The public credit-card fraud data set (European cardholders, 2013): Time, V1..V28 (PCA), Amount, Class.
CREDITCARD_COLUMNS = ["Time", *[f"V{i}" for i in range(1, 29)], "Amount", "Class"]


class DataFormatError(StepError, ValueError):
    """A public file that is not in its format: one line naming the file, the row and what was expected."""


def load_creditcard_csv(path: str | Path) -> pd.DataFrame:
    """Read creditcard.csv and check every row; Time is seconds from the first row, Class 1 = fraud.

    The Kaggle file has a quoted header and quoted Class values ("0"); both read as they should. A row
    that is not in the layout is a DataFormatError naming the file, its line (the header is line 1) and
    what was expected, never a half-read frame.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; download creditcard.csv and pass its path")
    expected = f"{len(CREDITCARD_COLUMNS)} comma-separated fields (Time, V1..V28, Amount, Class)"
    try:
        df = pd.read_csv(path, index_col=False)
    except pd.errors.ParserError as exc:  # "Expected 31 fields in line 7, saw 32"
        found = re.search(r"line (\d+), saw (\d+)", str(exc))
        where = f"line {found[1]} has {found[2]} fields" if found else str(exc).splitlines()[0]
        raise DataFormatError(f"{path}: {where}; expected {expected}") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path}: byte {exc.start} is not text; expected the creditcard.csv text file"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: the file is empty; expected a header line and {expected}") from None
    missing = [c for c in CREDITCARD_COLUMNS if c not in df.columns]
    if missing:
        raise DataFormatError(
            f"{path}: line 1 is not the credit-card fraud header; missing columns: {missing[:5]}"
        )
    if df.empty:
        raise DataFormatError(f"{path}: a header and no rows; expected {expected} a line")
    df = df[CREDITCARD_COLUMNS]
    if df[CREDITCARD_COLUMNS[-1]].isna().any():  # a short line leaves the last fields empty
        i = int(np.argmax(df[CREDITCARD_COLUMNS[-1]].isna().to_numpy()))
        raise DataFormatError(f"{path}: line {i + 2} has fewer fields than the header; expected {expected}")
    for col in CREDITCARD_COLUMNS:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(np.float64))  # not a number, empty, or inf
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFormatError(f"{path}: line {i + 2}: {col} must be a number, got {df[col].iloc[i]!r}")
        df[col] = values.astype(np.float64)
    bad = ~df["Class"].isin([0, 1]).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFormatError(f"{path}: line {i + 2}: Class must be 0 or 1, found {df['Class'].iloc[i]:g}")
    if (df["Amount"] < 0).any():
        i = int(np.argmax((df["Amount"] < 0).to_numpy()))
        raise DataFormatError(f"{path}: line {i + 2}: Amount must be 0 or more, got {df['Amount'].iloc[i]:g}")
    df = df.astype({"Class": "int8"})
    return df.sort_values("Time", kind="stable").reset_index(drop=True)


def creditcard_time_split(df: pd.DataFrame, test_frac: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Train on the earlier rows, test on the later ones (never a shuffled split on fraud data)."""
    cut = float(np.quantile(df["Time"].to_numpy(), 1.0 - test_frac))
    t = df["Time"].to_numpy()
    return np.flatnonzero(t < cut), np.flatnonzero(t >= cut)
