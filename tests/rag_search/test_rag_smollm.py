"""SmolLM2-135M as the generator (slow: the GGUF is dequantised on load). Whatever it writes, the answer
that leaves the pipeline is either a refusal or sentences the cited passages support."""

from __future__ import annotations

import pytest

from systems.rag_search.generate import Passage, SmolLMGenerator


@pytest.mark.slow
def test_smollm_output_is_verified(world) -> None:
    world.pipeline.generators["smollm"] = SmolLMGenerator(max_new_tokens=48)
    try:
        res = world.pipeline.ask("what does error E107 mean", generator="smollm")
    finally:
        del world.pipeline.generators["smollm"]
    assert res["raw"].strip()  # the model produced text
    assert res["refused"] or all(s["supported"] and s["citations"] for s in res["sentences"])
    for s in res["sentences"]:
        assert world.pipeline.judge.supports(
            s["text"], [p for p in _passages(world, res) if p.n in s["citations"]]
        )


def _passages(world, res):  # noqa: ANN001, ANN202
    ids = {c.chunk_id: i for i, c in world.index.chunks.items()}
    return [
        Passage(
            p["n"],
            world.index.chunks[ids[p["chunk_id"]]],
            p["score"],
            world.index.sent_emb[ids[p["chunk_id"]]],
        )
        for p in res["passages"]
    ]
