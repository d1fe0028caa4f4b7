"""MiniLM through ONNX Runtime against PyTorch: fp32 gives the same vectors (1e-5), int8 the same directions
(cosine >= 0.99); an index remembers which encoder made it and the pipeline embeds queries with that one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infra.artifacts import Artifacts
from infra.config import get_settings
from systems.rag_search import pipeline
from systems.rag_search.answer import load_encoder
from systems.rag_search.config import ENCODER_FP32, ENCODER_INT8, EncoderConfig, IndexConfig
from systems.rag_search.documents import Article, Section
from systems.rag_search.index import SearchIndex
from systems.rag_search.model import MiniLM, export_onnx

TEXTS = [
    "how do I fix E117 on desktop?",
    "Refunds are issued within 14 days of cancellation. Contact support if it has not arrived.",
    "Alterations of the architecture of cerebral white matter in the developing human brain can affect "
    "cortical development and result in functional disabilities. A line scan diffusion-weighted magnetic "
    "resonance imaging sequence was applied to measure the apparent diffusion coefficient.",
    "Can I get my money back after cancelling?",
]  # questions and passages: a one-word text is where int8 drifts most (cosine ~0.98 for "vague")


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("encoder")
    parity = export_onnx(out / "minilm-fp32.onnx", out / "minilm-int8.onnx")
    assert parity["fp32 max |hidden - torch|"] < 1e-4 and parity["int8 min cosine with torch"] >= 0.99, parity
    return {"onnx": out / "minilm-fp32.onnx", "onnx-int8": out / "minilm-int8.onnx"}


def test_onnx_fp32_embeddings_equal_pytorch(encoder: MiniLM, onnx_files) -> None:
    fp32 = MiniLM(threads=1, onnx=onnx_files["onnx"], name="onnx")
    want, want_tokens = encoder.encode(TEXTS, tokens=True)
    got, got_tokens = fp32.encode(TEXTS, tokens=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    for a, b in zip(got_tokens, want_tokens, strict=True):  # float16 storage: compare at its precision
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)
    spans = [[(0, len(t))] for t in TEXTS]  # the one-pass path (BEIR indexing) too
    got_vecs, _, got_sents = fp32.encode_with_sentences(TEXTS, spans, batch_size=3)
    want_vecs, _, want_sents = encoder.encode_with_sentences(TEXTS, spans, batch_size=3)
    np.testing.assert_allclose(got_vecs, want_vecs, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(got_sents), np.concatenate(want_sents), atol=1e-5)


def test_onnx_int8_embeddings_point_the_same_way(encoder: MiniLM, onnx_files) -> None:
    int8 = MiniLM(threads=1, onnx=onnx_files["onnx-int8"], name="onnx-int8")
    want, _ = encoder.encode(TEXTS)
    got, _ = int8.encode(TEXTS)
    cosine = (got * want).sum(1)
    assert cosine.min() >= 0.99, cosine
    assert not np.allclose(got, want, atol=1e-5)  # it is the quantised model, not the fp32 one


def test_the_index_remembers_its_encoder(tmp_path: Path) -> None:
    SearchIndex(384, "onnx-int8").save(tmp_path / "new")
    assert SearchIndex.load(tmp_path / "new").encoder == "onnx-int8"
    SearchIndex(384).save(tmp_path / "old")  # an index written before the field: PyTorch made it
    manifest = tmp_path / "old" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"encoder": "torch", ', ""))
    assert SearchIndex.load(tmp_path / "old").encoder == "torch"


def test_the_index_step_embeds_with_the_encoder_it_is_given(
    onnx_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`index --encoder onnx-int8` over the files `mlsd rag encoder` writes: the index records onnx-int8, a chunk's
    stored vector is the int8 file's for its text, and load_encoder (what RagPipeline.load calls with the index's
    encoder) runs that file. int8 activations are quantised per batch (dynamic), so a text's vector moves a
    little with its batch-mates: the same direction, not the same digits."""
    monkeypatch.setenv("MLSD_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    art = Artifacts("rag", "small")
    for name, file in ((ENCODER_FP32, onnx_files["onnx"]), (ENCODER_INT8, onnx_files["onnx-int8"])):
        art.path(name).write_bytes(file.read_bytes())  # what `mlsd rag encoder` writes (exported above)
    folder = tmp_path / "kb"
    folder.mkdir()
    for i, text in enumerate(TEXTS):
        article = Article(f"a{i}", 1, f"Title {i}", "howto", [Section("Steps", text)])
        (folder / f"a{i}.md").write_text(article.to_markdown())
    pipeline.index(IndexConfig(scale="small", folder=folder, encoder="onnx-int8"), art)
    index = SearchIndex.load(art.path("index"))
    assert index.encoder == "onnx-int8" and len(index) == len(TEXTS)
    int8 = load_encoder(art, index.encoder, threads=1)
    assert int8.session is not None and int8.name == "onnx-int8"
    ids = sorted(index.chunks)
    stored = np.stack([index.faiss.reconstruct(i) for i in ids])
    same_batch, _ = int8.encode([index.chunks[i].indexed_text for i in ids], max_length=256, batch_size=32)
    alone = np.concatenate([int8.encode([index.chunks[i].indexed_text], max_length=256)[0] for i in ids])
    assert (stored * same_batch).sum(1).min() >= 0.999
    assert (stored * alone).sum(1).min() >= 0.98  # measured 0.989: the batch moves int8 as much as torch does
    get_settings.cache_clear()


def test_encoder_step_makes_both_files_the_index_step_needs() -> None:
    step = {s.name: s for s in pipeline.STEPS}
    assert set(step["encoder"].makes) == {ENCODER_FP32, ENCODER_INT8}
    assert set(step["encoder"].makes) <= set(step["index"].needs)
    assert EncoderConfig(scale="small").variant() == "small"
