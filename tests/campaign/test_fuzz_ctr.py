"""Schema fuzzing of the ctr API (POST /predict and the ops routes) from its OpenAPI document, in-process."""

from __future__ import annotations

import pytest

from tests.campaign.fuzz import fuzz_api, schema_of, serve_ready, session_env

pytestmark = pytest.mark.slow


def test_ctr_api_never_5xx(ctr_world) -> None:  # noqa: ANN001
    from systems.ctr.config import CtrSettings  # imported here: the world fixture builds first
    from systems.ctr.serve import build_app

    data_dir, art = ctr_world
    with session_env(data_dir, MLSD_ONLINE_STORE=None, MLFLOW_TRACKING_URI=None):
        app = build_app(CtrSettings(), art)
        schema = schema_of(app)
        serve_ready(app)
    print(fuzz_api("ctr", schema))
