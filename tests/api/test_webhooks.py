"""Webhook endpoints over the real API and Postgres: register, list, delete, test, validation;
the test endpoint POSTs to a real loopback receiver that checks the signature."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from api.app import create_app
from persistence.db import session_scope
from persistence.models import WebhookEndpoint
from service_cli.processes import free_port
from tests.api.conftest import make_settings
from tests.support.webhook_receiver import webhook_receiver

ALL_TYPES = [
    "job.queued",
    "job.running",
    "job.cancelling",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
]


@pytest.fixture(autouse=True)
def no_endpoints_left(factory) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Every test starts and ends with no endpoint, so dispatcher passes see only theirs."""
    yield
    with session_scope(factory) as session:
        session.execute(delete(WebhookEndpoint))


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connection refused


def test_register_shows_the_secret_once_and_lists_without_it(client, tenant) -> None:  # type: ignore[no-untyped-def]
    url = _dead_url()
    created = client.post(
        "/v1/webhooks",
        json={"url": url, "event_types": ["job.succeeded", "job.failed"], "description": "ci"},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["secret_hint"] == body["secret"][:10] + "..."
    assert (body["url"], body["event_types"], body["description"]) == (
        url,
        ["job.succeeded", "job.failed"],
        "ci",
    )
    listed = client.get("/v1/webhooks", headers=tenant.headers).json()
    assert [e["id"] for e in listed["data"]] == [body["id"]]
    assert "secret" not in listed["data"][0]
    one = client.get(f"/v1/webhooks/{body['id']}", headers=tenant.headers).json()
    assert "secret" not in one and one["secret_hint"] == body["secret_hint"]


def test_event_types_default_to_every_state_change(client, tenant) -> None:  # type: ignore[no-untyped-def]
    created = client.post("/v1/webhooks", json={"url": _dead_url()}, headers=tenant.headers)
    assert created.status_code == 201 and created.json()["event_types"] == ALL_TYPES


def test_delete_stops_and_removes_the_endpoint(client, tenant) -> None:  # type: ignore[no-untyped-def]
    endpoint = client.post("/v1/webhooks", json={"url": _dead_url()}, headers=tenant.headers)
    path = f"/v1/webhooks/{endpoint.json()['id']}"
    assert client.delete(path, headers=tenant.headers).status_code == 204
    assert client.get(path, headers=tenant.headers).status_code == 404
    assert client.delete(path, headers=tenant.headers).status_code == 404
    assert client.get("/v1/webhooks", headers=tenant.headers).json()["data"] == []


def test_other_tenants_endpoint_is_404_everywhere(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    owner, other = make_tenant(), make_tenant()
    endpoint = client.post("/v1/webhooks", json={"url": _dead_url()}, headers=owner.headers)
    path = f"/v1/webhooks/{endpoint.json()['id']}"
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/test"), ("GET", "/deliveries")]:
        response = client.request(method, path + suffix, headers=other.headers)
        assert response.status_code == 404, (method, suffix)
        assert response.json()["error"]["code"] == "webhook_not_found"
    assert client.get("/v1/webhooks", headers=other.headers).json()["data"] == []
    assert client.get(path, headers=owner.headers).status_code == 200  # still there


def test_malformed_endpoint_id_is_404(client, tenant) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/v1/webhooks/not-a-uuid", headers=tenant.headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "webhook_not_found"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/hook",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "127.0.0.1:8080/hook",
        "http://",
        "https:///path-only",
        "http://127.0.0.1:99999/hook",
        "http://127.0.0.1/hook with space",
        "http://127.0.0.1/\x7f",
        "http://a..b/hook",
        "http://a\u200b/hook",
        "http://" + "a" * 300 + "/hook",
        "http://127.0.0.1/" + "a" * 2100,
        "",
    ],
)
def test_bad_url_is_422_naming_url(client, tenant, url) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/webhooks", json={"url": url}, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "validation_error",
        "url",
        "user_error",
    )


