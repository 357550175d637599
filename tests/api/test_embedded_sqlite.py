"""The embedded default: the API runs a request cycle on SQLite with nothing configured."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from persistence.db import make_engine, make_session_factory, session_scope
from persistence.repositories import tenants as tenants_repo
from persistence.settings import Settings


def test_embedded_defaults_run_a_request_cycle(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CLO_DATA_DIR", str(tmp_path))
    # The demo's tiny models live under data_dir/models and are allow-listed in development.
    for name, model_type in [("tiny-qwen2", "qwen2"), ("tiny-m2m100", "m2m_100")]:
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "config.json").write_text(
            json.dumps({"model_type": model_type})
        )
    settings = Settings(log_json=False)
    assert settings.db_url == f"sqlite:///{tmp_path.resolve() / 'clo.db'}"
    assert settings.broker_url == "filesystem://"
    sent: list[str] = []
    with TestClient(create_app(settings, sent.append)) as c:  # lifespan migrates
        factory = make_session_factory(make_engine(settings.db_url))
        with session_scope(factory) as session:
            _, key = tenants_repo.create_api_key(session, tenants_repo.create_tenant(session, "t"))
        headers = {"Authorization": f"Bearer {key.secret}"}
        body = {
            "base_model": "tiny-qwen2",
            "target_language": "de",
            "data_size": 32,
            "translator": {"model": "tiny-m2m100"},
        }
        created = c.post("/v1/jobs", json=body, headers=headers)
        assert created.status_code == 201, created.text
        assert sent == [created.json()["id"]]
        listed = c.get("/v1/jobs", headers=headers).json()["data"]
        assert [j["id"] for j in listed] == sent
        assert c.post(f"/v1/jobs/{sent[0]}/cancel", headers=headers).json()["status"] == "cancelled"
        events = c.get(f"/v1/jobs/{sent[0]}/events", headers=headers).json()["data"]
        assert [e["type"] for e in events] == ["queued", "cancelled"]
        assert c.get("/readyz").status_code == 200
