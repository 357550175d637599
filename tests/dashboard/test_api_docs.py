"""/docs renders offline: Swagger UI from the app's own origin, the operations, Authorize.

The browser gets no network but loopback: every request to another host is aborted (and
fails the test), so a page that still needed a CDN would render blank here.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Route, expect

from tests.dashboard.conftest import SCREENSHOTS

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def test_docs_render_offline_with_authorize(browser_page, make_tenant) -> None:  # type: ignore[no-untyped-def]
    page = browser_page.page
    refused: list[str] = []

    def loopback_only(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in LOOPBACK:
            refused.append(route.request.url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.context.route("**/*", loopback_only)
    browser_page.open("/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() >= 15
    expect(page.locator(".opblock-summary-path", has_text="/v1/jobs").first).to_be_visible()
    expect(page.locator(".opblock-tag", has_text="jobs").first).to_be_visible()
    authorize = page.locator("button.authorize").first
    expect(authorize).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # The viewport as a user first sees it (docs/img/docs-offline.png is a copy of this one).
    page.screenshot(path=str(SCREENSHOTS / "docs-offline.png"))
    authorize.click()
    dialog = page.locator(".modal-ux")
    expect(dialog).to_contain_text("bearerAuth")
    dialog.locator("input").first.fill(make_tenant().key)
    dialog.locator("button[type=submit]").click()
    # Swagger UI took the key: the scheme now offers Logout.
    expect(dialog.locator("button", has_text="Logout")).to_be_visible()
    browser_page.screenshot("api-docs")
    assert not refused, f"/docs asked for hosts beyond loopback: {refused}"
