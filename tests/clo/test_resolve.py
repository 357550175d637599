"""clo.resolve on first contact: defaults the client never set must not refuse its job."""

from __future__ import annotations

from typing import Any

import pytest

from clo.errors import CloError
from clo.resolve import LocalCatalog, ModelKind, ModelRef, resolve_job
from clo.spec import JobSpec


class _Catalog(LocalCatalog):
    """An allow-list of one base model and the given translators."""

    def __init__(self, translators: list[str], default: str | None = None) -> None:
        self._translators = translators
        self._default = default

    def model(self, name: str, kind: ModelKind) -> ModelRef | None:
        allowed = self._translators if kind == "translator" else ["lm"]
        return ModelRef(name=name, source=f"/m/{name}") if name in allowed else None

    def model_names(self, kind: ModelKind) -> list[str]:
        return list(self._translators) if kind == "translator" else ["lm"]

    def default_translator(self) -> str | None:
        return self._default


def _spec(**fields: Any) -> JobSpec:
    return JobSpec.model_validate(
        {"base_model": "lm", "target_language": "de", "data_size": 32, **fields}
    )


def test_unset_translator_gets_the_deployments_default_and_is_stored() -> None:
    resolved = resolve_job(_spec(), _Catalog(["tiny-mt"], default="tiny-mt"))
    assert resolved.translator is not None and resolved.translator.name == "tiny-mt"
    assert resolved.spec.translator.model == "tiny-mt"
    # Stored and read back (the worker's path), the choice stays.
    again = JobSpec.model_validate(resolved.spec.model_dump(mode="json"))
    assert resolve_job(again, _Catalog(["tiny-mt", "other"])).translator.name == "tiny-mt"  # type: ignore[union-attr]


def test_unset_translator_keeps_other_translator_settings() -> None:
    spec = _spec(translator={"num_beams": 2})
    resolved = resolve_job(spec, _Catalog(["tiny-mt"], default="tiny-mt"))
    assert resolved.spec.translator.model == "tiny-mt"
    assert resolved.spec.translator.num_beams == 2


def test_explicit_translator_off_the_list_is_still_refused() -> None:
    spec = _spec(translator={"model": "facebook/m2m100_1.2B"})
    with pytest.raises(CloError) as caught:
        resolve_job(spec, _Catalog(["tiny-mt"], default="tiny-mt"))
    assert (caught.value.code, caught.value.param) == ("model_not_allowed", "translator.model")
    assert "tiny-mt" in str(caught.value)


def test_no_usable_default_says_which_setting_to_change() -> None:
    with pytest.raises(CloError) as caught:
        resolve_job(_spec(), _Catalog([]))
    assert caught.value.code == "model_not_allowed"
    assert "CLO_DEFAULT_TRANSLATOR" in str(caught.value) and "parallel" in str(caught.value)


def test_parallel_seed_data_needs_no_translator() -> None:
    spec = _spec(seed_data={"source": "parallel"}, data_size=8)
    assert resolve_job(spec, _Catalog([])).translator is None


@pytest.mark.parametrize(("data_size", "heldout"), [(8, 0), (9, 1), (20, 12), (24, 16), (100, 16)])
def test_default_heldout_shrinks_to_leave_the_minimum_for_training(
    data_size: int, heldout: int
) -> None:
    resolved = resolve_job(_spec(data_size=data_size), _Catalog(["t"], default="t"))
    assert resolved.spec.evaluation.heldout_size == heldout


def test_explicit_heldout_that_leaves_too_little_is_refused() -> None:
    spec = _spec(data_size=20, evaluation={"heldout_size": 16})
    with pytest.raises(CloError) as caught:
        resolve_job(spec, _Catalog(["t"], default="t"))
    assert (caught.value.code, caught.value.param) == (
        "heldout_too_large",
        "evaluation.heldout_size",
    )
    assert "at most 12" in str(caught.value)


def test_tag_resolves_and_the_resolution_notes_what_was_dropped() -> None:
    resolved = resolve_job(_spec(target_language="zh-Hant"), _Catalog(["t"], default="t"))
    assert resolved.spec.target_language == "zh"
    assert resolved.language_note is not None and "Hant" in resolved.language_note
    assert (
        resolve_job(_spec(target_language="kor"), _Catalog(["t"], default="t")).language_note
        is None
    )


def test_an_english_tag_is_refused() -> None:
    with pytest.raises(CloError) as caught:
        resolve_job(_spec(target_language="en-US"), _Catalog(["t"], default="t"))
    assert caught.value.param == "target_language" and "English" in str(caught.value)
