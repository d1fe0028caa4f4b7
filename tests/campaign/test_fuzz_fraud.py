"""Schema fuzzing of the fraud API (POST /score and the ops routes) from its OpenAPI document, in-process."""

from __future__ import annotations

import pytest

from tests.campaign.fuzz import fuzz_api, schema_of, serve_ready, session_env

pytestmark = pytest.mark.slow


def test_fraud_api_never_5xx(fraud_world) -> None:  # noqa: ANN001
    from systems.fraud_edge.serve import build_app  # imported here: the world fixture builds first

    data_dir, art = fraud_world
    with session_env(data_dir):
        app = build_app(art, store="memory")
        schema = schema_of(app)
        serve_ready(app)
    print(fuzz_api("fraud", schema))
