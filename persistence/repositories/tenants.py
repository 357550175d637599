"""Tenants and their API keys."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from persistence.keys import NewKey, generate_key, hash_key
from persistence.models import ApiKey, Tenant, utcnow


def create_tenant(session: Session, name: str) -> Tenant:
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return tenant


def get_tenant_by_name(session: Session, name: str) -> Tenant | None:
    return session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()


def get_tenant(session: Session, tenant_id: uuid.UUID) -> Tenant | None:
    return session.get(Tenant, tenant_id)


def create_api_key(session: Session, tenant: Tenant) -> tuple[ApiKey, NewKey]:
    """A new key row; the secret in the returned NewKey is shown once and never stored."""
    new = generate_key()
    row = ApiKey(tenant_id=tenant.id, prefix=new.prefix, key_hash=new.key_hash)
    session.add(row)
    session.flush()
    return row, new


def tenant_for_key(session: Session, secret: str) -> Tenant | None:
    """The tenant owning an unrevoked key, or None; looked up by hash, never by the secret."""
    query = (
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None))
    )
    return session.scalars(query).one_or_none()


def revoke_key(session: Session, prefix: str) -> bool:
    """Revoke the key with this display prefix; False when none is active."""
    revoked = session.execute(
        update(ApiKey)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(ApiKey.id)
    ).first()
    return revoked is not None


def list_keys(session: Session, tenant: Tenant) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.created_at)
        )
    )


def lock_tenant(session: Session, tenant_id: uuid.UUID) -> None:
    """Row-lock the tenant until commit (Postgres), serialising per-tenant limit checks."""
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


def active_key_id(session: Session, secret: str) -> uuid.UUID | None:
    """The id of the unrevoked key with this secret (what a download link records)."""
    return session.scalars(
        select(ApiKey.id).where(ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None))
    ).one_or_none()


def active_key_tenant(session: Session, key_id: uuid.UUID) -> uuid.UUID | None:
    """The tenant of key `key_id` while it is unrevoked; None once revoked (or deleted).

    Checked between the events of an open stream and when a link the key issued is used, so
    a revocation takes effect on those too, not only on the next request."""
    return session.scalars(
        select(ApiKey.tenant_id).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    ).one_or_none()
