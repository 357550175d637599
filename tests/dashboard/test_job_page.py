"""The job page in a real browser: live progress, curves, evaluation, downloads, cancel."""

from __future__ import annotations

import hashlib
from pathlib import Path

from playwright.sync_api import expect

from tests.dashboard.versus_text import delta_text, pct_points, rate_text
from tests.support.evaluation_reports import legacy_report


def test_running_job_progress_advances_without_reload(  # type: ignore[no-untyped-def]
    browser_page, make_tenant, submit, worker
) -> None:
    tenant = make_tenant()
    job_id = submit(tenant)
    sim = worker(job_id)
    sim.stage("training")
    sim.progress(10, 100, eta=90.0)

    page = browser_page.page
    browser_page.open(f"/dashboard/jobs/{job_id}")
    browser_page.sign_in(tenant.key)
    bar = page.locator("#job-progress")
    expect(page.locator("#job-status .badge")).to_have_text("running")
    expect(bar).to_have_attribute("aria-valuetext", "10% · step 10 of 100 · ETA 1m 30s")
    expect(page.locator("#progress-label")).to_have_text("Progress (training)")
    expect(page.locator("#stream-state")).to_contain_text("Live")
    # The stream replayed the job's history so far.
    expect(page.locator("#events li[data-type=stage]")).to_have_count(1)
    page.evaluate("window.__sameDocument = true")

    # The worker moves on while the page stays open.
    sim.progress(55, 100, eta=20.0)
    sim.metrics([(1, {"loss": 0.9}), (2, {"loss": 0.7}), (3, {"loss": 0.6})])
    sim.event("checkpoint", "checkpoint at step 50", {"step": 50})
    expect(bar).to_have_attribute("aria-valuetext", "55% · step 55 of 100 · ETA 20s")
    assert bar.evaluate("p => p.value") == 55.0
    # The event arrived over the event stream (nothing else fetches events).
    expect(page.locator("#events li[data-type=checkpoint]")).to_contain_text(
        "checkpoint at step 50"
    )
    # Curves fill in while training runs.
    expect(page.locator('figure[data-metric="loss"] path.line')).to_have_attribute(
        "data-points", "3", timeout=8000
    )
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"

    # A stage change and the end reach the page too; the stream then closes.
    sim.stage("evaluating")
    expect(page.locator("#progress-label")).to_have_text("Progress (evaluating)")
    sim.finish("succeeded")
    expect(page.locator("#job-status .badge")).to_have_text("succeeded")
    expect(page.locator("#stream-state")).to_contain_text("finished")
    expect(page.locator("#cancel-job")).to_be_hidden()


