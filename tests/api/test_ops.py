"""healthz, readyz, Prometheus metrics, catalogue, and the error envelope on every failure."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import job_body, make_settings

DEAD_PG = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1"


def _is_envelope(body: dict) -> bool:  # type: ignore[type-arg]
    return set(body) == {"error"} and {"type", "code", "message", "param"} <= set(body["error"])


def test_healthz_and_readyz(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": {"ok": True}, "broker": {"ok": True}}


def test_readyz_503_names_the_broken_dependency(pg_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(pg_url, tmp_path, broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings, lambda _id: None)) as c:
        body = c.get("/readyz")
        assert body.status_code == 503
        assert body.json()["checks"]["database"] == {"ok": True}
        assert body.json()["checks"]["broker"]["ok"] is False


def test_database_down_is_503_not_500(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(DEAD_PG, tmp_path)
    with TestClient(create_app(settings, lambda _id: None)) as c:
        response = c.get("/v1/jobs", headers={"Authorization": "Bearer clo_whatever"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "database_unavailable"
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200


def test_metrics_exposes_requests_and_job_counts(client, tenant) -> None:  # type: ignore[no-untyped-def]
    client.post("/v1/jobs", json=job_body(), headers=tenant.headers)
    text = client.get("/metrics").text
    assert 'clo_http_requests_total{method="POST",route="/v1/jobs",status="201"}' in text
    assert 'clo_jobs{status="queued"}' in text


def test_catalogue(client, tenant) -> None:  # type: ignore[no-untyped-def]
    languages = {
        lang["code"]: lang for lang in client.get("/v1/languages", headers=tenant.headers).json()
    }
    assert {"zh", "de", "ko", "id", "sw", "yo"} <= {
        c for c, v in languages.items() if v["in_paper"]
    }
    assert languages["sw"]["recommended_trainable"] == "full"
    assert languages["de"]["recommended_trainable"] == "attention"
    listed = client.get("/v1/models", headers=tenant.headers).json()
    assert listed["object"] == "list"  # the envelope OpenAI's client.models.list() reads
    models = listed["data"]
    assert {(m["name"], m["kind"]) for m in models} == {
        ("tiny-lm", "causal_lm"),
        ("tiny-lm-2", "causal_lm"),
        ("tiny-mt", "translator"),
    }
    assert all(m["source"] is None for m in models)  # local paths are not disclosed
    assert all(m["id"] == m["name"] and m["object"] == "model" for m in models)


def test_error_envelope_everywhere(client, tenant) -> None:  # type: ignore[no-untyped-def]
    cases = [
        client.get("/nope"),
        client.delete("/v1/jobs", headers=tenant.headers),
        client.post(
            "/v1/jobs",
            content=b"{not json",
            headers={**tenant.headers, "Content-Type": "application/json"},
        ),
        client.post("/v1/jobs", json=[1, 2], headers=tenant.headers),
        client.get("/v1/jobs", headers=tenant.headers, params={"limit": "x"}),
    ]
    assert [r.status_code for r in cases] == [404, 405, 422, 422, 422]
    assert all(_is_envelope(r.json()) for r in cases)
    assert cases[4].json()["error"]["param"] == "limit"
