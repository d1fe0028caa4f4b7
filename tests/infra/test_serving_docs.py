"""/docs and /redoc work offline (the app serves their assets, licences beside them); every request body of every
system has an example; the API's version is the package's."""

from __future__ import annotations

import importlib
import re
from importlib.metadata import version

import pytest
from fastapi.testclient import TestClient

from infra.serving import create_app
from infra.serving.docs import STATIC_DIR
from systems.ctr import realdata as ctr_realdata
from systems.fraud_edge import realdata as fraud_realdata


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app("demo", load_in_background=False))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_app_itself(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assert urls and not [u for u in urls if "//" in u], urls  # nothing from a CDN or a font service
    assert "openapi.json" in html.text
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, url


def test_vendored_assets_keep_their_licences() -> None:
    for folder, licence in (("swagger-ui", "Apache License"), ("redoc", "MIT License")):
        assert licence in (STATIC_DIR / folder / "LICENSE").read_text()
    assert "5.35.0" in (STATIC_DIR / "README.md").read_text()


def test_the_api_version_is_the_packages(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["info"]["version"] == version("mlsd")


def _request_schemas(app) -> dict[str, dict]:  # noqa: ANN001
    doc = app.openapi()
    components = doc.get("components", {}).get("schemas", {})
    found = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is None:
                continue
            ref = body.get("$ref", "")
            found[f"{method.upper()} {path}"] = components.get(ref.rsplit("/", 1)[-1], body)
    return found


@pytest.mark.parametrize("module", ["ctr", "fraud_edge", "rag_search", "recsys_two_tower"])
def test_every_request_body_has_an_example(module: str) -> None:
    app = importlib.import_module(f"systems.{module}.serve").build_app()
    schemas = _request_schemas(app)
    assert schemas, module
    for route, schema in schemas.items():
        assert schema.get("examples"), f"{module} {route} has no example"


def test_the_real_data_request_bodies_have_examples() -> None:
    for model in (ctr_realdata.RowsRequest, fraud_realdata.RowRequest):
        (example,) = model.model_json_schema()["examples"]
        model.model_validate(example)  # and it is a valid request
