"""The official `openai` SDK drives whole jobs against a real uvicorn and a real Celery worker
(subprocesses on Postgres + Redis, tiny models): upload, create, events until done,
checkpoints, fine_tuned_model, cancel, and errors as openai exception types."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from clo.checksum import sha256_file
from service_cli.demo import TINY_LM, TINY_MT, build_tiny_models
from service_cli.processes import free_port, start_api, start_worker, stop, wait_http
from tests.support.tenants import new_tenant

pytestmark = pytest.mark.slow

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Stack:
    base: str
    key: str
    logs: Path


@pytest.fixture(scope="module")
def stack(make_service_env, factory, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    data_dir = tmp_path_factory.mktemp("openai-sdk")
    build_tiny_models(data_dir / "models")
    env = make_service_env(data_dir)
    logs, port = data_dir / "logs", free_port()
    api = start_api(env, port, logs / "api.log")
    worker = start_worker(env, env["CLO_QUEUE"], f"w-{env['CLO_QUEUE']}@sdk", logs / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", api)
        yield Stack(base, new_tenant(factory, "sdk").key, logs)
    finally:
        stop(worker)
        stop(api)
        redis.Redis.from_url(env["CLO_BROKER_URL"]).delete(env["CLO_QUEUE"])


def _logs(stack: Stack) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in stack.logs.glob("*.log"))


def _seed(n: int) -> bytes:
    # Short lines: the tiny random translator's output length follows its input's.
    return b"".join(
        json.dumps({"prompt": f"Name {i}?", "response": f"Item {i}."}).encode() + b"\n"
        for i in range(n)
    )


def _extensions(max_steps: int) -> dict[str, Any]:
    """The target language and the native fields OpenAI has no name for (extra_body)."""
    return {
        "target_language": "de",
        "clo": {
            "trainable": "lora",
            # Random-weight translator: no language ID could pass its output.
            "translator": {"model": TINY_MT, "num_beams": 1, "quality_check": "off"},
            "hyperparameters": {"max_steps": max_steps, "checkpoint_every": 2, "max_length": 96},
            "evaluation": {"enabled": False, "heldout_size": 0},
        },
    }


def _until(sdk: openai.OpenAI, job_id: str, done: set[str], stack: Stack, timeout: float):  # type: ignore[no-untyped-def]
    """Poll events (newest first) and the job until its status is in `done`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        # Read after the job: a final status commits with its event, so the list has it.
        events = sdk.fine_tuning.jobs.list_events(job_id, limit=100).data
        if job.status in done:
            return job, events
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job.status}\n{_logs(stack)}")


def test_a_whole_job_through_the_openai_sdk(stack: Stack, tmp_path: Path) -> None:
    sdk = openai.OpenAI(base_url=f"{stack.base}/v1", api_key=stack.key, max_retries=0)
    seed = sdk.files.create(file=("seed.jsonl", _seed(10)), purpose="fine-tune")
    assert seed.id in {f.id for f in sdk.files.list()}
    method = {
        "type": "clo",
        "clo": {"hyperparameters": {"batch_size": 2, "learning_rate_multiplier": 200}},
    }
    job = sdk.fine_tuning.jobs.create(
        model=TINY_LM, training_file=seed.id, method=method, extra_body=_extensions(5)
    )
    assert job.status == "queued" and job.fine_tuned_model is None

    done, events = _until(sdk, job.id, TERMINAL, stack, timeout=240)
    assert done.status == "succeeded", f"{done.error}\n{_logs(stack)}"
    kinds = [e.data["event"] for e in events][::-1]  # type: ignore[index]
    assert kinds[0] == "queued" and kinds[-1] == "succeeded" and "checkpoint" in kinds
    assert {e.level for e in events} == {"info"}
    assert done.finished_at is not None and done.finished_at >= done.created_at

    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [4, 2]  # every 2 steps; 5 is the adapter
    assert all(c.metrics.train_loss is not None and c.metrics.train_loss > 0 for c in checkpoints)

    assert done.fine_tuned_model == f"ft:{TINY_LM}:{job.id}"
    assert sdk.models.retrieve(done.fine_tuned_model).job_id == job.id  # type: ignore[attr-defined]
    adapter = next(url for url in done.result_files if "adapter.tar" in url)
    download = httpx.get(stack.base + adapter, headers={"Authorization": f"Bearer {stack.key}"})
    assert download.status_code == 200
    (tmp_path / "adapter.tar").write_bytes(download.content)
    native = httpx.get(
        f"{stack.base}/v1/jobs/{job.id}", headers={"Authorization": f"Bearer {stack.key}"}
    ).json()
    listed = {a["name"]: a["sha256"] for a in native["artifacts"]}
    assert sha256_file(tmp_path / "adapter.tar") == listed["adapter.tar"]


def test_cancel_a_running_job_and_errors_are_openai_exceptions(stack: Stack) -> None:
    sdk = openai.OpenAI(base_url=f"{stack.base}/v1", api_key=stack.key, max_retries=0)
    seed = sdk.files.create(file=("seed.jsonl", _seed(10)), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(
        model=TINY_LM, training_file=seed.id, extra_body=_extensions(400)
    )
    running, _ = _until(sdk, job.id, {"running", *TERMINAL}, stack, timeout=120)
    assert running.status == "running"
    with pytest.raises(openai.ConflictError) as in_use:  # its seed file is still needed
        sdk.files.delete(seed.id)
    assert in_use.value.code == "file_in_use"

    sdk.fine_tuning.jobs.cancel(job.id)
    cancelled, events = _until(sdk, job.id, TERMINAL, stack, timeout=60)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    assert events[0].data == {"event": "cancelled"} and events[0].level == "warn"
    assert sdk.files.delete(seed.id).deleted

    with pytest.raises(openai.NotFoundError):
        sdk.fine_tuning.jobs.retrieve("00000000-0000-0000-0000-000000000000")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{stack.base}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        sdk.fine_tuning.jobs.create(
            model=TINY_LM,
            training_file=seed.id,  # deleted above
            hyperparameters={"n_epochs": 2},
            extra_body=_extensions(4),
        )
    assert (bad.value.code, bad.value.param) == ("file_not_found", "training_file")
