"""Settings: production refuses the embedded defaults and unpinned models."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from persistence.settings import Settings


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({}, "Postgres"),
        ({"database_url": "postgresql+psycopg://db/clo"}, "Redis"),
        ({"database_url": "postgresql+psycopg://db/clo", "broker_url": "redis://r"}, "ADMIN"),
        (
            {
                "database_url": "postgresql+psycopg://db/clo",
                "broker_url": "redis://r",
                "admin_secret": "s",
                "models": {"m": {"source": "org/model"}},
            },
            "pinned",
        ),
    ],
)
def test_production_refuses_unsafe_defaults(overrides: dict, complaint: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match=complaint):
        Settings(environment="production", **overrides)


def test_production_accepts_pinned_models() -> None:
    settings = Settings(
        environment="production",
        database_url="postgresql+psycopg://db/clo",
        broker_url="redis://r",
        admin_secret="s",
        models={"qwen": {"source": "Qwen/Qwen2.5-7B-Instruct", "revision": "a" * 40}},
    )
    assert settings.resolve_model("qwen", "causal_lm") is not None
    assert settings.resolve_model("qwen", "translator") is None
    assert settings.resolve_model("/etc/passwd") is None
