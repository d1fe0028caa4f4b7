"""A BEIR folder in the exact format, with its quirks (numeric `_id`, a missing title, extra fields, a qrels
header, score-0 judgements, queries without judgements), through the strict reader and `rag all --data`.

A bad file must be one line naming the file and the row, exit 2. The reranker transferred from the support KB
is stood in for by a small one written where the KB's would be (training the real one takes minutes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infra.artifacts import Artifacts
from infra.steps import ConfigError, run_cli
from systems.rag_search import pipeline
from systems.rag_search.answer import AnswerConfig
from systems.rag_search.beir import TUNE_FEATURES, CandidateTable, doc_ndcg, rank_fusion
from systems.rag_search.config import (
    ANSWER_CONFIG,
    EVAL,
    IN_DOMAIN_RERANKER,
    RERANKER,
    TUNE,
    DataConfig,
    TuneConfig,
)
from systems.rag_search.documents import BeirFormatError, load_beir
from systems.rag_search.model import FEATURES, Reranker

TOPICS = {
    "vitamin": "vitamin D supplementation and bone density in the elderly",
    "virus": "influenza virus replication inside host cells",
    "heart": "cardiac arrest survival after early defibrillation",
    "sleep": "sleep deprivation impairs memory consolidation",
}
FILLER = [
    "study",
    "results",
    "patients",
    "trial",
    "cohort",
    "analysis",
    "effect",
    "measured",
    "significant",
    "associated",
]


def write_beir_folder(folder: Path, docs_per_topic: int = 15) -> Path:
    rng = np.random.default_rng(0)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        n = 0
        for topic, text in TOPICS.items():
            for j in range(docs_per_topic):
                body = text + " " + " ".join(rng.choice(FILLER, 40))
                row = {"_id": n, "text": body} if j % 5 == 0 else {"_id": str(n), "title": f"{topic} {j}", "text": body, "metadata": {}}  # fmt: skip
                f.write(json.dumps(row) + "\n")
                n += 1
    with (folder / "queries.jsonl").open("w") as f:
        for t, text in enumerate(TOPICS.values()):
            f.write(json.dumps({"_id": f"q{t}", "text": "what about " + " ".join(text.split()[:3])}) + "\n")
        f.write(json.dumps({"_id": "train-only", "text": "a query judged in another split"}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"]
    for t in range(len(TOPICS)):
        lines += [f"q{t}\t{t * docs_per_topic + j}\t1" for j in range(3)] + [
            f"q{t}\t{t * docs_per_topic + 7}\t0"
        ]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_the_reader_keeps_the_format_quirks(tmp_path: Path) -> None:
    ds = load_beir(write_beir_folder(tmp_path / "beir"))
    assert len(ds.corpus) == 60 and ds.corpus["0"][0] == "" and ds.corpus["1"][0] == "vitamin 1"
    assert set(ds.queries) == {"q0", "q1", "q2", "q3"}  # the unjudged query is dropped
    assert all(len(rels) == 3 for rels in ds.qrels.values())  # score 0 is not relevant


@pytest.mark.parametrize(
    ("file", "row", "damage"),
    [
        ("corpus.jsonl", 3, lambda lines: lines[:2] + ["{not json"] + lines[3:]),
        ("corpus.jsonl", 2, lambda lines: lines[:1] + ['{"title": "no id", "text": "x"}'] + lines[2:]),
        ("queries.jsonl", 1, lambda lines: ['{"_id": "q0"}'] + lines[1:]),
        ("qrels/test.tsv", 3, lambda lines: lines[:2] + ["q0 1 1"] + lines[3:]),
        ("qrels/test.tsv", 2, lambda lines: lines[:1] + ["q0\t1\tyes"] + lines[2:]),
    ],
)
def test_a_bad_row_is_one_line_naming_file_and_row(tmp_path: Path, file: str, row: int, damage) -> None:
    folder = write_beir_folder(tmp_path / "beir")
    path = folder / file
    path.write_text("\n".join(damage(path.read_text().splitlines())) + "\n")
    with pytest.raises(BeirFormatError, match=rf"{file}: row {row}: expected"):
        load_beir(folder)


def test_a_judgement_for_a_missing_document_is_an_error(tmp_path: Path) -> None:
    folder = write_beir_folder(tmp_path / "beir")
    with (folder / "qrels" / "test.tsv").open("a") as f:
        f.write("q0\tno-such-doc\t1\n")
    with pytest.raises(BeirFormatError, match="corpus-id 'no-such-doc' is not in"):
        load_beir(folder)


def test_a_bad_folder_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_beir_folder(tmp_path / "beir")
    (folder / "corpus.jsonl").write_text('{"_id": "1", "text": "ok"}\n[1, 2]\n')
    assert run_cli("rag", pipeline.STEPS, ["data", "--data", f"beir:{folder}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corpus.jsonl: row 2: expected" in err


def test_beir_gets_its_own_artifact_folder(tmp_path: Path) -> None:
    cfg = DataConfig(data=f"beir:{tmp_path}")
    assert cfg.variant().startswith("data_beir_") and DataConfig().variant() == "small"


def _kb_reranker() -> None:
    """A small reranker where `mlsd rag train` would put the support KB's (what the BEIR run transfers)."""
    rng = np.random.default_rng(0)
    x = rng.random((400, len(FEATURES)))
    y = (x[:, 0] + 0.1 * rng.random(400) > 0.6).astype(int)
    kb = Artifacts("rag", "small")
    Reranker().fit(x, y).save(kb.path(RERANKER))
    AnswerConfig(refuse_below=0.3).save(kb.path(ANSWER_CONFIG))


