"""Ingestion and retrieval: chunking by heading with overlap, incremental add/change/delete, each retriever."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from systems.rag_search.documents import Article, Section
from systems.rag_search.index import ChunkingConfig, SearchIndex, chunk_article, sentence_spans
from systems.rag_search.retrieve import Searcher


def test_chunking_follows_headings_and_overlaps_long_sections() -> None:
    long_body = " ".join(f"Sentence number {i} about sync." for i in range(60))  # 300 words
    a = Article(
        "guide",
        3,
        "Sync guide",
        "howto",
        [Section("Short one", "Just this."), Section("Long one", long_body)],
    )
    chunks = chunk_article(a, ChunkingConfig(max_words=120, overlap_words=30))
    assert chunks[0].section == "Short one" and chunks[0].text == "Just this."
    windows = [c for c in chunks if c.section == "Long one"]
    assert len(windows) == 3
    assert windows[0].text.split()[-30:] == windows[1].text.split()[:30]  # the overlap
    assert {c.key for c in windows} == {"guide#long-one"}
    assert all(c.version == 3 and c.anchor.endswith("/guide#long-one") for c in windows)
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def _article(aid: str, version: int, fact: str) -> Article:
    return Article(
        aid,
        version,
        f"Article {aid}",
        "howto",
        [Section("Answer", fact), Section("Other", "Unrelated text about themes.")],
    )


def test_incremental_add_change_delete(encoder) -> None:
    index = SearchIndex(encoder.dim)
    index.add_articles([_article("alpha", 1, "The zebra export limit is 7 files."),
                        _article("beta", 1, "Quokka reminders repeat every 3 days.")], encoder)  # fmt: skip
    searcher = Searcher(index, encoder)
    assert index.chunks[searcher.search("zebra export limit", 1, "bm25")[0].idx].article_id == "alpha"
    before = dict(index.chunks)

    # change: a new version of alpha embeds only alpha's new chunks; v1 stays, archived
    n = index.add_articles([_article("alpha", 2, "The zebra export limit is 9 files.")], encoder)
    assert n == 2 and len(index) == 6
    assert all(index.chunks[i] is c for i, c in before.items())  # beta untouched, not re-embedded
    status = {(c.article_id, c.version): c.status for c in index.chunks.values()}
    assert status == {("alpha", 1): "archived", ("beta", 1): "current", ("alpha", 2): "current"}

    # delete: no retriever returns any alpha chunk again
    assert index.delete_article("alpha") == 4
    for mode in ("bm25", "dense", "hybrid"):
        hits = searcher.search("zebra export limit", 10, mode)
        assert all(index.chunks[h.idx].article_id == "beta" for h in hits), mode
    assert index.faiss.ntotal == len(index) == 2


def test_index_save_and_load(tmp_path, encoder) -> None:
    index = SearchIndex(encoder.dim)
    index.add_articles([_article("alpha", 1, "The zebra export limit is 7 files.")], encoder)
    index.save(tmp_path / "idx")
    back = SearchIndex.load(tmp_path / "idx")
    q = encoder.encode(["zebra export"])[0][0]
    a, b = back.search_dense(q, 2), index.search_dense(q, 2)
    assert [i for i, _ in a] == [i for i, _ in b]
    assert [s for _, s in a] == pytest.approx([s for _, s in b])
    assert [c.chunk_id for c in back.chunks.values()] == [c.chunk_id for c in index.chunks.values()]


@pytest.mark.parametrize(
    ("mode", "question", "expected"),
    [
        ("bm25", "what does error E105 mean", "sync-error-e105#what-it-means"),  # exact code: lexical wins
        ("dense", "I forgot my login secret on my Android phone", "reset-your-password-android#steps"),
        ("hybrid", "how do I fix E112", "sync-error-e112#how-to-fix-it"),
        ("maxsim", "how do I fix E112", "sync-error-e112#how-to-fix-it"),
        ("rerank", "how much is the Plus plan", "plan-plus#price"),
    ],
)
def test_each_retriever_finds_the_section(world, mode, question, expected) -> None:
    hits = world.pipeline.searcher.search(question, 5, mode)
    keys = [world.index.chunks[h.idx].key for h in hits]
    assert expected in keys, keys
    if mode == "maxsim":  # the zero-shot reranker orders the hybrid candidates by late interaction alone
        assert [h.score for h in hits] == sorted((h.maxsim for h in hits), reverse=True)


def test_reranker_prefers_the_current_version_over_an_archived_one(world) -> None:
    hits = world.pipeline.searcher.search("how much is the Plus plan per month", 3, "rerank")
    top = world.index.chunks[hits[0].idx]
    assert (top.key, top.status) == ("plan-plus#price", "current")


def test_sentences_in_context_come_from_the_chunks_one_forward_pass(encoder) -> None:
    """encode_with_sentences against the reference: the chunk vectors and tokens equal encode()'s (batching
    shortest first changes nothing), each sentence is the mean of the chunk's hidden states over its tokens,
    and a sentence cut off by max_length is encoded alone."""
    body = " ".join(f"Sentence {i} says the export of notes runs nightly." for i in range(30))  # 270 words
    articles = [_article("a", 1, "Reset your password from the login page."), Article("b", 1, "Exports", "howto", [Section("Long", body)])]  # fmt: skip
    chunks = [c for a in articles for c in chunk_article(a)]
    texts, spans = [c.indexed_text for c in chunks], [sentence_spans(c) for c in chunks]
    for text, chunk, sp in zip(texts, chunks, spans, strict=True):
        assert [text[s0:s1] for s0, s1 in sp] == chunk.sentences
    vecs, toks, sents = encoder.encode_with_sentences(texts, spans, max_length=256, batch_size=2)
    ref_vecs, ref_toks = encoder.encode(texts, max_length=256, batch_size=32, tokens=True)
    np.testing.assert_allclose(vecs, ref_vecs, atol=1e-5)
    assert all(np.allclose(a, b, atol=2e-3) for a, b in zip(toks, ref_toks, strict=True))
    s0, s1 = spans[-1][1]  # the reference: Hugging Face by hand on one chunk, one sentence
    batch = encoder.tokenizer([texts[-1]], return_offsets_mapping=True, return_tensors="pt")
    offsets = batch.pop("offset_mapping")[0]
    with torch.inference_mode():
        hidden = encoder.model(**batch).last_hidden_state[0]  # (L, D)
    inside = [t for t, (a, b) in enumerate(offsets.tolist()) if b > a and a >= s0 and b <= s1]
    expected = torch.nn.functional.normalize(hidden[inside].mean(0), dim=-1).numpy()
    np.testing.assert_allclose(sents[-1][1], expected, atol=1e-5)
    assert [len(s) for s in sents] == [len(c.sentences) for c in chunks]
    _, _, cut = encoder.encode_with_sentences(texts[-1:], spans[-1:], max_length=16)  # only ~14 tokens fit
    alone, _ = encoder.encode([chunks[-1].sentences[-1]], max_length=96)
    np.testing.assert_allclose(cut[0][-1], alone[0], atol=1e-5)


def test_an_index_with_sentences_in_context_answers_like_the_other(encoder) -> None:
    """Same chunks, same dense vectors; the in-context sentence vectors still pick the sentence that answers."""
    articles = [_article("a", 1, "Reset your password from the login page. Themes change the colours.")]
    alone, in_context = SearchIndex(), SearchIndex()
    alone.add_articles(articles, encoder)
    in_context.add_articles(articles, encoder, sentences_in_context=True)
    assert [c.chunk_id for c in alone.chunks.values()] == [c.chunk_id for c in in_context.chunks.values()]
    i = next(i for i, c in in_context.chunks.items() if c.section == "Answer")
    q, _ = encoder.encode(["how do I reset my password"])
    assert in_context.sent_emb[i].shape == alone.sent_emb[i].shape == (2, encoder.dim)
    assert int(np.argmax(in_context.sent_emb[i] @ q[0])) == int(np.argmax(alone.sent_emb[i] @ q[0])) == 0