@pytest.mark.parametrize(
    ("event_types", "param"),
    [
        (["job.exploded"], "event_types[0]"),
        ([], "event_types"),
        (["job.failed", "job.failed"], "event_types"),
        ("job.failed", "event_types"),
    ],
)
def test_bad_event_types_are_422_naming_them(client, tenant, event_types, param) -> None:  # type: ignore[no-untyped-def]
    body = {"url": _dead_url(), "event_types": event_types}
    response = client.post("/v1/webhooks", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_field_is_422(client, tenant) -> None:  # type: ignore[no-untyped-def]
    body = {"url": _dead_url(), "secret": "mine"}
    response = client.post("/v1/webhooks", json=body, headers=tenant.headers)
    assert response.status_code == 422 and response.json()["error"]["param"] == "secret"


def test_endpoint_limit_per_tenant_is_409(client, tenant, settings) -> None:  # type: ignore[no-untyped-def]
    for _ in range(settings.webhook_max_endpoints_per_tenant):
        assert (
            client.post(
                "/v1/webhooks", json={"url": _dead_url()}, headers=tenant.headers
            ).status_code
            == 201
        )
    over = client.post("/v1/webhooks", json={"url": _dead_url()}, headers=tenant.headers)
    assert over.status_code == 409 and over.json()["error"]["code"] == "webhook_limit_reached"


def test_test_endpoint_posts_a_signed_event_and_logs_it(client, tenant) -> None:  # type: ignore[no-untyped-def]
    with webhook_receiver() as receiver:
        created = client.post("/v1/webhooks", json={"url": receiver.url}, headers=tenant.headers)
        receiver.secret = created.json()["secret"]
        endpoint_id = created.json()["id"]
        response = client.post(f"/v1/webhooks/{endpoint_id}/test", headers=tenant.headers)
        assert response.status_code == 200, response.text
        (got,) = receiver.wait_for(1)
    delivery = response.json()
    assert got.signature_ok, got.headers
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["CLO-Webhook-Id"] == delivery["id"]
    assert got.payload["type"] == "webhook.test" == got.headers["CLO-Event-Type"]
    assert got.payload["data"]["endpoint_id"] == endpoint_id
    assert delivery["payload"] == got.payload
    assert (delivery["status"], delivery["attempt_count"], delivery["job_id"]) == (
        "succeeded",
        1,
        None,
    )
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    log = client.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=tenant.headers).json()
    assert [d["id"] for d in log["data"]] == [delivery["id"]]


def test_signature_does_not_verify_under_another_secret(client, tenant) -> None:  # type: ignore[no-untyped-def]
    with webhook_receiver() as receiver:
        created = client.post("/v1/webhooks", json={"url": receiver.url}, headers=tenant.headers)
        receiver.secret = "whsec_not-the-endpoints-secret"
        client.post(f"/v1/webhooks/{created.json()['id']}/test", headers=tenant.headers)
        (got,) = receiver.wait_for(1)
    assert not got.signature_ok


def test_test_endpoint_reports_an_unreachable_receiver(client, tenant) -> None:  # type: ignore[no-untyped-def]
    created = client.post("/v1/webhooks", json={"url": _dead_url()}, headers=tenant.headers)
    response = client.post(f"/v1/webhooks/{created.json()['id']}/test", headers=tenant.headers)
    assert response.status_code == 200, response.text
    delivery = response.json()
    assert delivery["status"] == "failed" and delivery["next_attempt_at"] is None
    (attempt,) = delivery["attempts"]
    assert attempt["status_code"] is None and "ConnectError" in attempt["error"]


def test_test_endpoint_reports_the_receivers_error_status(client, tenant) -> None:  # type: ignore[no-untyped-def]
    with webhook_receiver() as receiver:
        receiver.always_fail = True
        created = client.post("/v1/webhooks", json={"url": receiver.url}, headers=tenant.headers)
        receiver.secret = created.json()["secret"]
        response = client.post(f"/v1/webhooks/{created.json()['id']}/test", headers=tenant.headers)
    delivery = response.json()
    assert delivery["status"] == "failed" and delivery["last_status_code"] == 500
    assert delivery["last_error"] == "HTTP 500: receiver failing on purpose"


@pytest.fixture
def public_only_client(pg_url, data_dir) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The API as production runs it by default: webhooks only to public addresses."""
    settings = make_settings(pg_url, data_dir, webhook_allow_private_networks=False)
    with TestClient(create_app(settings, enqueue=lambda _job_id: None)) as c:
        yield c


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "192.168.0.5", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]"],
)
def test_private_address_in_url_is_422_when_private_networks_are_off(  # type: ignore[no-untyped-def]
    public_only_client, tenant, host
) -> None:
    body = {"url": f"http://{host}:8080/hook"}
    response = public_only_client.post("/v1/webhooks", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("webhook_url_not_public", "url")


def test_a_name_that_resolves_to_loopback_is_not_sent_to(public_only_client, tenant) -> None:  # type: ignore[no-untyped-def]
    with webhook_receiver() as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        created = public_only_client.post("/v1/webhooks", json={"url": url}, headers=tenant.headers)
        assert created.status_code == 201, created.text
        path = f"/v1/webhooks/{created.json()['id']}/test"
        delivery = public_only_client.post(path, headers=tenant.headers).json()
    assert receiver.requests == []
    assert delivery["status"] == "failed" and delivery["last_status_code"] is None
    assert "non-public address" in delivery["last_error"]
