"""What the dashboard serves, checked over HTTP: pages, assets, headers, no outside hosts."""

from __future__ import annotations

import re

from api.dashboard.router import STATIC_DIR, TEMPLATES_DIR

# The only absolute URL allowed in the assets: the SVG namespace, an identifier never fetched.
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}
URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'`)]*""")


def test_pages_are_served_with_a_self_only_content_policy(api) -> None:  # type: ignore[no-untyped-def]
    for path, title in (
        ("/dashboard", "Jobs"),
        ("/dashboard/jobs/0b7c1a52-0000-4000-8000-000000000000", "Job"),
        ("/dashboard/compare?ids=a,b", "Compare jobs"),
    ):
        response = api.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert f"<title>{title} · CLO dashboard</title>" in response.text
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        assert "default-src 'none'" in policy
    assert api.get("/dashboard/", follow_redirects=False).headers["location"] == "/dashboard"


def test_every_referenced_asset_is_served_and_nothing_else(api) -> None:  # type: ignore[no-untyped-def]
    pages = "".join(api.get(p).text for p in ("/dashboard", "/dashboard/compare"))
    modules = "".join(p.read_text() for p in STATIC_DIR.glob("*.js"))
    referenced = set(re.findall(r"/dashboard/static/([\w.-]+)", pages))
    referenced |= set(re.findall(r"""from "\./([\w.-]+)\"""", modules))
    referenced |= {"job.js"}  # the job page's script, named from the template variable
    for name in referenced:
        response = api.get(f"/dashboard/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["x-content-type-options"] == "nosniff"
    assert api.get("/dashboard/static/dashboard.css").headers["content-type"].startswith("text/css")
    assert "javascript" in api.get("/dashboard/static/api.js").headers["content-type"]
    for bad in ("missing.js", "..%2Frouter.py", "layout.html", "__init__.py"):
        assert api.get(f"/dashboard/static/{bad}").status_code == 404, bad


def test_assets_name_no_outside_host() -> None:
    files = [*STATIC_DIR.iterdir(), *TEMPLATES_DIR.iterdir()]
    assert len(files) >= 10
    for path in files:
        found = set(URL.findall(path.read_text(encoding="utf-8"))) - ALLOWED_URLS
        assert not found, f"{path.name} refers to outside hosts: {found}"
