"""The README's "Try it" block: a serve command and a curl for every system, each body one its route accepts."""

from __future__ import annotations

import json
import re

from infra.config import REPO_ROOT
from systems.ctr.serve import PredictRequest
from systems.fraud_edge.serve import ScoreRequest
from systems.rag_search.serve import AskRequest
from systems.recsys_two_tower.serve import RecommendRequest

ROUTES = {
    "/score": ScoreRequest,
    "/predict": PredictRequest,
    "/ask": AskRequest,
    "/recommend": RecommendRequest,
}


def test_every_system_has_a_serve_command_and_a_curl_whose_body_its_route_accepts() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("## Try it", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    for system in ("fraud", "ctr", "rag", "recsys"):
        assert f"mlsd {system} serve" in block, system
    curls = re.findall(r"curl -s -X POST http://127\.0\.0\.1:8000(/\w+) [^\n]*\\\n\s*-d '([^']+)'", block)
    assert sorted(route for route, _ in curls) == sorted(ROUTES)
    for route, body in curls:
        ROUTES[route].model_validate(json.loads(body))
    assert "http://127.0.0.1:8000/" in block  # where the rag page is
