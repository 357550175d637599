"""First contact: the minimal POST /v1/jobs a new user sends works."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from service.catalog import ServiceCatalog
from tests.api.conftest import make_settings
from tests.support.api import MODELS
from tests.support.tenants import TenantKey


def test_minimal_job_uses_the_default_translator_and_fits_heldout(
    client: TestClient, tenant: TenantKey
) -> None:
    body = {"base_model": "tiny-lm", "target_language": "de", "data_size": 8}
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    spec = response.json()["spec"]
    assert spec["translator"]["model"] == "tiny-mt"  # the only allow-listed translator
    assert spec["evaluation"]["heldout_size"] == 0


def test_small_data_shrinks_the_default_heldout(client: TestClient, tenant: TenantKey) -> None:
    body = {"base_model": "tiny-lm", "target_language": "de", "data_size": 20}
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["evaluation"]["heldout_size"] == 12


def test_catalog_default_translator_prefers_the_setting_then_the_spec_default(
    pg_url: str, data_dir: Path, factory: sessionmaker[Session]
) -> None:
    tenant = uuid.uuid4()
    hub = {"source": "/m/m2m", "kind": "translator"}
    with factory() as session:
        listed = make_settings(pg_url, data_dir, models={**MODELS, "facebook/m2m100_1.2B": hub})
        assert ServiceCatalog(session, listed, tenant).default_translator() is None  # spec's
        chosen = make_settings(pg_url, data_dir, default_translator="other-mt")
        assert ServiceCatalog(session, chosen, tenant).default_translator() == "other-mt"
        assert (
            ServiceCatalog(session, make_settings(pg_url, data_dir), tenant).default_translator()
            == "tiny-mt"
        )


def test_every_validation_problem_is_returned_at_once(
    client: TestClient, tenant: TenantKey
) -> None:
    body = {"target_language": "de", "data_size": 2, "hyperparameters": {"beta": 0}}
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    details = error["details"]
    assert {d["param"] for d in details} == {"base_model", "data_size", "hyperparameters.beta"}
    # The first problem stays in param/message, for clients that read only those.
    assert (error["param"], details[0]["param"]) == ("base_model", "base_model")
    assert error["message"].startswith("base_model: Field required")
    assert all(d["message"] and d["code"] for d in details)
    by_param = {d["param"]: d for d in details}
    assert by_param["data_size"]["code"] == "greater_than_equal"
    assert "8" in by_param["data_size"]["message"]


def test_language_tags_users_type_are_accepted(client: TestClient, tenant: TenantKey) -> None:
    for tag, code in [("ko-KR", "ko"), ("swh", "sw"), ("pt-BR", "pt"), ("zh-Hant", "zh")]:
        body = {"base_model": "tiny-lm", "target_language": tag, "data_size": 8}
        response = client.post("/v1/jobs", json=body, headers=tenant.headers)
        assert response.status_code == 201, response.text
        assert response.json()["target_language"] == code
        notes = response.json()["notes"]
        # Only the script is lost (zh-Hant -> zh); a region or an ISO 639-3 code is exact.
        assert (tag == "zh-Hant") == any("Hant" in n for n in notes), (tag, notes)
        read = client.get(f"/v1/jobs/{response.json()['id']}", headers=tenant.headers)
        assert read.json()["notes"] == notes
