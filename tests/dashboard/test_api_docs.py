"""/docs renders offline: Swagger UI from the app's own origin, the operations, Authorize."""

from __future__ import annotations

from playwright.sync_api import expect


def test_docs_render_offline_with_authorize(browser_page, make_tenant) -> None:  # type: ignore[no-untyped-def]
    page = browser_page.page
    browser_page.open("/docs")
    # The fixture fails the test if any request left the app's origin (no CDN).
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() >= 15
    expect(page.locator(".opblock-summary-path", has_text="/v1/jobs").first).to_be_visible()
    authorize = page.locator("button.authorize").first
    expect(authorize).to_be_visible()
    authorize.click()
    dialog = page.locator(".modal-ux")
    expect(dialog).to_contain_text("bearerAuth")
    dialog.locator("input").first.fill(make_tenant().key)
    dialog.locator("button[type=submit]").click()
    # Swagger UI took the key: the scheme now offers Logout.
    expect(dialog.locator("button", has_text="Logout")).to_be_visible()
    browser_page.screenshot("api-docs")