def test_finished_job_shows_curves_evaluation_and_downloads(  # type: ignore[no-untyped-def]
    browser_page, make_tenant, finished_job, api, tmp_path: Path
) -> None:
    tenant = make_tenant()
    job_id, sha = finished_job(tenant, steps=20)
    report = api.get(f"/v1/jobs/{job_id}/evaluation", headers=tenant.headers).json()["report"]

    page = browser_page.page
    browser_page.open(f"/dashboard/jobs/{job_id}")
    browser_page.sign_in(tenant.key)
    expect(page.locator("#job-status .badge")).to_have_text("succeeded")
    assert page.locator("#job-progress").evaluate("p => p.value") == 100.0

    # One chart per metric group the metrics endpoint returned, 20 points per line.
    curves = api.get(f"/v1/jobs/{job_id}/metrics", headers=tenant.headers).json()["curves"]
    expected_groups = {
        "loss",
        "nll",
        "cl_loss",
        "margin_tgt,margin_en",
        "accuracy_tgt,accuracy_en",
        "lr",
        "tokens_per_second",
    }
    assert {k for g in expected_groups for k in g.split(",")} == set(curves)
    charts = page.locator("#curves figure.chart")
    expect(charts).to_have_count(len(expected_groups))
    assert set(charts.evaluate_all("fs => fs.map(f => f.dataset.metric)")) == expected_groups
    paths = page.locator("#curves path.line")
    expect(paths).to_have_count(len(curves))
    for d, points in paths.evaluate_all(
        "ps => ps.map(p => [p.getAttribute('d'), p.dataset.points])"
    ):
        assert points == "20" and d.startswith("M") and d.count("L") == 19
    # The loss falls, so its line ends lower on the chart (SVG y grows downwards).
    loss_d = page.locator('figure[data-metric="loss"] path.line').get_attribute("d")
    first_y = float(loss_d.split()[0].split(",")[1])
    last_y = float(loss_d.split()[-1].split(",")[1])
    assert last_y > first_y
    margins = page.locator('figure[data-metric="margin_tgt,margin_en"]')
    expect(margins.locator("path.line")).to_have_count(2)
    expect(margins.locator(".legend")).to_contain_text("English prompts")

    # Translation counts from the translate stage's report.
    translation = page.locator("#translation-table")
    expect(translation.locator("tr", has_text="Kept")).to_contain_text("29")
    expect(translation.locator("tr", has_text="wrong_language")).to_contain_text("2")

    # The evaluation report, from GET /evaluation.
    lang = report["language"]
    rates = page.locator("#language-rates")
    expect(rates.locator("tr", has_text="German prompts")).to_contain_text(
        f"{lang['target_prompts']['pass_rate'] * 100:.1f}%"
    )
    expect(rates.locator("tr", has_text="English prompts")).to_contain_text(
        f"{lang['english_prompts']['pass_rate'] * 100:.1f}%"
    )
    tgt = report["preference"]["directions"]["tgt"]
    expect(page.locator("#preference-table tr", has_text="German")).to_contain_text(
        f"{tgt['accuracy'] * 100:.1f}%"
    )
    bench = report["benchmarks"][0]
    expect(page.locator("#benchmark-table tbody tr").first).to_contain_text(
        f"{bench['accuracy'] * 100:.1f}%"
    )
    win = report["judge"]["results"]["tgt"]
    row = page.locator("#winrate-table tr", has_text="German")
    for count in (win["wins"], win["ties"], win["losses"]):
        expect(row).to_contain_text(str(count))
    expect(row).to_contain_text(f"{win['win_rate']:.3g} ± {1.96 * win['stderr']:.2g}")
    # Two bars, each with an error bar (a line and two caps).
    expect(page.locator("svg.winrate rect.bar")).to_have_count(2)
    expect(page.locator("svg.winrate line.errorbar")).to_have_count(6)
    samples = page.locator("#answer-samples article")
    expect(samples).to_have_count(len(lang["samples"]))
    expect(page.locator('#answer-samples article[data-verdict="pass"]')).to_contain_text(
        "right language"
    )
    expect(page.locator('#answer-samples article[data-verdict="fail"]')).to_contain_text(
        lang["samples"][1]["answer"]
    )
    browser_page.screenshot("job")

    # Download: fetched with the key, checked against the sha256, saved by the browser.
    with page.expect_download() as info:
        page.click('button[data-artifact="adapter.tar"]')
    saved = tmp_path / "adapter.tar"
    info.value.save_as(saved)
    assert info.value.suggested_filename == "adapter.tar"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha
    expect(page.locator('tr[data-artifact="adapter.tar"] .download-status')).to_contain_text(
        "sha256 verified"
    )


