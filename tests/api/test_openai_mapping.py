"""The OpenAI <-> native translation (api/openai_compat/mapping.py): pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.errors import InvalidRequest
from api.jobs.schemas import EventRead, JobRead, Progress
from api.openai_compat import mapping
from api.openai_compat.schemas import FineTuningJobCreate
from clo.spec import JobSpec

FILE = "0b7d0a52-6f4e-4b0c-9d36-2d3c0a1c2f10"


def _create(**fields: object) -> FineTuningJobCreate:
    body: dict[str, object] = {"model": "tiny-lm", "training_file": FILE, "target_language": "sw"}
    body.update(fields)
    return FineTuningJobCreate.model_validate(body)


@pytest.mark.parametrize(
    ("method", "native"),
    [
        (None, "clo"),
        ({"type": "clo"}, "clo"),
        ({"type": "supervised"}, "sft"),
        ({"type": "dpo"}, "dpo"),
        ({"type": "dpo", "dpo": {"sft_first": True}}, "sft+dpo"),
    ],
)
def test_method_types_map_to_native_methods(method: object, native: str) -> None:
    spec = JobSpec.model_validate(mapping.to_native(_create(method=method), 40).spec)
    assert spec.method == native
    assert spec.seed_data.source == "file" and spec.seed_data.file_id == FILE
    assert spec.data_size == 40  # defaults to every example of training_file


def test_hyperparameters_map_with_the_learning_rate_as_a_multiple() -> None:
    method = {
        "type": "dpo",
        "dpo": {"hyperparameters": {"n_epochs": 3, "learning_rate_multiplier": 4, "beta": 0.2}},
    }
    body = _create(
        method=method,
        hyperparameters={"batch_size": 8, "n_epochs": 1},  # method's values win
        seed=11,
        suffix="kiswahili",
        metadata={"team": "nlp"},
        clo={"hyperparameters": {"max_steps": 5}, "trainable": "lora"},
    )
    spec = JobSpec.model_validate(mapping.to_native(body, 40).spec)
    hp = spec.hyperparameters
    assert (hp.epochs, hp.batch_size, hp.beta, hp.seed, hp.max_steps) == (3, 8, 0.2, 11, 5)
    assert hp.learning_rate == pytest.approx(4 * mapping.BASE_LEARNING_RATE)
    assert spec.trainable == "lora"
    assert spec.metadata == {"team": "nlp", "suffix": "kiswahili"}
    out = mapping.method_out(spec.model_dump(mode="json"))
    assert out["type"] == "dpo" and out["dpo"]["sft_first"] is False
    assert out["dpo"]["hyperparameters"]["learning_rate_multiplier"] == pytest.approx(4)


def test_auto_keeps_native_defaults_and_extensions_may_come_through_metadata() -> None:
    body = _create(
        target_language=None,
        metadata={"target_language": "ko", "data_size": "12"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": "auto"}}},
    )
    translation = mapping.to_native(body, None)
    spec = JobSpec.model_validate(translation.spec)
    assert (spec.target_language, spec.data_size, spec.hyperparameters.epochs) == ("ko", 12, 1.0)
    assert translation.param("data_size") == "metadata.data_size"


def test_native_error_params_are_named_as_the_request_named_them() -> None:
    method = {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 2}}}
    translation = mapping.to_native(_create(method=method, clo={"translator": {}}), 9)
    assert translation.param("base_model") == "model"
    assert translation.param("seed_data.file_id") == "training_file"
    assert translation.param("hyperparameters.batch_size") == (
        "method.supervised.hyperparameters.batch_size"
    )
    assert translation.param("translator.model") == "clo.translator.model"
    assert translation.param("evaluation.heldout_size") == "evaluation.heldout_size"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"validation_file": FILE}, "validation_file"),
        ({"integrations": [{"type": "wandb"}]}, "integrations"),
        ({"method": {"type": "reinforcement"}}, "method.type"),
        ({"target_language": None}, "target_language"),
        ({"clo": {"base_model": "x"}}, "clo.base_model"),
        ({"metadata": {"data_size": "many"}}, "metadata.data_size"),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"beta": 1}}}},
            "method.supervised.hyperparameters.beta",
        ),
    ],
)
def test_unsupported_or_missing_fields_name_their_param(fields: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        mapping.to_native(_create(**fields), 10)
    assert caught.value.param == param and caught.value.status_code == 422


def _job(status: str, **fields: object) -> JobRead:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    spec = JobSpec.model_validate(mapping.to_native(_create(), 20).spec).model_dump(mode="json")
    values: dict[str, object] = dict(
        id="6f1c1b9e-5a43-4c38-9a0e-7b0f1d2e3c4a",
        status=status,
        base_model="tiny-lm",
        target_language="sw",
        method="clo",
        data_size=20,
        progress=Progress(),
        attempt=1,
        max_attempts=3,
        evaluation_ready=False,
        artifacts=[],
        spec=spec,
        created_at=now,
        updated_at=now,
    )
    values.update(fields)
    return JobRead.model_validate(values)


def test_job_view_maps_status_times_and_fine_tuned_model() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    running = mapping.job_out(_job("cancelling", progress=Progress(eta_seconds=30.0)), "acme")
    assert (running.status, running.clo_status, running.fine_tuned_model) == (
        "running",
        "cancelling",
        None,
    )
    assert running.estimated_finish is None  # only a running job has one
    eta = mapping.job_out(_job("running", progress=Progress(eta_seconds=30.0)), "acme")
    assert eta.estimated_finish == int(now.timestamp()) + 30
    done = mapping.job_out(_job("succeeded", finished_at=now + timedelta(seconds=5)), "acme")
    assert done.fine_tuned_model == f"ft:tiny-lm:{done.id}"
    assert done.finished_at == int(now.timestamp()) + 5 and done.created_at == int(now.timestamp())
    assert done.training_file == FILE and done.organization_id == "acme"
    assert done.hyperparameters.learning_rate_multiplier == 1.0


def test_event_levels_and_ids_round_trip() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    job_id = "6f1c1b9e-5a43-4c38-9a0e-7b0f1d2e3c4a"
    levels = {
        kind: mapping.event_out(
            job_id, EventRead(id=3, type=kind, message="m", created_at=at)
        ).level
        for kind in ("stage", "requeued", "failed")
    }
    assert levels == {"stage": "info", "requeued": "warn", "failed": "error"}
    event_id = mapping.event_id(job_id, 42)
    assert mapping.seq_of(event_id, "ftevent", job_id) == 42
    for foreign in (mapping.event_id("another-job", 42), "ftevent-x", event_id + "x"):
        with pytest.raises(InvalidRequest):
            mapping.seq_of(foreign, "ftevent", job_id)
