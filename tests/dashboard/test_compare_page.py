"""The comparison page: two jobs side by side, best values marked, curves overlaid."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.dashboard.versus_text import delta_text, rate_text


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


def test_comparison_runs_shown_under_their_labels_with_usable_rates_vs_base(  # type: ignore[no-untyped-def]
    browser_page, make_tenant, finished_comparison, api
) -> None:
    tenant = make_tenant()
    # labels that are not the methods, so the page can only have them from /v1/comparisons
    comparison = finished_comparison(
        tenant, [("clo-main", "clo", 0), ("sft-baseline", "sft", 2)], name="German row"
    )
    jobs = [r["job_id"] for r in comparison["runs"]]
    reports = [
        api.get(f"/v1/jobs/{job}/evaluation", headers=tenant.headers).json()["report"]
        for job in jobs
    ]

    page = browser_page.page
    browser_page.open("/dashboard/compare")
    browser_page.sign_in(tenant.key)
    listed = page.locator(f'#comparisons-table tr[data-comparison-id="{comparison["id"]}"]')
    expect(listed).to_contain_text("German row")
    expect(listed).to_contain_text("clo-main (succeeded), sft-baseline (succeeded)")
    listed.locator("a").click()
    page.wait_for_url(f"**/dashboard/compare?comparison={comparison['id']}")
    expect(page.locator("#comparison-info")).to_contain_text("German row")
    expect(page.locator("#comparison-info .badge")).to_have_text("succeeded")
    table = page.locator("#compare-table-el")
    headers = table.locator("thead th[data-job-id]")
    expect(headers).to_have_count(2)
    assert headers.evaluate_all("hs => hs.map(h => h.dataset.jobId)") == jobs
    assert headers.evaluate_all("hs => hs.map(h => h.dataset.label)") == [
        "clo-main",
        "sft-baseline",
    ]
    expect(headers.nth(0).locator(".run-label")).to_have_text("clo-main")
    expect(headers.nth(1).locator(".run-label")).to_have_text("sft-baseline")
    # The curves' legend names the runs by label too.
    expect(page.locator('#compare-curves figure[data-metric="loss"] .legend')).to_contain_text(
        "sft-baseline"
    )

    # Each run's usable target rate with its interval, and its difference from the base model.
    usable = [r["versus_base"]["metrics"]["usable_rate_target"] for r in reports]
    cells = table.locator("tbody tr", has_text="Usable answers, target prompts").locator("td")
    for i, c in enumerate(usable):
        expect(cells.nth(i)).to_contain_text(rate_text(c["trained"], c["trained_interval"]))
    expect(cells.nth(0)).to_have_class("num best")  # 36 of 56 beats 28 of 56
    base_cells = table.locator("tbody tr", has_text="Usable answers of the base model").locator(
        "td"
    )
    expect(base_cells.nth(1)).to_have_text(rate_text(usable[1]["base"], usable[1]["base_interval"]))
    deltas = table.locator("tbody tr", has_text="Δ vs base, usable answers (target)").locator("td")
    for i, c in enumerate(usable):
        expect(deltas.nth(i)).to_contain_text(delta_text(c))
    expect(deltas.nth(0)).to_contain_text("better, distinguishable")
    browser_page.screenshot("compare-comparison")

    # Opened for the job ids instead, the page still finds the labels in the comparison.
    browser_page.open(f"/dashboard/compare?ids={jobs[1]},{jobs[0]}")
    expect(table.locator("thead th[data-job-id] .run-label")).to_have_text(
        ["sft-baseline", "clo-main"]
    )
    assert any(u.endswith(f"/v1/comparisons/{comparison['id']}") for u in browser_page.requests)
