"""GPU-aware queues at POST /v1/jobs: the estimate from the model's config.json picks the
smallest GPU class that holds the job and its wake-up goes to that class's queue; a job no
class holds is a 422 naming the estimate and the largest class."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from clo.memory_estimate import GIB
from clo.resolve import ResolvedJob
from persistence.models import Job
from service import gpu_routing
from tests.api.conftest import job_body, make_settings
from tests.support.api import MODELS

# Published config.json values (the fields the estimate reads).
LLAMA_2_13B = {
    "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
    "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000,
    "tie_word_embeddings": False,
}  # fmt: skip
TINY = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
    "tie_word_embeddings": True,
}  # fmt: skip


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Any]:
    """The test allow-list plus two models that exist only as a config.json (all the API has)."""
    listed = dict(MODELS)
    for name, config in (("small", TINY), ("llama-13b", LLAMA_2_13B)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        listed[name] = {"source": str(folder), "kind": "causal_lm"}
    return listed


def _client(pg_url, data_dir, models, sent, **overrides):  # type: ignore[no-untyped-def]
    settings = make_settings(pg_url, data_dir, models=models, **overrides)
    return TestClient(create_app(settings, lambda job_id, queue=None: sent.append((job_id, queue))))


def test_job_goes_to_the_smallest_class_that_holds_it(
    pg_url, data_dir, make_tenant, models, factory
) -> None:  # type: ignore[no-untyped-def]
    sent: list[tuple[str, str | None]] = []
    tenant = make_tenant()
    with _client(pg_url, data_dir, models, sent, gpu_classes=[80, 24], queue="q") as client:
        small = client.post("/v1/jobs", json=job_body(base_model="small"), headers=tenant.headers)
        assert small.status_code == 201, small.text
        lora = job_body(base_model="llama-13b", trainable="lora")
        big = client.post("/v1/jobs", json=lora, headers=tenant.headers)
        assert big.status_code == 201, big.text
    # 13B's bf16 weights alone (24 GiB) do not fit a 24 GiB card: the 80 GiB queue.
    assert sent == [(small.json()["id"], "q-24gb"), (big.json()["id"], "q-80gb")]
    with factory() as session:
        row = session.get(Job, uuid.UUID(big.json()["id"]))
        assert row is not None
        stored = ResolvedJob.model_validate(row.resolved).memory_estimate_bytes
    assert stored is not None and 24 * GIB < stored < 72 * GIB


def test_a_job_no_class_holds_is_422_naming_the_estimate_and_the_largest_class(
    pg_url, data_dir, make_tenant, models
) -> None:  # type: ignore[no-untyped-def]
    sent: list[tuple[str, str | None]] = []
    tenant = make_tenant()
    body = job_body(base_model="llama-13b", trainable="full")
    with _client(pg_url, data_dir, models, sent, gpu_classes=[24, 80]) as client:
        refused = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "job_too_large" and error["param"] == "base_model"
    # 13B x 18 B a parameter is ~218 GiB before activations.
    assert "largest GPU class of this deployment holds (80 GiB" in error["message"]
    figure = float(error["message"].split("about ")[1].split(" GiB")[0])
    assert 200 < figure < 260
    assert sent == []


def test_without_gpu_classes_nothing_is_estimated_and_the_one_queue_is_used(
    pg_url, data_dir, make_tenant, models
) -> None:  # type: ignore[no-untyped-def]
    sent: list[tuple[str, str | None]] = []
    tenant = make_tenant()
    body = job_body(base_model="llama-13b", trainable="full")
    with _client(pg_url, data_dir, models, sent) as client:
        assert client.post("/v1/jobs", json=body, headers=tenant.headers).status_code == 201
    assert sent[0][1] is None  # the enqueuer's default queue


def test_estimates_order_by_what_is_trained() -> None:
    resolved = ResolvedJob.model_validate(_resolved_stub())
    by_kind = {}
    for trainable in ("lora", "attention", "full"):
        train = resolved.train.model_copy(update={"trainable": trainable})
        job = resolved.model_copy(update={"train": train})
        by_kind[trainable] = gpu_routing.estimate(job, LLAMA_2_13B)
    assert by_kind["lora"].plain < by_kind["attention"].plain < by_kind["full"].plain
    for memory in by_kind.values():
        assert memory.checkpointed < memory.plain
    # Full fine-tuning: at least 18 B a parameter (bf16 weights + fp32 master, grads, AdamW).
    assert by_kind["full"].checkpointed > 18 * 13.0e9
    assert gpu_routing.pick_class(by_kind["full"], [24, 80]) is None
    assert gpu_routing.pick_class(by_kind["lora"], [24, 80])[0] == 80  # type: ignore[index]


def _resolved_stub() -> dict[str, Any]:
    from clo.config import TrainConfig
    from clo.spec import JobSpec

    spec = JobSpec.model_validate(job_body(base_model="llama-13b"))
    return {
        "spec": spec.model_dump(mode="json"),
        "base_model": {"name": "llama-13b", "source": "/x"},
        "train": TrainConfig(precision="bf16").model_dump(mode="json"),
    }
