"""The comparison page: two jobs side by side, best values marked, curves overlaid."""

from __future__ import annotations

from playwright.sync_api import expect


def test_compare_two_finished_jobs(browser_page, make_tenant, finished_job, api) -> None:  # type: ignore[no-untyped-def]
    tenant = make_tenant()
    clo_job, _ = finished_job(tenant, seed=0, method="clo")
    sft_job, _ = finished_job(tenant, seed=2, method="sft")
    reports = {
        job: api.get(f"/v1/jobs/{job}/evaluation", headers=tenant.headers).json()["report"]
        for job in (clo_job, sft_job)
    }

    page = browser_page.page
    browser_page.open(f"/dashboard/compare?ids={clo_job},{sft_job}")
    browser_page.sign_in(tenant.key)
    table = page.locator("#compare-table-el")
    expect(table).to_be_visible()
    headers = table.locator("thead th[data-job-id]")
    assert headers.evaluate_all("hs => hs.map(h => h.dataset.jobId)") == [clo_job, sft_job]
    expect(headers.nth(0)).to_contain_text("clo")
    expect(headers.nth(1)).to_contain_text("sft")

    # The better target right-language rate is marked best, whichever job has it.
    rates = {j: r["language"]["target_prompts"]["pass_rate"] for j, r in reports.items()}
    best = max(rates, key=lambda j: rates[j])
    row = table.locator("tbody tr", has_text="Right-language rate, target prompts")
    cells = row.locator("td")
    best_index = [clo_job, sft_job].index(best)
    expect(cells.nth(best_index)).to_have_class("num best")
    expect(cells.nth(1 - best_index)).not_to_have_class("num best")
    expect(cells.nth(best_index)).to_contain_text(f"{rates[best] * 100:.1f}%")
    # Lower is better for NLL: the job with the smaller held-out NLL wins that row.
    nll = {j: r["preference"]["nll"]["target"]["nll"] for j, r in reports.items()}
    low = min(nll, key=lambda j: nll[j])
    nll_cells = table.locator("tbody tr", has_text="Held-out NLL, target answers").locator("td")
    expect(nll_cells.nth([clo_job, sft_job].index(low))).to_have_class("num best")

    # Overlaid curves: one line per job on single-metric charts, two per job per direction.
    loss = page.locator('#compare-curves figure[data-metric="loss"] path.line')
    expect(loss).to_have_count(2)
    margins = page.locator('#compare-curves figure[data-metric="margin_tgt,margin_en"] path.line')
    expect(margins).to_have_count(4)
    assert len(set(loss.evaluate_all("ps => ps.map(p => p.getAttribute('d'))"))) == 2
    browser_page.screenshot("compare")

    # Fewer than two ids, or an unknown one, are explained on the page.
    page.fill("#compare-ids", clo_job)
    page.click("#compare-form button[type=submit]")
    expect(page.locator("#compare-message")).to_contain_text("at least one more job")
    missing = "00000000-0000-4000-8000-000000000000"
    page.fill("#compare-ids", f"{clo_job} {missing}")
    page.click("#compare-form button[type=submit]")
    expect(page.locator("#compare-errors")).to_contain_text(f"Job {missing} not found")
    expect(page.locator("#compare-table-el thead th[data-job-id]")).to_have_count(1)
