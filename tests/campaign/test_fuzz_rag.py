"""Schema fuzzing of the RAG API (POST /ask, POST /search and the ops routes) from its OpenAPI document."""

from __future__ import annotations

import pytest

from tests.campaign.fuzz import fuzz_api, schema_of, serve_ready

pytestmark = pytest.mark.slow


def test_rag_api_never_5xx(rag_art) -> None:  # noqa: ANN001
    from systems.rag_search.answer import RagPipeline  # imported here: the world fixture builds first
    from systems.rag_search.serve import build_app

    app = build_app(RagPipeline.load(rag_art, threads=1))
    schema = schema_of(app)
    serve_ready(app)
    print(fuzz_api("rag", schema))
