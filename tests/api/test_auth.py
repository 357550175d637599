"""API keys: missing, malformed, unknown and revoked keys get 401; keys are stored hashed."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from persistence.db import session_scope
from persistence.models import ApiKey
from persistence.repositories import tenants as tenants_repo


def _assert_401(response, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["type"] == "user_error" and error["code"] == code


def test_missing_and_malformed_keys_are_401(client) -> None:  # type: ignore[no-untyped-def]
    _assert_401(client.get("/v1/jobs"), "missing_api_key")
    _assert_401(client.get("/v1/jobs", headers={"Authorization": "Basic abc"}), "missing_api_key")
    _assert_401(client.get("/v1/jobs", headers={"Authorization": "Bearer "}), "missing_api_key")


def test_unknown_key_is_401(client, tenant) -> None:  # type: ignore[no-untyped-def]
    wrong = {"Authorization": f"Bearer {tenant.key}x"}
    _assert_401(client.get("/v1/jobs", headers=wrong), "invalid_api_key")
    assert client.get("/v1/jobs", headers=tenant.headers).status_code == 200


def test_revoked_key_stops_working_on_next_request(client, tenant, factory) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/v1/models", headers=tenant.headers).status_code == 200
    with session_scope(factory) as session:
        assert tenants_repo.revoke_key(session, tenant.prefix)
    _assert_401(client.get("/v1/models", headers=tenant.headers), "invalid_api_key")


def test_key_is_stored_only_as_sha256(tenant, factory) -> None:  # type: ignore[no-untyped-def]
    with factory() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.prefix == tenant.prefix)).one()
    assert row.key_hash == hashlib.sha256(tenant.key.encode()).hexdigest()
    assert tenant.key not in (row.prefix, row.key_hash)
    assert tenant.key.startswith(row.prefix)
