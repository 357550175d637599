"""The worker's translation engine comes from CLO_TRANSLATOR_BACKEND / _COMPUTE_TYPE."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from clo.translate.config import Backend, ComputeType
from persistence.settings import Settings


def test_translator_backend_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().translator_backend == "transformers"  # unchanged unless set
    monkeypatch.setenv("CLO_TRANSLATOR_BACKEND", "ctranslate2")
    monkeypatch.setenv("CLO_TRANSLATOR_COMPUTE_TYPE", "int8")
    settings = Settings()
    assert (settings.translator_backend, settings.translator_compute_type) == (
        "ctranslate2",
        "int8",
    )


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"translator_backend": "fairseq"}, "translator_backend"),
        ({"translator_backend": "ctranslate2", "translator_compute_type": "int4"}, "compute_type"),
        ({"translator_compute_type": "int8"}, "applies only to translator_backend ctranslate2"),
    ],
)
def test_bad_translator_settings_name_the_setting(overrides: dict, complaint: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match=complaint):
        Settings(**overrides)


def test_the_settings_offer_exactly_the_translators_backends_and_compute_types() -> None:
    """persistence/ may not import clo/, so the worker setting repeats clo's two Literals;
    a type added to one and not the other would be refused by one layer only."""
    fields = Settings.model_fields
    assert get_args(fields["translator_backend"].annotation) == get_args(Backend)
    assert get_args(fields["translator_compute_type"].annotation) == get_args(ComputeType)
