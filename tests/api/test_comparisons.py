"""POST/GET /v1/comparisons: one job per run on shared data, validation naming the field,
idempotency, tenant scoping, the side-by-side report; and the evaluation checks of POST /v1/jobs
(judge configured, baseline a succeeded job of the same tenant and base model)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from clo.evaluate.report import DirectionStats, EvaluationReport, NllStats, PreferenceReport
from persistence.db import session_scope
from persistence.models import Comparison, Job
from tests.api.conftest import job_body, make_settings


def _ignore(job_id: str) -> None:
    """An enqueue that sends nothing (apps built for one test)."""


def _count(factory, model, tenant) -> int:  # type: ignore[no-untyped-def]
    with factory() as session:
        query = select(func.count()).select_from(model).where(model.tenant_id == tenant.tenant_id)
        return int(session.scalar(query) or 0)


def _post(client, tenant, body, **headers):  # type: ignore[no-untyped-def]
    return client.post("/v1/comparisons", json=body, headers={**tenant.headers, **headers})


def test_default_comparison_is_clo_and_sft_on_the_same_data(client, tenant, enqueued) -> None:  # type: ignore[no-untyped-def]
    base = job_body(hyperparameters={"seed": 7, "max_steps": 5}, data_size=40)
    response = _post(client, tenant, {"name": "de row", "base": base})
    assert response.status_code == 201, response.text
    comparison = response.json()
    assert response.headers["location"] == f"/v1/comparisons/{comparison['id']}"
    assert comparison["name"] == "de row" and comparison["status"] == "running"
    assert comparison["report"] is None and "waiting" in comparison["report_note"]
    runs = comparison["runs"]
    assert [(r["label"], r["method"], r["sft_variant"]) for r in runs] == [
        ("clo", "clo", None),
        ("sft", "sft", "target"),
    ]
    assert enqueued[-2:] == [r["job_id"] for r in runs]  # both woke a worker after commit
    specs = [
        client.get(f"/v1/jobs/{r['job_id']}", headers=tenant.headers).json()["spec"] for r in runs
    ]
    # everything that decides the data is shared, so the second translation is cache hits
    for key in (
        "base_model",
        "target_language",
        "data_size",
        "seed_data",
        "translator",
        "evaluation",
        "trainable",
    ):
        assert specs[0][key] == specs[1][key], key
    assert [s["hyperparameters"]["seed"] for s in specs] == [7, 7]
    assert [s["method"] for s in specs] == ["clo", "sft"]
    assert {s["metadata"]["comparison_id"] for s in specs} == {comparison["id"]}
    shown = client.get(f"/v1/comparisons/{comparison['id']}", headers=tenant.headers).json()
    assert [r["status"] for r in shown["runs"]] == ["queued", "queued"]


def test_runs_override_hyperparameters_and_trainable(client, tenant) -> None:  # type: ignore[no-untyped-def]
    body = {
        "base": job_body(hyperparameters={"beta": 0.2, "learning_rate": 1e-5}, trainable="lora"),
        "runs": [
            {"label": "clo-hi-lambda", "method": "clo", "hyperparameters": {"lambda_nll": 0.9}},
            {"label": "sft-en", "method": "sft", "sft_variant": "english", "trainable": "full"},
            {"label": "dpo", "method": "dpo"},
        ],
    }
    response = _post(client, tenant, body)
    assert response.status_code == 201, response.text
    specs = {
        r["label"]: client.get(f"/v1/jobs/{r['job_id']}", headers=tenant.headers).json()["spec"]
        for r in response.json()["runs"]
    }
    hp = specs["clo-hi-lambda"]["hyperparameters"]
    assert (hp["lambda_nll"], hp["beta"], hp["learning_rate"]) == (0.9, 0.2, 1e-5)
    assert specs["dpo"]["hyperparameters"]["lambda_nll"] == 0.5  # the override stays in its run
    assert (specs["sft-en"]["sft_variant"], specs["sft-en"]["trainable"]) == ("english", "full")
    assert specs["dpo"]["trainable"] == "lora"


def _runs(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"label": "clo", "method": "clo"}, *extra]


INVALID = [
    ({"base": job_body(), "runs": _runs({"label": "x", "method": "ppo"})}, "runs[1].method"),
    ({"base": job_body(), "runs": _runs({"label": "clo", "method": "sft"})}, "runs[1].label"),
    ({"base": job_body(method="clo"), "runs": _runs()}, "base.method"),
    (
        {"base": job_body(), "runs": [{"label": "c", "method": "clo", "sft_variant": "english"}]},
        "runs[0].sft_variant",
    ),
    (
        {
            "base": job_body(),
            "runs": _runs({"label": "s", "method": "sft", "hyperparameters": {"beta": 0}}),
        },
        "runs[1].hyperparameters.beta",
    ),
    ({"base": job_body(hyperparameters={"beta": 0})}, "base.hyperparameters.beta"),
    ({"base": job_body(data_size=10**5)}, "base.data_size"),
    ({"base": job_body(target_language="Klingon")}, "base.target_language"),
    ({"base": job_body(base_model="not-allowed")}, "base.base_model"),
    (
        {"base": job_body(evaluation={"baseline_job_id": str(uuid.uuid4())})},
        "base.evaluation.baseline_job_id",
    ),
    ({"base": {"target_language": "de", "data_size": 32}}, "base.base_model"),
    ({"base": job_body(), "runs": []}, "runs"),
    ({"base": job_body(), "runs": [{"label": "bad label!", "method": "clo"}]}, "runs[0].label"),
]


@pytest.mark.parametrize(("body", "param"), INVALID, ids=[p for _, p in INVALID])
def test_invalid_comparison_is_422_naming_the_field_and_creates_nothing(
    client, tenant, enqueued, factory, body, param
) -> None:  # type: ignore[no-untyped-def]
    sent = len(enqueued)
    response = _post(client, tenant, body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "user_error"), error
    assert len(enqueued) == sent
    assert _count(factory, Job, tenant) == 0 and _count(factory, Comparison, tenant) == 0


def test_idempotent_retry_returns_the_same_comparison(client, tenant, enqueued, factory) -> None:  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": f"cmp-{uuid.uuid4()}"}
    first = _post(client, tenant, {"base": job_body()}, **key)
    sent = len(enqueued)
    again = _post(client, tenant, {"base": job_body()}, **key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["runs"] == first.json()["runs"]
    assert len(enqueued) == sent and _count(factory, Job, tenant) == 2
    other = _post(client, tenant, {"base": job_body(data_size=40)}, **key)
    assert other.status_code == 409
    assert other.json()["error"]["param"] == "Idempotency-Key"
    assert _count(factory, Comparison, tenant) == 1


def test_comparisons_are_tenant_scoped_and_listed_newest_first(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    owner, other = make_tenant(), make_tenant()
    ids = [
        _post(client, owner, {"base": job_body(), "name": f"c{i}"}).json()["id"] for i in range(3)
    ]
    assert client.get(f"/v1/comparisons/{ids[0]}", headers=other.headers).status_code == 404
    assert client.get("/v1/comparisons/not-a-uuid", headers=owner.headers).status_code == 404
    assert client.get("/v1/comparisons", headers=other.headers).json()["data"] == []
    page = client.get("/v1/comparisons?limit=2", headers=owner.headers).json()
    assert [c["id"] for c in page["data"]] == ids[:0:-1] and page["has_more"]
    rest = client.get(
        f"/v1/comparisons?limit=2&cursor={page['next_cursor']}", headers=owner.headers
    ).json()
    assert [c["id"] for c in rest["data"]] == [ids[0]] and not rest["has_more"]
    bad = client.get("/v1/comparisons?cursor=garbage", headers=owner.headers)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "cursor"


def _evaluation(acc_tgt: float, acc_en: float, ppl: float) -> dict[str, Any]:
    def direction(d: str, acc: float) -> DirectionStats:
        return DirectionStats(
            direction=d,
            n=4,
            accuracy=acc,
            reward_margin_mean=acc - 0.5,
            chosen_reward_mean=acc,
            rejected_reward_mean=0.5,
            logp_accuracy=acc,
            chosen_logp_mean=-9.0,
            rejected_logp_mean=-11.0,
        )

    nll = NllStats(sequences=4, tokens=40, nll=1.0, perplexity=ppl)
    report = EvaluationReport(
        model="tiny-lm",
        target_language="de",
        target_language_name="German",
        heldout_size=4,
        config={},
        preference=PreferenceReport(
            beta=0.1,
            reference="adapter_disabled",
            directions={"tgt": direction("tgt", acc_tgt), "en": direction("en", acc_en)},
            nll={"target": nll, "english": nll},
        ),
    )
    return report.model_dump(mode="json")


def _finish(factory, job_id: str, status: str, evaluation: dict[str, Any] | None) -> None:  # type: ignore[no-untyped-def]
    with session_scope(factory) as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        job.status, job.evaluation = status, evaluation
        job.metrics_summary = {"loss": 0.3, "translation": {"kept": 32}}


def test_report_appears_when_every_run_succeeded(client, tenant, factory) -> None:  # type: ignore[no-untyped-def]
    comparison = _post(client, tenant, {"base": job_body()}).json()
    clo, sft = (r["job_id"] for r in comparison["runs"])
    url = f"/v1/comparisons/{comparison['id']}"
    _finish(factory, clo, "succeeded", _evaluation(0.75, 0.5, 8.0))
    waiting = client.get(url, headers=tenant.headers).json()
    assert waiting["status"] == "running" and waiting["report"] is None
    assert "sft" in waiting["report_note"]
    _finish(factory, sft, "succeeded", _evaluation(0.25, 1.0, 6.0))
    done = client.get(url, headers=tenant.headers).json()
    assert done["status"] == "succeeded" and done["report_note"] is None
    report = done["report"]
    assert report["target_language"] == "de"
    assert report["runs"]["clo"]["preference_accuracy_target"] == 0.75
    assert report["runs"]["sft"]["preference_accuracy_english"] == 1.0
    assert report["best"]["preference_accuracy_target"] == "clo"
    assert report["best"]["perplexity_target"] == "sft"  # lower is better
    assert report["best"]["win_rate_target"] is None  # no judge: nothing to rank
    assert done["runs"][0]["metrics"] == {"loss": 0.3}  # translation report left out here


def test_failed_run_makes_a_failed_comparison_without_report(client, tenant, factory) -> None:  # type: ignore[no-untyped-def]
    comparison = _post(client, tenant, {"base": job_body()}).json()
    clo, sft = (r["job_id"] for r in comparison["runs"])
    _finish(factory, clo, "succeeded", _evaluation(0.5, 0.5, 5.0))
    _finish(factory, sft, "failed", None)
    shown = client.get(f"/v1/comparisons/{comparison['id']}", headers=tenant.headers).json()
    assert shown["status"] == "failed" and shown["report"] is None
    assert shown["runs"][1]["status"] == "failed" and "sft" in shown["report_note"]
    listed = client.get("/v1/comparisons", headers=tenant.headers).json()["data"][0]
    assert listed["id"] == comparison["id"] and listed["status"] == "failed"


def test_comparison_over_the_job_limit_is_429_and_creates_nothing(
    pg_url, data_dir, make_tenant, factory
) -> None:  # type: ignore[no-untyped-def]
    tenant = make_tenant()
    app = create_app(make_settings(pg_url, data_dir, max_queued_jobs_per_tenant=2), _ignore)
    with TestClient(app) as c:
        assert c.post("/v1/jobs", json=job_body(), headers=tenant.headers).status_code == 201
        response = _post(c, tenant, {"base": job_body()})  # 2 more jobs: 3 queued > 2
    assert response.status_code == 429 and response.headers["retry-after"]
    assert response.json()["error"]["code"] == "queued_job_limit"
    assert "limit is 2" in response.json()["error"]["message"]
    assert _count(factory, Job, tenant) == 1 and _count(factory, Comparison, tenant) == 0


# ---- evaluation options of POST /v1/jobs --------------------------------------------------


def test_baseline_must_be_a_succeeded_job_on_the_same_base_model(
    client, make_tenant, insert_job
) -> None:  # type: ignore[no-untyped-def]
    tenant, other = make_tenant(), make_tenant()
    queued = insert_job(tenant)
    done = insert_job(tenant, status="succeeded")
    elsewhere = insert_job(
        tenant, status="succeeded", spec={"base_model": "tiny-lm-2"}, base_model="tiny-lm-2"
    )
    theirs = insert_job(other, status="succeeded")

    def post(job_id: uuid.UUID):  # type: ignore[no-untyped-def]
        body = job_body(evaluation={"baseline_job_id": str(job_id)})
        return client.post("/v1/jobs", json=body, headers=tenant.headers)

    for job_id, hint in [(queued, "queued"), (elsewhere, "tiny-lm-2"), (theirs, "not found")]:
        response = post(job_id)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["param"] == "evaluation.baseline_job_id" and hint in error["message"]
    assert post(done).status_code == 201


def test_judge_must_be_configured_on_the_service(client, tenant, pg_url, data_dir) -> None:  # type: ignore[no-untyped-def]
    body = job_body(evaluation={"judge": "openai"})
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "evaluation.judge"
    local = client.post(
        "/v1/jobs", json=job_body(evaluation={"judge": "local"}), headers=tenant.headers
    )
    assert local.json()["error"]["param"] == "evaluation.judge"
    settings = make_settings(
        pg_url,
        data_dir,
        judge_url="http://judge.invalid/v1",
        judge_model="gpt-judge",
        judge_api_key="sk-never-shown",
    )
    with TestClient(create_app(settings, _ignore)) as c:
        created = c.post("/v1/jobs", json=body, headers=tenant.headers)
        assert created.status_code == 201, created.text
        assert "sk-never-shown" not in created.text
        # a local judge must be an allow-listed causal LM
        local = c.post(
            "/v1/jobs", json=job_body(evaluation={"judge": "local"}), headers=tenant.headers
        )
        assert local.status_code == 422 and "allow-listed" in local.json()["error"]["message"]
