"""`clo admin`: migrate the service database, manage tenants and API keys.

The database stack is imported inside each command: every `clo` command (train, evaluate, ...)
starts through the app these are mounted on, and SQLAlchemy + Alembic cost it about 0.5 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

admin_app = typer.Typer(help="Service administration: database migrations, tenants, API keys.")


def _session_factory() -> sessionmaker[Session]:
    from persistence.db import make_engine, make_session_factory
    from persistence.settings import get_settings

    return make_session_factory(make_engine(get_settings().db_url))


@admin_app.command()
def migrate() -> None:
    """Upgrade the database (CLO_DATABASE_URL) to the newest schema."""
    from persistence.migrate import upgrade_head
    from persistence.settings import get_settings

    upgrade_head(get_settings().db_url)
    typer.echo("database is at the newest schema")


@admin_app.command("create-tenant")
def create_tenant(name: str = typer.Argument(..., help="Unique tenant name.")) -> None:
    """Create a tenant."""
    from persistence.db import session_scope
    from persistence.repositories import tenants

    with session_scope(_session_factory()) as session:
        if tenants.get_tenant_by_name(session, name) is not None:
            typer.echo(f"tenant {name!r} already exists", err=True)
            raise typer.Exit(1)
        tenant = tenants.create_tenant(session, name)
        typer.echo(f"created tenant {tenant.name} ({tenant.id})")


@admin_app.command("create-key")
def create_key(
    tenant: str = typer.Option(..., "--tenant", help="Tenant the key acts for."),
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    from persistence.db import session_scope
    from persistence.repositories import tenants

    with session_scope(_session_factory()) as session:
        row = tenants.get_tenant_by_name(session, tenant)
        if row is None:
            typer.echo(f"no tenant {tenant!r}; create it with `clo admin create-tenant`", err=True)
            raise typer.Exit(1)
        key, new = tenants.create_api_key(session, row)
    typer.echo(new.secret)
    typer.echo(
        f"key {key.prefix}… for tenant {tenant}: store it now, it is not shown again", err=True
    )


@admin_app.command("revoke-key")
def revoke_key(
    prefix: str = typer.Argument(..., help="The key's prefix, e.g. clo_AbCd1234."),
) -> None:
    """Revoke a key; requests with it fail from the next one on."""
    from persistence.db import session_scope
    from persistence.repositories import tenants

    with session_scope(_session_factory()) as session:
        revoked = tenants.revoke_key(session, prefix)
    if not revoked:
        typer.echo(f"no active key with prefix {prefix!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {prefix}")
