"""/metrics: counters that move, aggregates only, a bearer token when CLO_METRICS_TOKEN is set."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from tests.api.conftest import job_body, make_settings

AGGREGATE_LABELS = {"method", "route", "status", "le"}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _jobs_created(client: TestClient) -> float:
    return _samples(client.get("/metrics").text)[("clo_jobs_created_total", ())]


def test_jobs_created_counts_each_committed_job(client, tenant) -> None:  # type: ignore[no-untyped-def]
    before = _jobs_created(client)
    headers = {**tenant.headers, "Idempotency-Key": "metrics-count-1"}
    assert client.post("/v1/jobs", json=job_body(), headers=headers).status_code == 201
    assert _jobs_created(client) == before + 1
    replay = client.post("/v1/jobs", json=job_body(), headers=headers)
    assert replay.status_code == 200  # the same job again: nothing new was created
    refused = client.post("/v1/jobs", json=job_body(data_size=0), headers=tenant.headers)
    assert refused.status_code == 422
    assert _jobs_created(client) == before + 1
    comparison = {
        "name": "metrics",
        "base": job_body(),
        "runs": [{"label": "clo", "method": "clo"}, {"label": "sft", "method": "sft"}],
    }
    assert client.post("/v1/comparisons", json=comparison, headers=tenant.headers).is_success
    assert _jobs_created(client) == before + 3  # one per run


def test_metrics_carry_no_tenant_details(client, tenant) -> None:  # type: ignore[no-untyped-def]
    job = client.post("/v1/jobs", json=job_body(), headers=tenant.headers).json()
    client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers)
    client.get(f"/v1/jobs/{job['id']}/no-such-route", headers=tenant.headers)
    text = client.get("/metrics").text
    for secret in (tenant.name, str(tenant.tenant_id), tenant.prefix, job["id"]):
        assert secret not in text
    labels = {name for key in _samples(text) for name, _ in key[1]}
    assert labels <= AGGREGATE_LABELS
    assert 'route="/v1/jobs/{job_id}"' in text  # the template, never the id


def test_metrics_token_when_set(pg_url, tmp_path, tenant) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(pg_url, tmp_path, metrics_token="scrape-me")
    with TestClient(create_app(settings, lambda _id: None)) as c:
        missing = c.get("/metrics")
        wrong = c.get("/metrics", headers={"Authorization": "Bearer nope"})
        tenant_key = c.get("/metrics", headers=tenant.headers)  # an API key is not it
        right = c.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert [r.status_code for r in (missing, wrong, tenant_key, right)] == [401, 401, 401, 200]
    assert missing.json()["error"]["code"] == "missing_metrics_token"
    assert wrong.json()["error"]["code"] == "invalid_metrics_token"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "clo_http_requests_total" in right.text
