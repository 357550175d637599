"""The official `openai` SDK against the app in process (TestClient as its HTTP client):
files, jobs, events, checkpoints, models, errors. A real worker: tests/worker/test_openai_sdk.py."""

from __future__ import annotations

import json
import uuid

import openai
import pytest

from persistence.db import session_scope
from persistence.models import Job
from persistence.repositories import events as events_repo
from persistence.repositories import metrics as metrics_repo

TRANSLATOR = {"translator": {"model": "tiny-mt"}}  # the test allow-list's translator


def _sdk(client, key: str) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=key, http_client=client, max_retries=0
    )


def _seed(n: int) -> bytes:
    return b"".join(
        json.dumps({"prompt": f"Question {i}?", "response": f"Answer {i}."}).encode() + b"\n"
        for i in range(n)
    )


@pytest.fixture
def sdk(client, tenant) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return _sdk(client, tenant.key)


def _create(sdk: openai.OpenAI, file_id: str, **fields):  # type: ignore[no-untyped-def]
    extra = {"target_language": "de", "clo": TRANSLATOR}
    extra.update(fields.pop("extra_body", {}))
    return sdk.fine_tuning.jobs.create(
        model="tiny-lm", training_file=file_id, extra_body=extra, **fields
    )


def test_files_create_list_retrieve_delete(sdk: openai.OpenAI) -> None:
    created = sdk.files.create(file=("seed.jsonl", _seed(20)), purpose="fine-tune")
    assert (created.object, created.purpose, created.bytes) == ("file", "fine-tune", len(_seed(20)))
    assert created.n_examples == 20  # type: ignore[attr-defined]
    assert sdk.files.retrieve(created.id).created_at == created.created_at
    assert [f.id for f in sdk.files.list()] == [created.id]
    deleted = sdk.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(created.id)
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        sdk.files.create(file=("b.jsonl", b'{"prompt": 1}\n'), purpose="fine-tune")
    assert bad.value.code == "invalid_jsonl" and bad.value.param == "file"


def test_job_create_is_the_native_job_and_lists_page_by_after(  # type: ignore[no-untyped-def]
    sdk: openai.OpenAI, client, tenant, enqueued
) -> None:
    seed = sdk.files.create(file=("seed.jsonl", _seed(24)), purpose="fine-tune")
    method = {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 2, "learning_rate_multiplier": 3}},
    }
    job = _create(sdk, seed.id, method=method, seed=7, suffix="exp1")
    assert (job.object, job.status, job.model, job.training_file) == (
        "fine_tuning.job",
        "queued",
        "tiny-lm",
        seed.id,
    )
    assert job.method is not None and job.method.type == "supervised"
    assert enqueued[-1] == job.id  # woken like any native job
    native = client.get(f"/v1/jobs/{job.id}", headers=tenant.headers).json()
    assert (native["method"], native["data_size"], native["target_language"]) == ("sft", 24, "de")
    hp = native["spec"]["hyperparameters"]
    assert (hp["epochs"], hp["seed"]) == (2, 7) and hp["learning_rate"] == pytest.approx(15e-6)

    more = [_create(sdk, seed.id).id for _ in range(2)]
    page = sdk.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == more[::-1] and page.has_more
    assert [j.id for j in sdk.fine_tuning.jobs.list(limit=2)] == [*more[::-1], job.id]  # pages on
    assert sdk.fine_tuning.jobs.retrieve(job.id).seed == 7


def test_cancel_and_events_newest_first(sdk: openai.OpenAI) -> None:
    seed = sdk.files.create(file=("seed.jsonl", _seed(16)), purpose="fine-tune")
    job = _create(sdk, seed.id)
    cancelled = sdk.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    events = sdk.fine_tuning.jobs.list_events(job.id, limit=1)
    assert events.data[0].data == {"event": "cancelled"} and events.data[0].level == "warn"
    assert events.has_more
    every = list(sdk.fine_tuning.jobs.list_events(job.id, limit=1))  # pages on by `after`
    assert [e.data["event"] for e in every] == ["cancelled", "queued"]  # type: ignore[index]
    assert all(e.object == "fine_tuning.job.event" for e in every)


def test_checkpoints_and_fine_tuned_model(sdk: openai.OpenAI, factory) -> None:  # type: ignore[no-untyped-def]
    seed = sdk.files.create(file=("seed.jsonl", _seed(16)), purpose="fine-tune")
    job = _create(sdk, seed.id)
    job_id = uuid.UUID(job.id)
    with session_scope(factory) as session:  # what the worker records as it trains
        metrics_repo.record_metrics(session, job_id, [(2, {"loss": 1.5}), (4, {"loss": 0.75})])
        for step in (2, 4):
            events_repo.append_event(session, job_id, "checkpoint", "c", {"step": step})
        row = session.get(Job, job_id)
        assert row is not None
        row.status = "succeeded"
    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job.id)
    assert [(c.step_number, c.metrics.train_loss) for c in checkpoints.data] == [
        (4, 0.75),
        (2, 1.5),
    ]
    done = sdk.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and done.fine_tuned_model == f"ft:tiny-lm:{job.id}"
    assert checkpoints.data[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-4"
    model = sdk.models.retrieve(done.fine_tuned_model)
    assert model.owned_by == done.organization_id and model.job_id == job.id  # type: ignore[attr-defined]
    listed = {m.id for m in sdk.models.list()}
    assert {"tiny-lm", "tiny-mt", done.fine_tuned_model} <= listed
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve(f"ft:tiny-lm:{uuid.uuid4()}")


def test_errors_parse_as_openai_exceptions(sdk: openai.OpenAI, client) -> None:  # type: ignore[no-untyped-def]
    seed = sdk.files.create(file=("seed.jsonl", _seed(16)), purpose="fine-tune")
    with pytest.raises(openai.AuthenticationError):
        _sdk(client, "sk-not-a-key").fine_tuning.jobs.list()
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.fine_tuning.jobs.retrieve(str(uuid.uuid4()))
    assert missing.value.code == "job_not_found"
    cases = {
        "method.supervised.hyperparameters.n_epochs": dict(
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}
        ),
        "training_file": dict(training=str(uuid.uuid4())),
        "model": dict(model="gpt-4o-mini"),
        "clo.translator.model": dict(extra_body={"clo": {"translator": {"model": "nope"}}}),
        "validation_file": dict(validation_file=seed.id),
        "target_language": dict(extra_body={"target_language": "en"}),
        "bogus": dict(extra_body={"bogus": 1}),
    }
    for param, fields in cases.items():
        file_id = fields.pop("training", seed.id)
        model = fields.pop("model", "tiny-lm")
        extra = {"target_language": "de", "clo": TRANSLATOR, **fields.pop("extra_body", {})}
        with pytest.raises(openai.UnprocessableEntityError) as bad:
            sdk.fine_tuning.jobs.create(
                model=model, training_file=file_id, extra_body=extra, **fields
            )
        assert bad.value.param == param, (param, bad.value.body)
