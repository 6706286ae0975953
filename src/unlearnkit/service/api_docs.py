"""The API documentation pages (Swagger UI, ReDoc) served from files installed with the package.

FastAPI's default pages load their scripts from a CDN, so ``/docs`` is blank on a machine with
no internet access, which is where a deletion service often runs. The ``fastapi-offline``
package ships the same scripts; this module mounts them and serves both pages from them.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS_PATH = "/docs-assets"


def mount_api_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` with scripts from this machine (create the app with
    ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not registered too)."""
    static = files("fastapi_offline") / "static"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(static)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title}: API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title}: API",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
