"""Schema fuzzing of the recsys API (POST /recommend and the ops routes) from its OpenAPI document."""

from __future__ import annotations

import pytest

from tests.campaign.fuzz import fuzz_api, schema_of, serve_ready, session_env

pytestmark = pytest.mark.slow


def test_recsys_api_never_5xx(recsys_world, monkeypatch) -> None:  # noqa: ANN001
    from systems.recsys_two_tower.serve import build_app  # imported here: the world fixture builds first

    with session_env(recsys_world, MLSD_ONLINE_STORE=None, MLFLOW_TRACKING_URI=None):
        app = build_app("small")
        schema = schema_of(app)
        serve_ready(app)
    # the online store is opened at load; requests read no settings, but keep the world's for safety
    monkeypatch.setenv("MLSD_DATA_DIR", str(recsys_world))
    print(fuzz_api("recsys", schema))
