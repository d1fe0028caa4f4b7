"""`mlsd ctr all --data criteo:<path>` on small files in Criteo's exact format, and the one-line error for bad ones.

The format's quirks, as in the Kaggle train.txt: no header, tab-separated, empty fields for missing values
(integers and categoricals), negative integers in some columns, categoricals as 8-digit hex hashes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from infra.artifacts import Artifacts
from infra.config import get_settings
from infra.serving.onnx import make_session
from infra.serving.testing import wait_ready
from systems.ctr import realdata
from systems.ctr.config import AllConfig
from systems.ctr.data import DataFormatError, load_criteo_tsv


def write_criteo(path: Path, n: int = 3000, seed: int = 0) -> Path:
    """n lines of Criteo TSV whose click depends on C1 (12 values) and I1: something a model can learn."""
    rng = np.random.default_rng(seed)
    c1_values = [f"{int(v):08x}" for v in rng.integers(0, 2**32, 12)]
    c1_effect = rng.normal(0, 3.0, 12)
    lines = []
    for _ in range(n):
        k = int(rng.integers(0, 12))
        ints = ["" if rng.random() < 0.2 else str(int(rng.integers(-2, 500))) for _ in range(13)]
        cats = [c1_values[k]] + [
            "" if rng.random() < 0.15 else f"{int(rng.integers(0, 2**32)) % 40 * 2654435761 % 2**32:08x}"
            for _ in range(25)
        ]
        i1 = int(ints[0]) if ints[0] else 0
        p = 1 / (1 + np.exp(-(c1_effect[k] - 1.0 + 0.002 * i1)))
        lines.append("\t".join([str(int(rng.random() < p)), *ints, *cats]))
    path.write_text("\n".join(lines) + "\n")
    return path


def variant_root(path: Path, rows: int) -> Path:
    return get_settings().data_dir / "ctr" / AllConfig(data=f"criteo:{path}", rows=rows).variant()


def test_the_loader_keeps_the_formats_quirks(tmp_path: Path) -> None:
    path = write_criteo(tmp_path / "train.txt", 200)
    frame = load_criteo_tsv(path, nrows=150)
    assert len(frame) == 150 and frame["label"].isin([0, 1]).all()
    assert frame["I1"].isna().any() and (frame["I1"].dropna() < 0).any()  # empty -> NaN, negatives kept
    assert (frame["C2"] == "").any() and frame["C1"].str.fullmatch("[0-9a-f]{8}").all()


@pytest.mark.slow
def test_all_with_data_runs_the_pipeline_on_criteo_rows(
    tmp_path: Path, mlsd_ctr: Callable[[Sequence[str]], int]
) -> None:
    path = write_criteo(tmp_path / "train.txt", 3000)
    argv = ["all", "--data", f"criteo:{path}", "--rows", "2500", "--epochs", "3", "--batch-size", "64"]
    assert mlsd_ctr([*argv, "--seeds", "1"]) == 0
    root = variant_root(path, 2500)
    assert root.name.startswith("data-criteo-") and root.is_dir()
    assert not (get_settings().data_dir / "ctr" / "small").exists()  # the simulator's folder is untouched
    source = json.loads((root / "market.json").read_text())
    assert source["rows_read"] == 2500  # the first N rows, not the whole file
    metrics = json.loads((root / "train_metrics.json").read_text())
    assert "bayes" not in metrics  # no ceiling on real data: the true click probability is unknown
    for kind in ("lr", "deepfm"):
        assert metrics[kind]["n"] == 500 and metrics[kind]["train_rows"] == 2000  # last 20% in file order
        assert metrics[kind]["auc"] > 0.62, metrics[kind]  # C1 carries the signal
        assert 0.5 < metrics[kind]["calibration"] < 1.5
        assert (root / "models" / kind / "model.onnx").exists()
    report = json.loads((root / "eval" / "eval.json").read_text())
    assert report["seeds"] == 1 and {"lr", "deepfm"} <= set(report["summary"])
    assert len(report["reliability"]["deepfm"]) == 10 and (root / "eval" / "reliability.png").exists()
    assert any(p["model"].startswith("DeepFM") and p["auc"] == 0.8007 for p in report["published"])

    # The row-level route `bench --data` load-tests: the test rows scored as the offline DeepFM scores them,
    # and a malformed request refused with 422 before the model runs.
    art = Artifacts("ctr", root.name)
    body = realdata.bench_requests(art, 2)[0]
    assert len(body["cat"]) == realdata.ROWS_PER_REQUEST
    offline = make_session(root / "models" / "deepfm" / "model.onnx").run(
        None, {"cat": np.asarray(body["cat"], np.int64), "num": np.asarray(body["num"], np.float32)}
    )[0]
    with TestClient(realdata.build_app(root)) as client:
        wait_ready(client)
        resp = client.post("/score_rows", json=body)
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose(resp.json()["p_click"], offline.ravel(), atol=1e-5)
        bad_rows = {
            "a short row": {**body, "cat": [body["cat"][0][:5]], "num": body["num"][:1]},
            "counts that differ": {**body, "num": body["num"][:3]},
            "an id out of the hash range": {**body, "cat": [[2**40] * 26], "num": body["num"][:1]},
            "an infinite count": {**body, "cat": body["cat"][:1], "num": [[float("1e999")] * 13]},
        }
        for name, bad in bad_rows.items():
            r = client.post(
                "/score_rows", content=json.dumps(bad), headers={"content-type": "application/json"}
            )
            assert r.status_code == 422 and r.json()["error"], (name, r.text)


def test_score_rows_without_a_model_is_not_ready_and_says_what_to_run(tmp_path: Path) -> None:
    """A folder with no trained Criteo DeepFM: /readyz settles on 503 naming the train command (not "loading" for
    ever), /healthz answers, /score_rows is 503."""
    with TestClient(realdata.build_app(tmp_path)) as client:
        with pytest.raises(AssertionError, match="no Criteo DeepFM"):
            wait_ready(client, timeout_s=30)
        r = client.get("/readyz")
        assert r.status_code == 503 and "mlsd ctr train --data criteo" in r.json()["message"]
        assert client.get("/healthz").status_code == 200
        body = {"request_id": "r", "cat": [[0] * 26], "num": [[0.0] * 13]}
        assert client.post("/score_rows", json=body).status_code == 503


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


BAD_LINES: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "an extra field": (lambda lines: lines.__setitem__(2, lines[2] + "\tdeadbeef"), "line 3 has 41 fields"),
    "a short line": (
        lambda lines: lines.__setitem__(3, "\t".join(lines[3].split("\t")[:30])),
        "line 4 has 30 fields",
    ),
    "a bad label": (lambda lines: lines.__setitem__(4, "2" + lines[4][1:]), "line 5: label must be 0 or 1"),
    "a non-integer": (
        lambda lines: lines.__setitem__(
            1, lines[1].split("\t", 1)[0] + "\t1.5\t" + lines[1].split("\t", 2)[2]
        ),
        "line 2: I1 must be an integer",
    ),  # fmt: skip
    "a header": (
        lambda lines: lines.insert(
            0, "\t".join(["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))])
        ),
        "line 1: label must be 0 or 1, got 'label'",
    ),  # fmt: skip
    "a non-hex categorical": (
        lambda lines: lines.__setitem__(6, lines[6].rsplit("\t", 1)[0] + "\tzzzz"),
        "line 7: C26 must be a hex hash",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_a_file_not_in_the_format_is_one_line_naming_file_and_line(
    case: str, tmp_path: Path, mlsd_ctr: Callable[[Sequence[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_criteo(tmp_path / "train.txt", 20)
    lines = path.read_text().splitlines()
    edit, expected = BAD_LINES[case]
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError):
        load_criteo_tsv(path)
    assert mlsd_ctr(["data", "--data", f"criteo:{path}", "--rows", "100"]) == 1
    err = _one_line_error(capsys)
    assert str(path) in err and expected in err, err
    assert not (variant_root(path, 100) / "rows.parquet").exists()  # nothing half-written


def test_a_bad_data_flag_is_exit_2(tmp_path: Path, mlsd_ctr: Callable[[Sequence[str]], int],
                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        mlsd_ctr(["train", "--data", f"movielens:{tmp_path}"])
    assert exc.value.code == 2 and "kind one of criteo" in _one_line_error(capsys)
    with pytest.raises(SystemExit) as exc:
        mlsd_ctr(["all", "--data", f"criteo:{tmp_path / 'absent.tsv'}"])
    assert exc.value.code == 2 and "is not a file" in _one_line_error(capsys)


@pytest.mark.slow
def test_bench_with_data_load_tests_the_criteo_model(
    tmp_path: Path, mlsd_ctr: Callable[[Sequence[str]], int]
) -> None:
    """`bench --data criteo` builds what is missing, serves the folder's DeepFM on /score_rows and replays its
    test rows; the data dir holds no simulator folder, so a server that loaded the simulator's would never be
    ready."""
    path = write_criteo(tmp_path / "train.txt", 3000)
    out = tmp_path / "report"
    data = ["--data", f"criteo:{path}", "--rows", "2500"]
    assert mlsd_ctr(["train", *data, "--epochs", "2", "--batch-size", "64"]) == 0  # a short training first
    argv = ["bench", *data, "--duration", "6", "--rate", "10", "--runs", "1", "--warmup", "0", "--floor-duration", "0",
            "--out", str(out)]  # fmt: skip
    code = mlsd_ctr(argv)
    report = json.loads((out / "report.json").read_text())
    route = report["routes"]["score_rows"]
    assert route["requests"] >= 10 and route["failures"] == 0, route
    assert code == report["exit_code"] and report["extra"]["data"] == f"criteo:{path}"
    assert {"lr", "deepfm"} <= set(report["extra"]["offline"])
    assert (variant_root(path, 2500) / realdata.STREAM).exists()
    assert not (get_settings().data_dir / "ctr" / "small").exists()  # the simulator was never built


def test_each_file_and_row_count_gets_its_own_folder(tmp_path: Path) -> None:
    a, b = write_criteo(tmp_path / "a.txt", 10), write_criteo(tmp_path / "b.txt", 10)
    names = {variant_root(a, 100).name, variant_root(b, 100).name, variant_root(a, 200).name}
    assert len(names) == 3 and AllConfig().variant() == AllConfig().scale


def test_rows_with_one_label_only_are_one_line(
    tmp_path: Path, mlsd_ctr: Callable[[Sequence[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_criteo(tmp_path / "train.txt", 200)
    lines = ["0" + line[1:] for line in path.read_text().splitlines()]  # no click at all
    path.write_text("\n".join(lines) + "\n")
    assert mlsd_ctr(["train", "--data", f"criteo:{path}", "--rows", "200"]) == 1
    assert "has only one label" in _one_line_error(capsys)
