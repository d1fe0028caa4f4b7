"""Distances, label-free performance estimation and the windowed report."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from infra.monitoring import (
    categorical_psi,
    chi_square_categorical,
    expected_auc,
    jensen_shannon,
    labelled_metrics,
    wasserstein_normalized,
)
from infra.monitoring.report import Window, monitor, write_report


def test_wasserstein_is_the_mean_shift_in_reference_sds() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 2, 50_000)
    assert wasserstein_normalized(ref, ref + 1.0) == pytest.approx(0.5, abs=0.01)
    assert wasserstein_normalized(ref, rng.normal(0, 2, 50_000)) < 0.02


def test_jensen_shannon_is_zero_for_same_and_one_for_disjoint() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 20_000)
    assert jensen_shannon(a, rng.normal(0, 1, 20_000)) < 0.05
    assert jensen_shannon(a, a + 100) > 0.9  # all live values land in the reference's top bin
    assert jensen_shannon(np.array([0, 1] * 50), np.array([2, 3] * 50), categorical=True) == pytest.approx(
        1.0
    )


def test_chi_square_categorical_matches_scipy_and_sizes_the_effect() -> None:
    rng = np.random.default_rng(2)
    ref = rng.choice(3, 5000, p=[0.5, 0.3, 0.2])
    live = rng.choice(3, 5000, p=[0.2, 0.3, 0.5])
    chi2, p, v = chi_square_categorical(ref, live)
    table = np.stack([np.bincount(ref, minlength=3), np.bincount(live, minlength=3)])
    assert chi2 == pytest.approx(stats.chi2_contingency(table, correction=False)[0])
    assert p < 1e-10 and v > 0.2
    _, p_same, v_same = chi_square_categorical(ref, rng.choice(3, 5000, p=[0.5, 0.3, 0.2]))
    assert v_same < 0.05 and p_same > 1e-4


def test_categorical_psi_orders_shifts() -> None:
    base = np.array([50, 30, 20])
    assert categorical_psi(base, base) == pytest.approx(0.0)
    assert categorical_psi(base, np.array([45, 33, 22])) < categorical_psi(base, np.array([20, 30, 50]))


def test_cbpe_expected_auc_matches_realised_auc_when_calibrated() -> None:
    rng = np.random.default_rng(3)
    p = 1 / (1 + np.exp(-rng.normal(-2, 1, 20_000)))
    realised = [roc_auc_score(rng.random(p.size) < p, p) for _ in range(20)]
    assert expected_auc(p) == pytest.approx(np.mean(realised), abs=0.005)


def test_cbpe_cannot_see_concept_drift() -> None:
    """Labels now follow another function of x: the real AUC falls, the estimate from p does not move."""
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 20_000)
    p = 1 / (1 + np.exp(-(-2 + x)))
    drifted = 1 / (1 + np.exp(-(-2 - 0.3 * x)))
    y = rng.random(x.size) < drifted
    assert labelled_metrics(y, p)["auc"] < 0.5
    assert expected_auc(p) > 0.7


def _window(rng: np.random.Generator, name: str, shift: float = 0.0, device_p=(0.6, 0.3, 0.1)) -> Window:
    n = 30_000
    x = rng.normal(shift, 1, n)
    device = rng.choice(3, n, p=device_p)
    p = 1 / (1 + np.exp(-(-2 + x)))
    return Window(name, pd.DataFrame({"x": x, "device": device}), p, (rng.random(n) < p).astype(int))


def test_monitor_alerts_on_the_shifted_feature_only_and_writes_the_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ref = _window(rng, "ref")
    windows = [
        _window(rng, "same"),
        _window(rng, "x-shift", shift=1.0),
        _window(rng, "dev", device_p=(0.1, 0.3, 0.6)),
    ]
    signals = monitor(ref, windows, ["x"], ["device"])
    assert signals[0]["alerts"] == []
    assert signals[1]["features_drifted"] == ["x"] and "prediction_drift" in signals[1]["alerts"]
    assert signals[2]["features_drifted"] == ["device"] and "prediction_drift" not in signals[2]["alerts"]
    json_path, html_path = write_report(signals, ref, windows, ["x"], ["device"], tmp_path)
    assert "data:image/png;base64," in html_path.read_text()
    assert len(pd.read_json(json_path)) == 3
