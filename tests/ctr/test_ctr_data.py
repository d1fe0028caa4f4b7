"""The simulator: known truth, position bias, Bayes ceiling, shifts; and the Criteo TSV loader."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from systems.ctr.data import (
    CRITEO_CAT,
    CRITEO_INT,
    SEEN_BY_POSITION,
    MarketConfig,
    Shift,
    activity_snapshots,
    criteo_categorical_ids,
    criteo_numeric,
    load_criteo_tsv,
    make_market,
    simulate_day,
    simulate_log,
)
from systems.ctr.features import hash_fields
from systems.ctr.train import FitConfig, fit


def test_same_seed_same_log_other_seed_other_log(tiny_market) -> None:
    a, b = simulate_day(tiny_market, 1), simulate_day(tiny_market, 1)
    pd.testing.assert_frame_equal(a, b)
    other = simulate_day(make_market(MarketConfig(n_users=800, n_ads=120, n_advertisers=15, n_sites=10,
                                                  n_days=4, impressions_per_day=2500, seed=4)), 1)  # fmt: skip
    assert not np.array_equal(a["click"].to_numpy(), other["click"].to_numpy())


def test_click_probability_is_seen_times_click_given_seen(tiny_market) -> None:
    log = simulate_log(tiny_market)
    expected = SEEN_BY_POSITION[log["position"].to_numpy() - 1] * log["p_click_seen"].to_numpy()
    np.testing.assert_allclose(log["p_true"].to_numpy(), expected)
    # clicks are drawn from p_true: observed CTR matches it within sampling noise
    se = np.sqrt(np.sum(log["p_true"] * (1 - log["p_true"]))) / len(log)
    assert abs(log["click"].mean() - log["p_true"].mean()) < 4 * se


def test_position_bias_and_promoted_slots(tiny_market) -> None:
    log = simulate_log(tiny_market)
    by_pos = log.groupby("position")["click"].mean()
    assert by_pos.loc[1] > by_pos.loc[5] * 1.8  # slot 1 is seen ~3x more than slot 5
    # the logging policy puts promoted ads on top, though promoted does not change P(click | seen)
    assert (
        log.loc[log["promoted"] == 1, "position"].mean()
        < log.loc[log["promoted"] == 0, "position"].mean() - 0.8
    )


def test_bayes_scores_beat_any_feature_alone(tiny_market) -> None:
    log = simulate_log(tiny_market)
    bayes = roc_auc_score(log["click"], log["p_true"])
    assert 0.65 < bayes < 0.9
    for col in ("ad_quality", "position", "hour"):
        assert (
            roc_auc_score(log["click"], log[col]) < bayes - 0.05
            or roc_auc_score(log["click"], -log[col]) < bayes
        )


def test_snapshots_have_no_activity_on_the_join_day(tiny_market) -> None:
    snaps = activity_snapshots(tiny_market)
    users = tiny_market.users.set_index("user_id")
    join = users.loc[snaps["user_id"], "join_day"].to_numpy()
    day = (snaps["event_timestamp"] - snaps["event_timestamp"].min()).dt.days.to_numpy()
    assert (day >= join).all()
    assert snaps["user_activity"].isna().to_numpy()[day == join].all()
    assert snaps["user_activity"].notna().to_numpy()[day > join].all()


@pytest.mark.parametrize(
    ("shift", "column", "moves"),
    [
        (Shift(device_mix=(0.1, 0.1, 0.8)), "device", True),
        (Shift(activity_offset=1.0), "true_activity", True),
        (Shift(concept_drift=1.0), "device", False),  # concept drift moves no feature
    ],
)
def test_shifts_move_what_they_say(tiny_market, shift: Shift, column: str, moves: bool) -> None:
    base, shifted = simulate_day(tiny_market, 2), simulate_day(tiny_market, 2, shift=shift)
    moved = abs(base[column].mean() - shifted[column].mean()) > 0.2
    assert moved == moves


def test_concept_drift_changes_the_truth_not_the_features(tiny_market) -> None:
    base, drifted = simulate_day(tiny_market, 2), simulate_day(tiny_market, 2, shift=Shift(concept_drift=1.0))
    assert np.array_equal(base["ad_id"], drifted["ad_id"])
    assert np.corrcoef(base["p_click_seen"], drifted["p_click_seen"])[0, 1] < 0.9


def test_new_advertisers_are_unseen_ids(tiny_market) -> None:
    shifted = simulate_day(tiny_market, 2, shift=Shift(new_advertisers=0.5))
    share_new = np.mean(shifted["advertiser_id"] >= tiny_market.config.n_advertisers)
    assert 0.45 < share_new < 0.55


def _write_criteo(path: Path, n: int = 200) -> None:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        ints = ["" if rng.random() < 0.2 else str(int(rng.integers(0, 1000))) for _ in CRITEO_INT]
        cats = ["" if rng.random() < 0.1 else f"{int(rng.integers(0, 2**32)):08x}" for _ in CRITEO_CAT]
        lines.append("\t".join([str(i % 3 == 0 and 1 or 0), *ints, *cats]))
    path.write_text("\n".join(lines) + "\n")


def test_criteo_loader_reads_the_public_format(tmp_path: Path) -> None:
    path = tmp_path / "day_0.tsv"
    _write_criteo(path)
    frame = load_criteo_tsv(path)
    assert list(frame.columns) == ["label", *CRITEO_INT, *CRITEO_CAT]
    assert len(frame) == 200 and set(frame["label"].unique()) == {0, 1}
    num = criteo_numeric(frame)
    assert num.shape == (200, 13) and num.dtype == np.float32
    assert np.all(num[frame[CRITEO_INT].isna().to_numpy()] == -1.0)
    cat = criteo_categorical_ids(frame)
    assert cat.shape == (200, 26) and np.all(cat[(frame[CRITEO_CAT] == "").to_numpy(dtype=bool)] == 0)


def test_criteo_loader_rejects_a_bad_label(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    _write_criteo(path, 5)
    text = path.read_text().splitlines()
    text[2] = "7" + text[2][1:]
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        load_criteo_tsv(path)


def test_criteo_rows_train_the_same_models(tmp_path: Path) -> None:
    path = tmp_path / "day_0.tsv"
    _write_criteo(path, 600)
    frame = load_criteo_tsv(path)
    cat = hash_fields(criteo_categorical_ids(frame), 1 << 12)
    num = criteo_numeric(frame)
    fitted = fit(FitConfig(kind="deepfm", epochs=5, batch_size=64, negative_keep_rate=1.0, n_buckets=1 << 12),
                 cat, num, frame["label"].to_numpy())  # fmt: skip
    assert fitted.losses[-1] < fitted.losses[0]
    p = fitted.predict(cat, num)
    assert p.shape == (600,) and np.all((p > 0) & (p < 1))
