"""`mlsd fraud all --data creditcard:<path>` on small files in the Kaggle creditcard.csv layout, and bad files.

The layout's quirks, as in the Kaggle file: a quoted header ("Time","V1",...,"Class"), unquoted numbers, and
the Class values quoted ("0", "1"); rows in Time order over two days.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from infra.artifacts import Artifacts
from infra.config import get_settings
from systems.fraud_edge import realdata
from systems.fraud_edge import train as fraud_train
from systems.fraud_edge.bundle import BundleRejected, live_path, verify_bundle
from systems.fraud_edge.config import AllConfig
from systems.fraud_edge.data import CREDITCARD_COLUMNS, DataFormatError, load_creditcard_csv
from systems.fraud_edge.features.velocity import feature_spec as velocity_spec

HEADER = ",".join(f'"{c}"' for c in CREDITCARD_COLUMNS)


def write_creditcard(path: Path, n: int = 3000, fraud_rate: float = 0.03, seed: int = 1) -> Path:
    """n rows over two days; frauds shift V1..V4 and spend more: something a model can find."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 172_792, n))
    lines = [HEADER]
    for i in range(n):
        y = int(rng.random() < fraud_rate)
        v = rng.standard_normal(28) + 2.0 * y * (np.arange(28) < 4)
        amount = rng.exponential(300.0 if y else 60.0)
        lines.append(",".join([str(t[i]), *(f"{a:.6f}" for a in v), f"{amount:.2f}", f'"{y}"']))
    path.write_text("\n".join(lines) + "\n")
    return path


def variant_root(path: Path) -> Path:
    return get_settings().data_dir / "fraud" / AllConfig(data=f"creditcard:{path}").variant()


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_the_loader_reads_the_quoted_kaggle_layout(tmp_path: Path) -> None:
    df = load_creditcard_csv(write_creditcard(tmp_path / "creditcard.csv", 50))
    assert list(df.columns) == CREDITCARD_COLUMNS and len(df) == 50
    assert df["Class"].dtype == np.int8 and set(df["Class"].unique()) <= {0, 1}  # "0" read as 0
    assert df["Time"].is_monotonic_increasing


@pytest.mark.slow
def test_all_with_data_runs_the_pipeline_on_creditcard_rows(
    tmp_path: Path, fraud_cli: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fraud_train, "MODEL_BUDGET_P99_MS", float("inf"))  # the pick must not depend on load
    path = write_creditcard(tmp_path / "creditcard.csv")
    assert fraud_cli("all", "--data", f"creditcard:{path}", "--no-mlflow") == 0
    root = variant_root(path)
    assert root.name.startswith("data-creditcard-")
    assert not (get_settings().data_dir / "fraud" / "small").exists()  # the simulator's folder is untouched
    train_report = json.loads((root / "train_report.json").read_text())
    rows = train_report["rows"]
    assert rows["train"] + rows["valid"] + rows["test"] == 3000 and rows["test"] == pytest.approx(600, abs=5)
    assert {"fp32", "int8_dynamic", "int8_static"} == set(train_report["variants"])
    report = json.loads((root / "eval_report.json").read_text())
    served = next(q for k, q in report["quality"].items() if k.endswith("(served)"))
    assert served["pr_auc"] > 0.3 and report["quality"]["lightgbm (reference)"]["pr_auc"] > 0.3
    policies = report["policies"]
    assert policies["model + rule (served)"]["cost_eur"] < policies["approve all"]["cost_eur"]
    assert "card id" in report["cannot_provide"] and "terminal id" in report["cannot_provide"]

    # The bundle is signed with the credit-card feature spec: the edge's velocity scorer refuses it.
    with pytest.raises(BundleRejected, match="trained on different features"):
        verify_bundle(live_path(root / "bundles"), velocity_spec()["spec_hash"])

    # The server bench --data load-tests: scores a row, refuses a row of the wrong width.
    art = Artifacts("fraud", root.name)
    body = realdata.bench_stream(art, 3)[0]
    with TestClient(realdata.build_app(art)) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
        resp = client.post("/score", json=body)
        assert resp.status_code == 200 and resp.json()["action"] in ("approve", "review", "decline")
        assert 0 <= resp.json()["score"] <= 1
        bad = client.post("/score", json={**body, "features": body["features"][:5]})
        assert bad.status_code == 422


BAD_FILES: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "an extra field": (lambda lines: lines.__setitem__(4, lines[4] + ",1.0"), "line 5 has 32 fields"),
    "a short line": (
        lambda lines: lines.__setitem__(3, ",".join(lines[3].split(",")[:20])),
        "line 4 has fewer",
    ),
    "a word for a number": (
        lambda lines: lines.__setitem__(
            6, ",".join([lines[6].split(",")[0], "abc", *lines[6].split(",")[2:]])
        ),
        "line 7: V1 must be a number, got 'abc'",
    ),  # fmt: skip
    "a bad class": (
        lambda lines: lines.__setitem__(2, lines[2].rsplit(",", 1)[0] + ',"2"'),
        "line 3: Class must be 0 or 1",
    ),  # fmt: skip
    "a negative amount": (
        lambda lines: lines.__setitem__(
            5, ",".join([*lines[5].split(",")[:29], "-3.00", lines[5].split(",")[30]])
        ),
        "line 6: Amount must be 0 or more",
    ),  # fmt: skip
    "no header": (lambda lines: lines.pop(0), "line 1 is not the credit-card fraud header"),
    "a header and nothing else": (lambda lines: lines.__delitem__(slice(1, None)), "a header and no rows"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_file_not_in_the_layout_is_one_line_naming_file_and_line(
    case: str, tmp_path: Path, fraud_cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_creditcard(tmp_path / "creditcard.csv", 20)
    lines = path.read_text().splitlines()
    edit, expected = BAD_FILES[case]
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError):
        load_creditcard_csv(path)
    assert fraud_cli("data", "--data", f"creditcard:{path}") == 1
    err = _one_line_error(capsys)
    assert str(path) in err and expected in err, err
    assert not (variant_root(path) / "features.npy").exists()  # nothing half-written


def test_an_empty_file_and_a_bad_flag(tmp_path: Path, fraud_cli: Callable[..., int],
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert fraud_cli("data", "--data", f"creditcard:{empty}") == 1
    assert "the file is empty" in _one_line_error(capsys)
    assert fraud_cli("train", "--data", f"criteo:{empty}") == 2
    assert "kind one of creditcard" in _one_line_error(capsys)
    assert fraud_cli("all", "--data", f"creditcard:{tmp_path / 'absent.csv'}") == 2
    assert "is not a file" in _one_line_error(capsys)


def test_too_few_frauds_to_split_is_one_line(tmp_path: Path, fraud_cli: Callable[..., int],
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = write_creditcard(tmp_path / "creditcard.csv", 300, fraud_rate=0.0)
    assert fraud_cli("train", "--data", f"creditcard:{path}", "--no-mlflow") == 1
    assert "every split needs a fraud" in _one_line_error(capsys)
