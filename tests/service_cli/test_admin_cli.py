"""`clo admin`: create a tenant and a key (printed once, works against the API), revoke it."""

from __future__ import annotations

import uuid

from typer.testing import CliRunner

from persistence.settings import get_settings
from service_cli.main import app as cli


def test_admin_key_lifecycle(pg_url, client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CLO_DATABASE_URL", pg_url)
    get_settings.cache_clear()
    runner = CliRunner()
    name = f"cli-{uuid.uuid4().hex[:8]}"
    try:
        assert runner.invoke(cli, ["admin", "migrate"]).exit_code == 0
        created = runner.invoke(cli, ["admin", "create-tenant", name])
        assert created.exit_code == 0, created.output
        assert runner.invoke(cli, ["admin", "create-tenant", name]).exit_code == 1
        made = runner.invoke(cli, ["admin", "create-key", "--tenant", name])
        assert made.exit_code == 0, made.output
        key = made.stdout.strip().splitlines()[0]
        assert key.startswith("clo_") and len(key) > 40
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/v1/jobs", headers=headers).status_code == 200
        assert runner.invoke(cli, ["admin", "create-key", "--tenant", "nobody"]).exit_code == 1
        revoked = runner.invoke(cli, ["admin", "revoke-key", key[:12]])
        assert revoked.exit_code == 0, revoked.output
        assert client.get("/v1/jobs", headers=headers).status_code == 401
        assert runner.invoke(cli, ["admin", "revoke-key", key[:12]]).exit_code == 1
    finally:
        get_settings.cache_clear()
