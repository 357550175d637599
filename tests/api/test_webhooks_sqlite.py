"""The embedded default (SQLite, one dispatcher) delivers webhooks and runs retention too."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from persistence.artifact_store import ArtifactStore, make_key
from persistence.db import make_engine, make_session_factory, session_scope
from persistence.migrate import upgrade_head
from persistence.models import utcnow
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import tenants as tenants_repo
from persistence.repositories import webhooks as webhooks_repo
from persistence.settings import Settings
from service.dispatcher import run_once
from service.webhooks.sender import http_client
from tests.support.webhook_receiver import webhook_receiver


def test_sqlite_dispatcher_pass_delivers_and_applies_retention(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clo.db'}"
    upgrade_head(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    settings = Settings(data_dir=tmp_path, database_url=url, artifact_retention_days=1)
    store = ArtifactStore(settings.artifact_root)
    with webhook_receiver() as receiver:
        with session_scope(factory) as session:
            tenant = tenants_repo.create_tenant(session, "embedded")
            endpoint = webhooks_repo.create_endpoint(
                session,
                tenant.id,
                url=receiver.url,
                event_types=["job.succeeded"],
                description="",
                secret="whsec_embedded",
            )
            receiver.secret = endpoint.secret
            spec = {"base_model": "tiny", "target_language": "de", "data_size": 8}
            job = jobs_repo.create_job(session, tenant_id=tenant.id, spec=spec, max_attempts=3)
            job.status, job.finished_at = "succeeded", utcnow() - timedelta(days=3)
            events_repo.append_event(session, job.id, "succeeded", "done")
            stored = store.write_bytes(make_key("jobs", str(job.id), "a.tar"), os.urandom(99))
            artifacts_repo.add_artifact(session, job.id, "a.tar", "adapter", stored)
        path = store.resolve(stored.key)
        with http_client(settings) as client:
            run_once(factory, settings, client, store)
            run_once(factory, settings, client, store)  # a second pass sends nothing again
        (got,) = receiver.wait_for(1)
    assert got.signature_ok and got.payload["type"] == "job.succeeded"
    assert len(receiver.requests) == 1
    assert not path.exists()
    with factory() as session:
        assert artifacts_repo.list_artifacts(session, job.id) == []
    engine.dispose()