@pytest.mark.slow
def test_all_data_beir_runs_index_train_eval(tmp_path: Path) -> None:
    folder = write_beir_folder(tmp_path / "beir")
    _kb_reranker()
    assert run_cli("rag", pipeline.STEPS, ["all", "--data", f"beir:{folder}"], pipeline.ALL_CONFIG) == 0
    art = Artifacts("rag", DataConfig(data=f"beir:{folder}").variant())
    table = json.loads(art.path(EVAL).read_text())["beir"]
    assert {"bm25", "dense", "hybrid (RRF, no training)", "maxsim (zero-shot MiniLM late interaction)",
            "rerank (LightGBM, transferred from the support KB)"} == set(table)  # fmt: skip
    for row in table.values():
        assert (
            row["queries"] == 4 and 0.0 <= row["ndcg@10"] <= 1.0 and row["recall@100"] == pytest.approx(1.0)
        )
    assert table["bm25"]["ndcg@10"] > 0.3  # the query words are in the relevant topic's documents only
    assert not Artifacts("rag", "small").exists("index/index.pkl")  # never the help center's index


@pytest.mark.slow
def test_bench_data_beir_load_tests_the_beir_index_with_its_queries(tmp_path: Path) -> None:
    """The data dir holds no help-center index, so a server that loaded MLSD_SCALE's folder would never be ready."""
    folder = write_beir_folder(tmp_path / "beir")
    _kb_reranker()
    out = tmp_path / "report"
    argv = ["bench", "--data", f"beir:{folder}", "--duration", "10", "--rate", "4", "--runs", "1", "--warmup", "0",
            "--floor-duration", "0", "--out", str(out)]  # fmt: skip
    code = run_cli("rag", pipeline.STEPS, argv)
    report = json.loads((out / "report.json").read_text())
    for route in ("ask", "search"):
        assert report["routes"][route]["requests"] >= 4 and report["routes"][route]["failures"] == 0
    assert code == report["exit_code"]
    extra = report["extra"]
    assert (extra["data"], extra["documents"], extra["queries"]) == (f"beir:{folder}", 60, 4)
    art = Artifacts("rag", DataConfig(data=f"beir:{folder}").variant())
    assert len(json.loads(art.path("bench_questions.json").read_text())) == 4  # the judged queries


def _candidate_table() -> CandidateTable:
    """Two queries; query 0 has windows of documents a, a, b, c (a relevant), query 1 of d, e (e relevant)."""
    X = np.zeros((6, len(TUNE_FEATURES)))
    return CandidateTable(X, np.array([1, 1, 0, 0, 0, 1]), np.array([0, 0, 0, 0, 1, 1]),
                          np.array(["a", "a", "b", "c", "d", "e"]), ["q0", "q1"], [{"a"}, {"e"}])  # fmt: skip


def test_a_document_ranks_at_its_best_window() -> None:
    table = _candidate_table()
    # query 0: b 0.9 > a's best window 0.8 > c; query 1: e first
    scores = np.array([0.1, 0.8, 0.9, 0.05, 0.2, 0.7])
    by_hand = (1 / np.log2(3)) / 1.0  # a at rank 2 of [b, a, c]
    assert doc_ndcg(table, scores, np.array([0])) == pytest.approx(by_hand)
    assert doc_ndcg(table, scores, np.array([1])) == pytest.approx(1.0)
    assert doc_ndcg(table, scores, np.array([0, 1])) == pytest.approx((by_hand + 1) / 2)


def test_rank_fusion_is_rrf_within_each_query() -> None:
    table = _candidate_table()
    s1, s2 = np.array([4.0, 3, 2, 1, 2, 1]), np.array([1.0, 2, 3, 4, 1, 2])
    fused = rank_fusion(table, s1, s2)
    want = [
        1 / 61 + 1 / 64,
        1 / 62 + 1 / 63,
        1 / 63 + 1 / 62,
        1 / 64 + 1 / 61,
        1 / 61 + 1 / 62,
        1 / 62 + 1 / 61,
    ]
    np.testing.assert_allclose(fused, want)


def test_tune_refuses_to_learn_from_the_test_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tuning on the test split"):
        TuneConfig(data=f"beir:{tmp_path}", train_split="test")
    with pytest.raises(ConfigError, match="needs --data"):
        TuneConfig()


@pytest.mark.slow
def test_tune_trains_in_domain_on_the_train_split_and_reads_test_once(tmp_path: Path) -> None:
    """The folder gets a train split (five phrasings a topic, other query ids than test's): `mlsd rag tune`
    prints a validation table and the test rows, and writes the in-domain model."""
    folder = write_beir_folder(tmp_path / "beir")
    phrasings = ("tell me about", "papers on", "evidence for", "studies of", "what is known on")
    lines, train = ["query-id\tcorpus-id\tscore"], []
    for t, text in enumerate(TOPICS.values()):
        for p, lead in enumerate(phrasings):
            train.append({"_id": f"t{t}-{p}", "text": f"{lead} {' '.join(text.split()[:4])}"})
            lines += [f"t{t}-{p}\t{t * 15 + j}\t1" for j in range(3, 6)]
    with (folder / "queries.jsonl").open("a") as f:
        f.writelines(json.dumps(q) + "\n" for q in train)
    (folder / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n")
    _kb_reranker()
    assert run_cli("rag", pipeline.STEPS, ["tune", "--data", f"beir:{folder}"]) == 0
    art = Artifacts("rag", DataConfig(data=f"beir:{folder}").variant())
    tables = json.loads(art.path(TUNE).read_text())
    assert art.exists(IN_DOMAIN_RERANKER)
    assert {r["queries"] for r in tables["test"].values()} == {4}
    assert "maxsim (zero-shot)" in tables["validation"] and any(
        k.startswith("in-domain") for k in tables["test"]
    )
    assert all(0.0 <= r["nDCG@10"] <= 1.0 for t in tables.values() for r in t.values())
