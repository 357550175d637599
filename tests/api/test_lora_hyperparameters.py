"""LoRA rank/alpha/dropout in the job spec: resolved into the stored TrainConfig, bounds 422."""

from __future__ import annotations

import pytest

from clo.resolve import ResolvedJob
from tests.support.api import job_body


def test_lora_shape_reaches_the_stored_train_config(client, tenant, load_job) -> None:  # type: ignore[no-untyped-def]
    body = job_body(
        trainable="lora",
        hyperparameters={"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.05},
    )
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["hyperparameters"]["lora_r"] == 4
    row = load_job(response.json()["id"])
    train = ResolvedJob.model_validate(row.resolved).train
    assert (train.trainable, train.lora_r, train.lora_alpha, train.lora_dropout) == (
        "lora",
        4,
        8,
        0.05,
    )


def test_lora_defaults_match_the_train_config_defaults(client, tenant, load_job) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/jobs", json=job_body(trainable="lora"), headers=tenant.headers)
    assert response.status_code == 201, response.text
    train = ResolvedJob.model_validate(load_job(response.json()["id"]).resolved).train
    assert (train.lora_r, train.lora_alpha, train.lora_dropout) == (16, 32, 0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lora_r", 0),
        ("lora_r", 1025),
        ("lora_r", 2.5),
        ("lora_alpha", 0),
        ("lora_alpha", 5000),
        ("lora_dropout", 1.0),
        ("lora_dropout", -0.1),
    ],
)
def test_out_of_bounds_lora_value_is_422_naming_it(client, tenant, field, value) -> None:  # type: ignore[no-untyped-def]
    body = job_body(trainable="lora", hyperparameters={field: value})
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == f"hyperparameters.{field}"
    assert error["type"] == "user_error"


def test_lora_shape_on_a_job_that_trains_no_lora_is_refused(client, tenant) -> None:  # type: ignore[no-untyped-def]
    body = job_body(trainable="attention", hyperparameters={"lora_r": 4})
    response = client.post("/v1/jobs", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (
        "hyperparameter_not_applicable",
        "hyperparameters.lora_r",
    )
    assert "lora" in error["message"]
