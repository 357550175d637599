"""The interactive API reference, self-served: /docs (Swagger UI) and /redoc work offline.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so behind a firewall /docs is
blank. The assets come from the `fastapi-offline` wheel instead (Swagger UI 5, which
renders OpenAPI 3.1), served under /docs/static. The OpenAPI document declares the API's
bearer key, so Swagger UI shows Authorize and sends `Authorization: Bearer <key>`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.docs.links import with_job_links

STATIC_PATH = "/docs/static"
SCHEME = "bearerAuth"
# Paths that take no API key: the signed download link carries its own token.
_PUBLIC_PREFIXES = ("/v1/downloads/",)


def _assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /docs/oauth2-redirect, /redoc and their assets; declare bearer auth.
    The app must be built with docs_url=None and redoc_url=None."""
    title = f"{app.title} - API reference"
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(STATIC_PATH, StaticFiles(directory=_assets_dir()), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PATH}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{STATIC_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_PATH}/favicon.png",
            with_google_fonts=False,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_job_links(
                with_bearer_auth(
                    get_openapi(
                        title=app.title,
                        version=app.version,
                        description=app.description,
                        routes=app.routes,
                    )
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_bearer_auth(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the API key as an HTTP bearer scheme on every keyed /v1 operation."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `clo admin create-key`.",
    }
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/v1/") or path.startswith(_PUBLIC_PREFIXES):
            continue
        for operation in operations.values():
            if isinstance(operation, dict):
                operation["security"] = [{SCHEME: []}]
    return schema
