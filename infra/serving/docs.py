"""/docs (Swagger UI) and /redoc (ReDoc) that work offline: their scripts and styles are served by the app itself.

FastAPI's own pages load them from a CDN, so on a machine without internet /docs is blank. The files under
static/ are the projects' own builds, vendored with their licences (static/README.md says which versions and how
to update them); the app serves them under /docs-assets/.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS = "/docs-assets"


def package_version() -> str:
    """The installed mlsd's version (pyproject.toml's), the version the OpenAPI document states."""
    try:
        return version("mlsd")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def add_offline_docs(app: FastAPI) -> None:
    """/docs, its OAuth2 redirect page, and /redoc, on the vendored assets (the app was made with
    docs_url=None, redoc_url=None, so FastAPI's CDN pages are not there)."""
    app.mount(ASSETS, StaticFiles(directory=STATIC_DIR), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(req: Request) -> HTMLResponse:
        root = req.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + oauth2_redirect,
            swagger_js_url=f"{root}{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # its badge would call validator.swagger.io
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(req: Request) -> HTMLResponse:
        root = req.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,  # fonts.googleapis.com is not reachable offline; the system fonts serve
        )
