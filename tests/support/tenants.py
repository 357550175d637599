"""Tenants with one API key each, written straight to the database (what `clo admin` does)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.repositories import tenants as tenants_repo


@dataclass
class TenantKey:
    tenant_id: uuid.UUID
    name: str
    key: str
    prefix: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def new_tenant(factory: sessionmaker[Session], name_prefix: str = "t") -> TenantKey:
    """A new tenant (unique name) with one API key; `key` is the secret, shown only here."""
    with session_scope(factory) as session:
        tenant = tenants_repo.create_tenant(session, f"{name_prefix}-{uuid.uuid4().hex[:12]}")
        row, new = tenants_repo.create_api_key(session, tenant)
        return TenantKey(tenant.id, tenant.name, new.secret, row.prefix)
