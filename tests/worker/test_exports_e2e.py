"""Exports end to end: a real uvicorn and a real Celery worker (subprocesses on Postgres +
Redis, tiny models) run a job, then a LoRA export of it on the worker; the export's artifact
downloads (API key and signed link) and loads with stock PEFT as a plain LoRA."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from clo.checksum import sha256_file
from service_cli.demo import build_tiny_models
from service_cli.jobs_client import JobsClient, download_artifact, extract_bundle
from service_cli.processes import free_port, start_api, start_worker, stop, wait_http
from tests.support.specs import train_spec
from tests.support.tenants import new_tenant

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    base: str
    client: JobsClient
    data_dir: Path
    logs: Path


@pytest.fixture(scope="module")
def stack(make_service_env, factory, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    data_dir = tmp_path_factory.mktemp("exports")
    build_tiny_models(data_dir / "models")
    env = make_service_env(data_dir)
    logs, port = data_dir / "logs", free_port()
    api = start_api(env, port, logs / "api.log")
    worker = start_worker(env, env["CLO_QUEUE"], f"w-{env['CLO_QUEUE']}@exp", logs / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", api)
        client = JobsClient(base, new_tenant(factory, "exp").key)
        yield Stack(base, client, data_dir, logs)
        client.close()
    finally:
        stop(worker)
        stop(api)
        redis.Redis.from_url(env["CLO_BROKER_URL"]).delete(env["CLO_QUEUE"])


def _logs(stack: Stack) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in stack.logs.glob("*.log"))


def _until(stack: Stack, path: str, done: set[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        read = stack.client.request("GET", path)
        if read["status"] in done:
            return read  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"{path} still {read['status']}\n{_logs(stack)}")


def test_a_lora_export_runs_on_the_worker_and_loads_as_a_plain_lora(
    stack: Stack, tmp_path: Path
) -> None:
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    # attention-only (the default): the job's own adapter is modules_to_save, not a LoRA
    evaluation = {"heldout_size": 2, "max_new_tokens": 2, "prompt_set_limit": 0, "benchmarks": []}
    job = stack.client.submit(train_spec(3, 2, data_size=10, evaluation=evaluation))
    done = _until(stack, f"/v1/jobs/{job['id']}", {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", f"{done['error']}\n{_logs(stack)}"

    path = f"/v1/jobs/{job['id']}/exports"
    body = {"format": "lora", "rank": 8, "dtype": "bf16"}
    posted = stack.client.http.post(path, json=body)
    assert posted.status_code == 202, posted.text
    export = _until(stack, f"{path}/{posted.json()['id']}", {"succeeded", "failed"})
    assert export["status"] == "succeeded", f"{export['error']}\n{_logs(stack)}"
    report = export["report"]
    assert report["rank"] == 8 and report["weights_dtype"] == "bfloat16"
    assert 0 < report["approximation_error"] < 1
    assert report["heldout_sequences"] == 8  # 2 held-out quadruples, 4 sequences each
    assert 0 <= report["heldout_mean_abs_delta_logp"] <= report["heldout_max_abs_delta_logp"]
    assert report["training_mean_abs_delta_logp"] > 0
    assert export["artifact"]["name"] == "lora-r8-bf16.tar"
    again = stack.client.http.post(path, json=body)
    assert again.status_code == 200 and again.json()["id"] == export["id"]

    listed = {a["name"]: a for a in stack.client.artifacts(job["id"])}
    assert set(listed) >= {"adapter.tar", "lora-r8-bf16.tar"}
    archive = download_artifact(stack.client, job["id"], "lora-r8-bf16.tar", tmp_path)
    assert sha256_file(archive) == listed["lora-r8-bf16.tar"]["sha256"]
    link = stack.client.request("POST", f"/v1/jobs/{job['id']}/artifacts/lora-r8-bf16.tar/link")
    by_link = httpx.get(stack.base + link["url"])  # no API key
    assert by_link.status_code == 200 and by_link.content == archive.read_bytes()

    lora = extract_bundle(archive, tmp_path / "lora")
    config = json.loads((lora / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    assert config["modules_to_save"] is None
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    with safe_open(str(lora / "adapter_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {__import__("torch").bfloat16}
    base = AutoModelForCausalLM.from_pretrained(stack.data_dir / "models" / "tiny-qwen2")
    model = PeftModel.from_pretrained(base, str(lora))
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    assert len(layers) == 4 * base.config.num_hidden_layers
    assert not [n for n, _ in model.named_modules() if "modules_to_save" in n]
    assert "(cast on export)" in (lora / "README.md").read_text()

    # a rank past the tiny model's projections (64) fails on the worker, naming the field
    too_big = stack.client.http.post(path, json={"format": "lora", "rank": 512}).json()
    failed = _until(stack, f"{path}/{too_big['id']}", {"succeeded", "failed"})
    assert failed["status"] == "failed" and failed["artifact"] is None
    assert (failed["error"]["code"], failed["error"]["param"]) == ("invalid_input", "rank")
    assert "1..64" in failed["error"]["message"]

    # the same job merged into its base, in fp16: a model any server loads as it is
    merged = stack.client.http.post(path, json={"format": "merged", "dtype": "fp16"})
    assert merged.status_code == 202, merged.text
    done_merged = _until(stack, f"{path}/{merged.json()['id']}", {"succeeded", "failed"})
    assert done_merged["status"] == "succeeded", f"{done_merged['error']}\n{_logs(stack)}"
    assert done_merged["report"]["weights_dtype"] == "float16"
    archive = download_artifact(stack.client, job["id"], "merged-fp16.tar", tmp_path)
    full = AutoModelForCausalLM.from_pretrained(extract_bundle(archive, tmp_path / "merged"))
    assert full.dtype == __import__("torch").float16 and not hasattr(full, "peft_config")
    exports = stack.client.request("GET", path)["data"]
    assert [e["format"] for e in exports] == ["merged", "lora", "lora"]


def test_a_cancelled_jobs_last_checkpoint_is_listed_and_downloadable(
    stack: Stack, tmp_path: Path
) -> None:
    from safetensors import safe_open

    job = stack.client.submit(train_spec(400, 2, data_size=10))
    path = f"/v1/jobs/{job['id']}/checkpoints"
    deadline = time.monotonic() + 180
    while not stack.client.request("GET", path)["data"]:
        assert time.monotonic() < deadline, _logs(stack)
        time.sleep(0.2)
    stack.client.cancel(job["id"])
    done = _until(stack, f"/v1/jobs/{job['id']}", {"succeeded", "failed", "cancelled"})
    assert done["status"] == "cancelled", f"{done['error']}\n{_logs(stack)}"

    checkpoints = stack.client.request("GET", path)["data"]
    steps = [c["step"] for c in checkpoints]
    assert steps == sorted(steps, reverse=True) and all(s % 2 == 0 for s in steps)
    kept = [c for c in checkpoints if c["artifact"] is not None]
    assert [c["step"] for c in kept] == [steps[0]]  # the last committed one only
    assert checkpoints[0]["train_loss"] is not None
    name = f"checkpoint-step-{steps[0]}.tar"
    listed = {a["name"]: a for a in stack.client.artifacts(job["id"])}
    assert listed[name]["kind"] == "checkpoint" and "adapter.tar" not in listed

    archive = download_artifact(stack.client, job["id"], name, tmp_path)
    folder = extract_bundle(archive, tmp_path / "checkpoint")
    assert json.loads((folder / "state.json").read_text())["step"] == steps[0]
    assert (folder / "optimizer.pt").is_file()
    with safe_open(str(folder / "trainable.safetensors"), "pt") as f:
        assert any("q_proj" in k for k in f.keys())
