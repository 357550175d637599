"""The web dashboard: HTML pages and their own scripts/styles, all served by this app.

The pages hold no data: their scripts call the /v1 API with the API key the user pasted
(kept in sessionStorage), so the dashboard has exactly the API's auth and tenant scoping.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from string import Template

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from api.errors import NotFound

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"

# Served files are looked up in this table, never by joining a path from the URL.
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# Everything comes from this origin; no inline script, no third-party host.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

PAGES = {
    "jobs": "Jobs",
    "job": "Job",
    "compare": "Compare jobs",
}

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@lru_cache(maxsize=8)
def render_page(page: str) -> str:
    """The layout with one page's body; pages are static, so each is rendered once."""
    layout = Template((TEMPLATES_DIR / "layout.html").read_text(encoding="utf-8"))
    body = (TEMPLATES_DIR / f"{page}.html").read_text(encoding="utf-8")
    return layout.substitute(title=PAGES[page], page=page, body=body)


def _page(page: str) -> HTMLResponse:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return HTMLResponse(render_page(page), headers=headers)


@lru_cache(maxsize=1)
def static_files() -> dict[str, Path]:
    """name -> path of every servable asset (the folder's direct children of known types)."""
    return {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in STATIC_TYPES}


@router.get("", response_class=HTMLResponse)
def jobs_page() -> HTMLResponse:
    return _page("jobs")


@router.get("/", response_class=RedirectResponse)
def dashboard_slash() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=308)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str) -> HTMLResponse:
    # The script reads the id from the URL and asks the API; a wrong id shows "not found" there.
    return _page("job")


@router.get("/compare", response_class=HTMLResponse)
def compare_page() -> HTMLResponse:
    return _page("compare")


@router.get("/static/{name}", response_class=FileResponse)
def static_asset(name: str) -> FileResponse:
    path = static_files().get(name)
    if path is None:
        raise NotFound(f"no dashboard asset {name!r}", code="asset_not_found")
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers=headers)
