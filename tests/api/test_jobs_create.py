"""POST /v1/jobs: creation, enqueue after commit, idempotency, up-front validation, limits."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from clo.seed import builtin_seed
from persistence.models import Job, JobEvent
from tests.api.conftest import job_body, make_settings


def _jobs_of(factory, tenant) -> int:  # type: ignore[no-untyped-def]
    with factory() as session:
        query = select(func.count()).where(Job.tenant_id == tenant.tenant_id)
        return int(session.scalar(query) or 0)


def test_create_stores_spec_and_enqueues_after_commit(client, tenant, enqueued, factory) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/v1/jobs", json=job_body(target_language="Swahili"), headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["queue_position"] >= 1
    # The language is normalised to its code; the paper's low-resource rule picks "full".
    assert job["target_language"] == "sw" and job["spec"]["trainable"] == "full"
    assert job["spec"]["hyperparameters"]["lambda_nll"] == 0.5
    assert enqueued[-1] == job["id"]
    with factory() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None and row.enqueued_at is not None
        types = session.scalars(select(JobEvent.type).where(JobEvent.job_id == row.id)).all()
    assert types == ["queued"]
    shown = client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()
    assert shown["id"] == job["id"] and shown["progress"]["step"] is None


def test_idempotent_retry_returns_same_job(client, tenant, enqueued, factory) -> None:  # type: ignore[no-untyped-def]
    headers = {**tenant.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = client.post("/v1/jobs", json=job_body(), headers=headers)
    sent = len(enqueued)
    second = client.post("/v1/jobs", json=job_body(), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert len(enqueued) == sent  # a retry does not wake a second worker
    assert _jobs_of(factory, tenant) == 1


def test_concurrent_retries_with_one_key_make_one_job(client, tenant, factory) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    headers = {**tenant.headers, "Idempotency-Key": f"race-{uuid.uuid4()}"}
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: client.post("/v1/jobs", json=job_body(), headers=headers), range(4))
        )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert _jobs_of(factory, tenant) == 1


def test_idempotency_key_with_other_body_is_409(client, tenant, factory) -> None:  # type: ignore[no-untyped-def]
    headers = {**tenant.headers, "Idempotency-Key": "same-key"}
    assert client.post("/v1/jobs", json=job_body(), headers=headers).status_code == 201
    response = client.post("/v1/jobs", json=job_body(data_size=40), headers=headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert _jobs_of(factory, tenant) == 1


def test_idempotency_keys_are_per_tenant(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = make_tenant(), make_tenant()
    ids = [
        client.post("/v1/jobs", json=job_body(), headers={**t.headers, "Idempotency-Key": "x"})
        for t in (a, b)
    ]
    assert [r.status_code for r in ids] == [201, 201]
    assert ids[0].json()["id"] != ids[1].json()["id"]


BUILTIN = len(builtin_seed())

INVALID: list[tuple[dict[str, Any], str, str]] = [
    (job_body(target_language="swahilli"), "target_language", "sw (Swahili)"),
    (job_body(target_language="en"), "target_language", "English"),
    (job_body(base_model="gpt2"), "base_model", "tiny-lm"),
    (job_body(base_model="/etc/passwd"), "base_model", "allow-list"),
    (job_body(translator={"model": "facebook/m2m100_1.2B"}), "translator.model", "tiny-mt"),
    (job_body(data_size=BUILTIN + 1), "data_size", str(BUILTIN)),
    (job_body(data_size=7), "data_size", "8"),
    (job_body(hyperparameters={"beta": 0}), "hyperparameters.beta", "greater than 0"),
    (job_body(hyperparameters={"bogus": 1}), "hyperparameters.bogus", "not permitted"),
    (job_body(method="clo", sft_variant="english"), "sft_variant", "only applies"),
    (job_body(method="ppo"), "method", "clo"),
    (job_body(seed_data={"source": "file"}), "seed_data.file_id", "required"),
    (
        job_body(seed_data={"source": "file", "file_id": str(uuid.uuid4())}),
        "seed_data.file_id",
        "not found",
    ),
    (
        job_body(seed_data={"source": "file", "file_id": "../../etc"}),
        "seed_data.file_id",
        "not found",
    ),
    (
        job_body(seed_data={"source": "parallel"}, target_language="yo"),
        "seed_data.source",
        "parallel data",
    ),
    (job_body(data_size=20, evaluation={"heldout_size": 16}), "evaluation.heldout_size", "fewer"),
    (
        job_body(evaluation={"baseline_job_id": str(uuid.uuid4())}),
        "evaluation.baseline_job_id",
        "not found",
    ),
    ({"target_language": "de", "data_size": 32}, "base_model", "Field required"),
]


@pytest.mark.parametrize(("body", "param", "hint"), INVALID, ids=[p for _, p, _ in INVALID])
def test_invalid_job_is_422_naming_the_field(
    client, tenant, enqueued, factory, body, param, hint
) -> None:  # type: ignore[no-untyped-def]
    sent = len(enqueued)
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "user_error"
    assert hint in error["message"]
    assert len(enqueued) == sent and _jobs_of(factory, tenant) == 0


def test_other_tenants_file_cannot_seed_a_job(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    owner, other = make_tenant(), make_tenant()
    lines = b"".join(b'{"prompt": "p%d", "response": "r%d"}\n' % (i, i) for i in range(10))
    uploaded = client.post("/v1/files", content=lines, headers=owner.headers)
    assert uploaded.status_code == 201, uploaded.text
    seed = {"source": "file", "file_id": uploaded.json()["id"]}
    response = client.post(
        "/v1/jobs",
        json=job_body(data_size=10, seed_data=seed, evaluation={"enabled": False}),
        headers=other.headers,
    )
    assert response.status_code == 422 and response.json()["error"]["param"] == "seed_data.file_id"
    own = client.post(
        "/v1/jobs",
        json=job_body(data_size=10, seed_data=seed, evaluation={"enabled": False}),
        headers=owner.headers,
    )
    assert own.status_code == 201, own.text
    too_many = client.post(
        "/v1/jobs", json=job_body(data_size=11, seed_data=seed), headers=owner.headers
    )
    assert too_many.status_code == 422 and too_many.json()["error"]["param"] == "data_size"


def test_queued_jobs_past_the_bound_are_429_with_retry_after(pg_url, data_dir, make_tenant) -> None:  # type: ignore[no-untyped-def]
    sent: list[str] = []
    settings = make_settings(
        pg_url, data_dir, max_concurrent_jobs_per_tenant=2, max_queued_jobs_per_tenant=3
    )
    app = create_app(settings, sent.append)
    tenant = make_tenant()
    with TestClient(app) as limited:
        created = [
            limited.post("/v1/jobs", json=job_body(), headers=tenant.headers) for _ in range(3)
        ]
        # More than the running cap is fine: they wait queued (before: 429 at the 3rd).
        assert [r.status_code for r in created] == [201, 201, 201]
        refused = limited.post("/v1/jobs", json=job_body(), headers=tenant.headers)
        assert refused.status_code == 429
        assert refused.headers["retry-after"].isdigit()
        assert refused.json()["error"]["code"] == "queued_job_limit"
        assert "limit is 3" in refused.json()["error"]["message"]
        # Only the running cap's worth is woken; the third waits for one of them to end.
        assert sent == [r.json()["id"] for r in created[:2]]
        # Cancelling a queued job frees a queued slot at once, and wakes the held third
        # (the second, already woken, gets a duplicate its claim ignores).
        cancel = limited.post(f"/v1/jobs/{sent[0]}/cancel", headers=tenant.headers)
        assert cancel.json()["status"] == "cancelled"
        ids = [r.json()["id"] for r in created]
        assert sent[2:] == [ids[1], ids[2]]
        assert limited.post("/v1/jobs", json=job_body(), headers=tenant.headers).status_code == 201
    assert len(sent) == 4  # the new one waits: two are queued ahead within the cap


def test_request_body_size_limit_is_413(client, tenant) -> None:  # type: ignore[no-untyped-def]
    huge = job_body(metadata={"note": "x" * 2_000_000})
    response = client.post("/v1/jobs", json=huge, headers=tenant.headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
