"""`/docs` (Swagger UI) and `/redoc`, served from assets vendored in the repository, so they
render without internet. The versions and licences are under `static/vendor/` (see
`docs/api-docs.md` for how to update them)."""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="GrowthOS Coupon Engine: API",
        swagger_js_url=f"{STATIC_URL}/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_URL}/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="data:,",
    )


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="GrowthOS Coupon Engine: API",
        redoc_js_url=f"{STATIC_URL}/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url="data:,",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    """Mount the vendored assets and the two documentation pages (the app is built with
    `docs_url=None, redoc_url=None` so FastAPI's CDN-loading pages are not served)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