def test_cancel_from_the_page(  # type: ignore[no-untyped-def]
    browser_page, make_tenant, submit, worker, load_job
) -> None:
    tenant = make_tenant()
    running = submit(tenant)
    sim = worker(running)
    sim.stage("training")
    sim.progress(3, 50)
    queued = submit(tenant)

    page = browser_page.page
    browser_page.open(f"/dashboard/jobs/{running}")
    browser_page.sign_in(tenant.key)
    expect(page.locator("#job-status .badge")).to_have_text("running")
    page.click("#cancel-job")
    # A second, explicit step; "Keep it" backs out and nothing is sent.
    page.click("#cancel-no")
    expect(page.locator("#cancel-job")).to_be_focused()
    assert load_job(running).cancel_requested_at is None
    page.keyboard.press("Enter")  # keyboard works as well as the mouse
    expect(page.locator("#cancel-yes")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#job-status .badge")).to_have_text("cancelling")
    expect(page.locator("#cancel-message")).to_contain_text("Cancel requested")
    job = load_job(running)
    assert job.status == "cancelling" and job.cancel_requested_at is not None

    # The worker notices at its next step and stops; the page follows.
    sim.finish("cancelled")
    expect(page.locator("#job-status .badge")).to_have_text("cancelled")

    # A queued job is cancelled at once.
    browser_page.open(f"/dashboard/jobs/{queued}")
    page.click("#cancel-job")
    page.click("#cancel-yes")
    expect(page.locator("#job-status .badge")).to_have_text("cancelled")
    assert load_job(queued).status == "cancelled"


def test_large_artifact_streams_to_disk_through_a_signed_link(  # type: ignore[no-untyped-def]
    browser_page, make_tenant, finished_job, settings, factory, tmp_path: Path
) -> None:
    import os
    import uuid

    from persistence.artifact_store import ArtifactStore, make_key
    from persistence.db import session_scope
    from persistence.repositories import artifacts as artifacts_repo

    tenant = make_tenant()
    job_id, _ = finished_job(tenant, steps=5)
    # over the page's 64 MB in-browser limit: a merged model, say
    data = os.urandom(1 << 20) * 65
    stored = ArtifactStore(settings.artifact_root).write_bytes(
        make_key("jobs", job_id, "merged.tar"), data
    )
    with session_scope(factory) as session:
        artifacts_repo.add_artifact(session, uuid.UUID(job_id), "merged.tar", "merged", stored)

    page = browser_page.page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    browser_page.open(f"/dashboard/jobs/{job_id}")
    browser_page.sign_in(tenant.key)
    with page.expect_download(timeout=60_000) as info:
        page.click('button[data-artifact="merged.tar"]')
    saved = tmp_path / "merged.tar"
    info.value.save_as(saved)
    assert info.value.suggested_filename == "merged.tar"
    assert saved.stat().st_size == len(data)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == stored.sha256
    assert info.value.url.split("?")[0].rsplit("/", 2)[1] == "downloads"  # the signed link
    assert any(r.startswith("POST ") and r.endswith("/merged.tar/link") for r in requests)
    # the page never fetched the file itself
    assert not any(r.startswith("GET ") and r.endswith("/artifacts/merged.tar") for r in requests)
    expect(page.locator('tr[data-artifact="merged.tar"] .download-status')).to_contain_text(
        stored.sha256
    )


def test_evaluation_shows_base_beside_trained_with_intervals(  # type: ignore[no-untyped-def]
    browser_page, make_tenant, finished_job, api
) -> None:
    tenant = make_tenant()
    job_id, _ = finished_job(tenant, seed=0)
    cached_job, _ = finished_job(tenant, seed=1)
    report = api.get(f"/v1/jobs/{job_id}/evaluation", headers=tenant.headers).json()["report"]
    metrics = report["versus_base"]["metrics"]

    page = browser_page.page
    browser_page.open(f"/dashboard/jobs/{job_id}")
    browser_page.sign_in(tenant.key)
    table = page.locator("#versus-table")
    expect(table.locator("thead")).to_contain_text("Base")
    expect(table.locator("thead")).to_contain_text("Trained")
    expect(table.locator("thead")).to_contain_text("Δ")
    # The headline rows, each base | trained | Δ with its interval, and the verdict in words.
    usable = metrics["usable_rate_target"]
    row = table.locator('tr[data-metric="usable_rate_target"]')
    expect(row.locator("th")).to_have_text("Usable right-language answers, German prompts")
    base_text = rate_text(usable["base"], usable["base_interval"])
    assert base_text == "36% [24–49]"  # the fixture's 20 of 56, as a user reads it
    expect(row.locator('[data-side="base"]')).to_have_text(base_text)
    expect(row.locator('[data-side="trained"]')).to_have_text(
        rate_text(usable["trained"], usable["trained_interval"])
    )
    expect(row.locator('[data-side="delta"]')).to_have_text(delta_text(usable))
    assert delta_text(usable).startswith("+29 pts [+")
    expect(row).to_contain_text("Better than the base model (distinguishable from zero)")
    english = metrics["usable_rate_english"]
    row = table.locator('tr[data-metric="usable_rate_english"]')
    expect(row.locator('[data-side="delta"]')).to_have_text(delta_text(english))
    expect(row).to_contain_text("Not distinguishable from the base model")
    lcb = metrics["pass_rate_target"]
    expect(table.locator('tr[data-metric="pass_rate_target"] [data-side="trained"]')).to_have_text(
        rate_text(lcb["trained"], lcb["trained_interval"])
    )
    nll = metrics["nll_target"]
    row = table.locator('tr[data-metric="nll_target"]')
    expect(row.locator('[data-side="base"]')).to_have_text("2.3")
    expect(row.locator('[data-side="trained"]')).to_have_text("2.1")
    expect(row.locator('[data-side="delta"]')).to_have_text(delta_text(nll))
    expect(row).to_contain_text("Better than the base model")  # lower NLL is better
    # Which prompts, and where the base side came from.
    facts = page.locator("#versus-facts")
    expect(facts.locator('[data-fact="sources"]')).to_contain_text("16 held-out examples")
    expect(facts.locator('[data-fact="sources"]')).to_contain_text(
        "the shipped de evaluation prompts (set 1a2b3c4d5e6f), 40 prompts"
    )
    expect(facts.locator('[data-fact="base"]')).to_contain_text("Base model: tiny-lm")
    expect(facts.locator('[data-fact="cache"]')).to_contain_text("112 base answers generated")
    # Every other compared metric and the per-source rates are one click away.
    page.click(".versus-more summary")
    wrong = page.locator('#versus-all tr[data-metric="failure_target_wrong_language"]')
    expect(wrong).to_contain_text(delta_text(metrics["failure_target_wrong_language"]))
    shipped = "shipped:de@1a2b3c4d5e6f"
    per_source = report["versus_base"]["by_source"][shipped]["usable_rate_target"]
    row = page.locator(f'#versus-by-source tr[data-metric="{shipped}/usable_rate_target"]')
    expect(row).to_contain_text(delta_text(per_source))
    browser_page.screenshot("job-versus-base")

    # A later job on the same base reused the cached base answers.
    browser_page.open(f"/dashboard/jobs/{cached_job}")
    expect(page.locator('#versus-facts [data-fact="cache"]')).to_contain_text(
        "every base answer came from the cache"
    )


def test_evaluation_written_before_base_comparisons_still_shows(  # type: ignore[no-untyped-def]
    browser_page, make_tenant, finished_job
) -> None:
    tenant = make_tenant()
    old = legacy_report()
    job_id, _ = finished_job(tenant, evaluation=old)

    page = browser_page.page
    browser_page.open(f"/dashboard/jobs/{job_id}")
    browser_page.sign_in(tenant.key)
    expect(page.locator("#versus-missing")).to_contain_text("schema 1.0")
    expect(page.locator("#versus-missing")).to_contain_text("no base-model figures")
    rows = page.locator("#versus-table tbody tr")
    expect(rows.nth(0).locator('[data-side="trained"]')).to_have_text("–")  # no usable rate in 1.0
    pass_rate = old["language"]["target_prompts"]["pass_rate"]
    expect(rows.nth(2).locator('[data-side="trained"]')).to_have_text(f"{pct_points(pass_rate)}%")
    expect(page.locator("#versus-base")).to_contain_text("the held-out examples of the job")
    # The rest of the report renders as before (and the page raised no script error).
    expect(page.locator("#language-rates tr", has_text="German prompts")).to_contain_text(
        f"{pass_rate * 100:.1f}%"
    )
