"""The CLI: bad input is one line and exit 2; the steps run end to end (slow) and meet the issue's targets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.artifacts import Artifacts
from infra.config import REPO_ROOT
from mlsd.cli import main
from systems.rag_search.config import EVAL
from systems.rag_search.data import write_tiny_beir


def exit_code(*args: str) -> int:
    """`mlsd rag <args>` in-process: argparse exits with SystemExit, the runner returns its code."""
    try:
        return main(["rag", *args])
    except SystemExit as exc:
        return int(exc.code or 0)


def _run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlsd.cli", "rag", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=timeout)  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["nope"],
        ["ask"],
        ["ask", "   "],
        ["ask", "hello", "--generator", "openai"],
        ["update"],
        ["update", "--add", "/no/such/article.md"],
        ["eval", "--split", "weird"],
        ["bench", "--rate", "-1"],
        ["eval", "--beir", "/no/such/dir"],
        ["index", "--folder", "/no/such/dir"],
        ["cost", "--batch", "0"],
    ],
)
def test_bad_cli_input_is_one_line_and_exit_2(args, capsys) -> None:
    assert exit_code(*args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_malformed_setting_is_one_line_and_exit_2(monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLSD_RAG_THREADS", "many")
    assert exit_code("cost") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "MLSD_RAG_THREADS" in err


def test_the_system_is_listed(capsys) -> None:
    assert main(["list"]) == 0
    assert "rag" in capsys.readouterr().out


@pytest.mark.slow
def test_end_to_end_meets_the_heldout_targets(tmp_path) -> None:
    """data → index → train → eval on the held-out split; then delete an article and check it is never cited."""
    for step in ("data", "index", "train"):
        r = _run(step, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
    r = _run("eval", "--split", "heldout", timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    eval_json = Artifacts("rag", "small").path(EVAL)
    res = json.loads(eval_json.read_text())
    assert res["retrieval"]["rerank"]["recall@5"] >= 0.9
    assert res["retrieval"]["rerank"]["ndcg@10"] > res["retrieval"]["hybrid"]["ndcg@10"]
    ext = res["generation"]["extractive"]
    assert ext["citation_precision"] >= 0.9 and ext["refusal_accuracy"] >= 0.8

    r = _run("update", "--delete", "plan-plus", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run("ask", "how much is the Plus plan per month", timeout=300)
    assert r.returncode == 0 and "plan-plus" not in r.stdout

    beir = write_tiny_beir(tmp_path / "beir")
    r = _run("eval", "--beir", str(beir), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    ndcg = json.loads(eval_json.read_text())["beir"]["hybrid"]["ndcg@10"]
    assert ndcg > 0.5
