"""`gpus` and the memory levers in the job spec: checked against the service at POST time."""

from __future__ import annotations

from clo.resolve import ResolvedJob
from tests.support.api import job_body


def test_more_gpus_than_a_worker_owns_is_422_naming_gpus(client, tenant) -> None:  # type: ignore[no-untyped-def]
    # the test service keeps CLO_WORKER_GPUS at its default, 1
    response = client.post("/v1/jobs", json=job_body(gpus=2), headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("too_many_gpus", "gpus", "user_error")
    assert "CLO_WORKER_GPUS" in error["message"]


def test_zero_gpus_is_a_validation_error(client, tenant) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/jobs", json=job_body(gpus=0), headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "gpus"


def test_memory_levers_reach_the_stored_train_config(client, tenant, load_job) -> None:  # type: ignore[no-untyped-def]
    body = job_body(
        trainable="full",
        hyperparameters={"optimizer": "adamw_8bit", "gradient_checkpointing": True},
    )
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["gpus"] == 1
    train = ResolvedJob.model_validate(load_job(response.json()["id"]).resolved).train
    assert (train.optimizer, train.gradient_checkpointing) == ("adamw_8bit", True)


def test_unknown_optimizer_is_422_naming_it(client, tenant) -> None:  # type: ignore[no-untyped-def]
    body = job_body(hyperparameters={"optimizer": "sgd"})
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "hyperparameters.optimizer"
