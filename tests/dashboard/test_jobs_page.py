"""The jobs table in a real browser: rows, filters, cursor paging, live refresh."""

from __future__ import annotations

from playwright.sync_api import expect


def test_jobs_table_lists_the_tenants_jobs(  # type: ignore[no-untyped-def]
    browser_page, make_tenant, submit, worker, finished_job, api
) -> None:
    tenant = make_tenant()
    queued = submit(tenant, target_language="de")
    running = submit(tenant, base_model="tiny-lm-2", target_language="sw", method="sft")
    sim = worker(running)
    sim.stage("training")
    sim.progress(30, 120, eta=42.0)
    done, _ = finished_job(tenant)

    page = browser_page.page
    browser_page.open("/dashboard")
    expect(page.locator("#needs-key")).to_be_visible()
    browser_page.sign_in(tenant.key)

    rows = page.locator("#jobs-body tr[data-job-id]")
    expect(rows).to_have_count(3)
    # Newest first, as the API returns them.
    assert [rows.nth(i).get_attribute("data-job-id") for i in range(3)] == [done, running, queued]

    row = page.locator(f'tr[data-job-id="{running}"]')
    expect(row.locator(".badge")).to_have_text("running")
    expect(row.locator("td.stage")).to_have_text("training")
    assert row.locator("progress").evaluate("p => p.value") == 25.0
    expect(row.locator(".progress-text")).to_contain_text("step 30 of 120")
    expect(row).to_contain_text("tiny-lm-2")
    expect(row).to_contain_text("sw")
    expect(row).to_contain_text("sft")
    finished = page.locator(f'tr[data-job-id="{done}"]')
    expect(finished.locator(".badge")).to_have_text("succeeded")
    assert finished.locator("progress").evaluate("p => p.value") == 100.0
    expect(finished.locator("td.metrics")).to_contain_text("loss")
    expect(finished.locator("td.metrics")).to_contain_text("evaluated")
    # held-out figures, comparable across methods, rather than training-time ones
    summary = api.get(f"/v1/jobs/{done}", headers=tenant.headers).json()["metrics_summary"]
    expect(finished.locator("td.metrics")).to_contain_text(
        f"right language {round(100 * summary['eval_target_pass_rate'])}%"
    )
    expect(finished.locator("td.metrics")).not_to_contain_text("acc tgt")
    expect(page.locator(f'tr[data-job-id="{queued}"] .progress-text')).to_contain_text(
        "queue position"
    )
    browser_page.screenshot("jobs")
    # Base-model suggestions: the causal LMs of GET /v1/models' list envelope (not the
    # translator, nor the tenant's fine-tuned model that the succeeded job made).
    options = page.locator("#model-options option")
    expect(options).to_have_count(2)
    assert sorted(options.nth(i).get_attribute("value") or "" for i in range(2)) == [
        "tiny-lm",
        "tiny-lm-2",
    ]

    # Filters go to the API as query parameters.
    page.select_option("select[name=status]", "running")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job-id", running)
    page.click("#clear-filters")
    expect(rows).to_have_count(3)
    page.fill("input[name=target_language]", "de")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(2)
    page.fill("input[name=base_model]", "tiny-lm-2")
    page.click("#filters button[type=submit]")
    expect(page.locator(".empty-row")).to_have_text("No jobs match these filters.")

    # The job link leads to the job page.
    page.click("#clear-filters")
    page.click(f'tr[data-job-id="{done}"] a')
    expect(page.locator("#job-id")).to_have_text(done)


def test_cursor_paging_and_live_refresh(browser_page, make_tenant, submit, worker) -> None:  # type: ignore[no-untyped-def]
    tenant = make_tenant()
    ids = [submit(tenant) for _ in range(3)]
    page = browser_page.page
    browser_page.open("/dashboard?limit=2")
    browser_page.sign_in(tenant.key)
    rows = page.locator("#jobs-body tr[data-job-id]")
    expect(rows).to_have_count(2)
    first_page = [rows.nth(i).get_attribute("data-job-id") for i in range(2)]
    assert first_page == ids[:0:-1]
    expect(page.locator("#prev-page")).to_be_disabled()

    page.click("#next-page")
    expect(page.locator("#page-label")).to_have_text("Page 2")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job-id", ids[0])
    expect(page.locator("#next-page")).to_be_disabled()
    assert "cursor=" in page.url

    # The page refreshes itself while a listed job is active: start the oldest job now.
    # Keyboard focus on the row's checkbox survives the refresh.
    checkbox = page.locator(f'input.select-job[value="{ids[0]}"]')
    checkbox.focus()
    sim = worker(ids[0])
    sim.stage("translating")
    sim.progress(8, 32)
    expect(rows.first.locator(".badge")).to_have_text("running", timeout=8000)
    expect(rows.first.locator("td.stage")).to_have_text("translating")
    expect(checkbox).to_be_focused()
    page.keyboard.press("Space")
    expect(checkbox).to_be_checked()

    page.click("#prev-page")
    expect(page.locator("#page-label")).to_have_text("Page 1")
    expect(rows).to_have_count(2)

    # Ticks are kept across pages: one job from each page -> the comparison page for both.
    expect(page.locator("#compare-selected")).to_be_disabled()
    page.check(f'input.select-job[value="{ids[2]}"]')
    expect(page.locator("#compare-selected")).to_have_text("Compare selected (2)")
    page.click("#compare-selected")
    expect(page.locator("#compare-table-el")).to_be_visible()
    headers = page.locator("#compare-table-el thead th[data-job-id]")
    assert sorted(headers.evaluate_all("hs => hs.map(h => h.dataset.jobId)")) == sorted(
        [ids[0], ids[2]]
    )
