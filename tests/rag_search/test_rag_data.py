"""Data tests: the generated KB and eval set have the shape the issue asks for, and the loaders read them back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from systems.rag_search.data import INJECTION_TEXT, generate_kb, load_questions, write_kb, write_tiny_beir
from systems.rag_search.documents import load_beir, load_folder, parse_html


def test_kb_size_versions_and_eval_set() -> None:
    kb = generate_kb(0)
    assert len(kb.current()) >= 150
    assert {a.category for a in kb.current()} >= {
        "billing",
        "accounts",
        "troubleshooting",
        "policies",
        "howto",
    }
    archived = [a for a in kb.articles if a.status == "archived"]
    assert archived and all(
        any(c.article_id == a.article_id and c.version > a.version for c in kb.current()) for a in archived
    )
    assert len(kb.questions) >= 300
    unanswerable = [q for q in kb.questions if not q.answerable]
    assert len(unanswerable) / len(kb.questions) >= 0.10
    assert {q.kind for q in kb.questions} >= {"direct", "paraphrase", "typo", "multi", "unanswerable"}
    assert any(INJECTION_TEXT in s.body for a in kb.articles for s in a.sections)


def test_gold_ids_point_at_current_sections_and_splits_do_not_share_articles() -> None:
    kb = generate_kb(0)
    keys = {f"{a.article_id}#{s.slug}" for a in kb.current() for s in a.sections}
    for q in kb.questions:
        assert set(q.gold) <= keys, q
    single = [q for q in kb.questions if len(q.gold) == 1]
    tune = {q.gold[0].split("#")[0] for q in single if q.split == "tune"}
    held = {q.gold[0].split("#")[0] for q in single if q.split == "heldout"}
    assert tune and held and not (tune & held)
    assert sum(q.split == "heldout" and not q.answerable for q in kb.questions) >= 10


# sha256 of the folders the generator wrote before its facts moved to facts/*.yaml (seed 0), from the old code
# (`git show main:systems/rag_search/data.py`) and from its `mlsd rag data` artifacts: the move changed no byte.
OLD_KB_SHA256 = (
    "5fbdf659861875938df4a7fba9676cd0a1620dd5f318d6e82b87d7b9dc94c361"  # kb/: articles/*.md, questions.jsonl
)
OLD_TINY_BEIR_SHA256 = (
    "8cb749a74ba7b8b74db8083206c481fa5798c01019cf108614d7629408512d5b"  # write_tiny_beir(seed=0)
)


def folder_sha256(folder: Path) -> str:
    """One hash over every file's relative path and bytes, in path order."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def test_kb_is_byte_identical_to_the_old_generator(tmp_path) -> None:
    write_kb(generate_kb(0), tmp_path / "kb")
    assert folder_sha256(tmp_path / "kb") == OLD_KB_SHA256
    write_tiny_beir(tmp_path / "beir", 0)
    assert folder_sha256(tmp_path / "beir") == OLD_TINY_BEIR_SHA256


def test_generation_is_deterministic() -> None:
    a, b = generate_kb(0), generate_kb(0)
    assert [q.text for q in a.questions] == [q.text for q in b.questions]
    assert a.articles[5].to_markdown() == b.articles[5].to_markdown()
    assert [q.text for q in generate_kb(1).questions] != [q.text for q in a.questions]


def test_markdown_folder_round_trip(tmp_path) -> None:
    kb = generate_kb(0)
    folder = write_kb(kb, tmp_path)
    back = {(a.article_id, a.version): a for a in load_folder(folder)}
    assert len(back) == len(kb.articles)
    for a in kb.articles[:20]:
        b = back[(a.article_id, a.version)]
        assert (b.title, b.status, [s.title for s in b.sections], [s.body for s in b.sections]) == (
            a.title, a.status, [s.title for s in a.sections], [s.body for s in a.sections])  # fmt: skip
    assert len(load_questions(tmp_path / "questions.jsonl")) == len(kb.questions)


def test_html_loader_splits_by_heading() -> None:
    html = "<html><head><title>x</title></head><body><h1>Billing FAQ</h1><p>Intro text.</p><h2>Refunds</h2><p>Refunds take 5 days.</p><h2>Invoices</h2><p>Sent monthly.</p></body></html>"
    a = parse_html(html, "faq")
    assert a.title == "Billing FAQ"
    assert [s.title for s in a.sections] == ["Overview", "Refunds", "Invoices"]
    assert a.sections[1].body == "Refunds take 5 days."


def test_beir_loader_on_a_tiny_generated_folder(tmp_path) -> None:
    folder = write_tiny_beir(tmp_path / "beir")
    ds = load_beir(folder)
    assert len(ds.corpus) > 300 and len(ds.queries) == 60
    assert all(set(rels) <= set(ds.corpus) for rels in ds.qrels.values())
    first = json.loads((folder / "corpus.jsonl").read_text().splitlines()[0])
    assert ds.corpus[first["_id"]] == (first["title"], first["text"])
