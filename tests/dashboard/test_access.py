"""Keys and tenants in the browser: no key, a bad key, and another tenant's key."""

from __future__ import annotations

from playwright.sync_api import expect


def test_no_key_then_bad_key_then_good_key(browser_page, make_tenant, submit) -> None:  # type: ignore[no-untyped-def]
    tenant = make_tenant()
    job = submit(tenant)
    page = browser_page.page
    browser_page.open("/dashboard")
    expect(page.locator("#needs-key")).to_be_visible()
    expect(page.locator("#page-content")).to_be_hidden()
    expect(page.locator("label[for=api-key]")).to_have_text("API key")

    page.click("#key-form button[type=submit]")  # empty: the browser asks for a value
    assert page.locator("#api-key").evaluate("i => i.validity.valueMissing") is True

    page.fill("#api-key", tenant.key + "wrong")
    page.press("#api-key", "Enter")
    expect(page.locator("#api-key-error")).to_contain_text("did not accept this key")
    expect(page.locator("#api-key-error")).to_contain_text("invalid or revoked API key")
    expect(page.locator("#page-content")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('clo.apiKey')") is None
    browser_page.screenshot("bad-key")

    browser_page.sign_in(tenant.key)
    expect(page.locator(f'tr[data-job-id="{job}"]')).to_be_visible()
    # The key lives in this tab's session: other pages use it without asking again.
    browser_page.open(f"/dashboard/jobs/{job}")
    expect(page.locator("#job-id")).to_have_text(job)
    expect(page.locator("#key-form")).to_have_count(0)
    page.click("#forget-key")
    expect(page.locator("#key-form")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('clo.apiKey')") is None


def test_another_tenants_key_sees_none_of_the_jobs(  # type: ignore[no-untyped-def]
    browser_page, make_tenant, submit, finished_job
) -> None:
    owner, other = make_tenant(), make_tenant()
    running = submit(owner)
    done, _ = finished_job(owner)

    page = browser_page.page
    browser_page.open("/dashboard")
    browser_page.sign_in(other.key)
    expect(page.locator(".empty-row")).to_contain_text("No jobs yet")
    expect(page.locator("#jobs-body tr[data-job-id]")).to_have_count(0)

    browser_page.open(f"/dashboard/jobs/{done}")
    expect(page.locator("#job-error")).to_contain_text(f"Job {done} not found")
    expect(page.locator("#page-content")).to_be_hidden()

    browser_page.open(f"/dashboard/compare?ids={running},{done}")
    errors = page.locator("#compare-errors .notice")
    expect(errors).to_have_count(2)
    expect(page.locator("#compare-table-card")).to_be_hidden()

    browser_page.open("/dashboard/jobs/not-a-job-id")
    expect(page.locator("#job-error")).to_contain_text("not found")
