"""A real API server and a real Celery worker (subprocesses) on Postgres + Redis: whole jobs."""

from __future__ import annotations

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
class Service:
    base: str
    client: JobsClient
    data_dir: Path
    logs: Path
    redis_url: str
    queue: str


def _logs_tail(folder: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(folder.glob("*.log"))
    )


@pytest.fixture(scope="module")
def service(make_service_env, factory, tmp_path_factory) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp("svc")
    build_tiny_models(data_dir / "models")
    env = make_service_env(data_dir)
    queue, redis_url = env["CLO_QUEUE"], env["CLO_BROKER_URL"]
    logs = data_dir / "logs"
    port = free_port()
    api = start_api(env, port, logs / "api.log")
    worker = start_worker(env, queue, f"w-{queue}@test", logs / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", api)
        client = JobsClient(base, new_tenant(factory, "e2e").key)
        yield Service(base, client, data_dir, logs, redis_url, queue)
        client.close()
    finally:
        stop(worker)
        stop(api)
        redis.Redis.from_url(redis_url).delete(queue)


def _spec(max_steps: int) -> dict[str, Any]:
    """A short job that runs every stage, a small held-out evaluation included."""
    evaluation = {"heldout_size": 2, "max_new_tokens": 8, "prompt_set_limit": 4}
    return train_spec(max_steps, 2, evaluation=evaluation)


def _poll(service: Service, job_id: str, until: set[str], timeout: float = 240) -> list[dict]:
    """Every distinct (status, stage, step) seen while polling, up to a status in `until`."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = service.client.get(job_id)
        key = (job["status"], job["stage"], job["progress"]["step"])
        if not seen or key != (seen[-1]["status"], seen[-1]["stage"], seen[-1]["progress"]["step"]):
            seen.append(job)
        if job["status"] in until:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stuck in {seen[-1]['status']}\n{_logs_tail(service.logs)}")


def _events(service: Service, job_id: str) -> list[dict]:
    return service.client.request("GET", f"/v1/jobs/{job_id}/events")["data"]


def test_job_runs_every_stage_and_adapter_loads_with_peft(service: Service, tmp_path: Path):
    job = service.client.submit(_spec(max_steps=4))
    seen = _poll(service, job["id"], {"succeeded", "failed", "cancelled"})
    final = seen[-1]
    assert final["status"] == "succeeded", f"{final['error']}\n{_logs_tail(service.logs)}"
    assert any(j["status"] == "running" and j["stage"] == "training" for j in seen)
    stage_events = [e["data"]["stage"] for e in _events(service, job["id"]) if e["type"] == "stage"]
    assert stage_events == ["translating", "training", "evaluating", "packaging"]
    assert final["attempt"] == 1 and final["progress"]["percent"] == 100.0
    assert final["metrics_summary"]["train_steps"] == 4
    curves = service.client.request("GET", f"/v1/jobs/{job['id']}/metrics")["curves"]
    assert [p["step"] for p in curves["loss"]] == [1, 2, 3, 4]

    archive = download_artifact(service.client, job["id"], "adapter.tar", tmp_path)
    listed = {a["name"]: a for a in final["artifacts"]}
    assert sha256_file(archive) == listed["adapter.tar"]["sha256"]
    bundle = extract_bundle(archive, tmp_path / "adapter")
    assert (bundle / "adapter_config.json").is_file()
    assert (bundle / "adapter_model.safetensors").is_file()
    assert not list(bundle.rglob("*.bin")) and not list(bundle.rglob("*.pt"))

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = service.data_dir / "models" / "tiny-qwen2"
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(base, bundle)
    tok = AutoTokenizer.from_pretrained(bundle)
    ids = tok("Hallo Welt", return_tensors="pt").input_ids
    with torch.no_grad():
        tuned = model(ids).logits
        with model.disable_adapter():
            plain = model(ids).logits
    assert not torch.allclose(tuned, plain)  # the adapter changes the model


def test_resumable_download_continues_a_partial_file(service: Service, tmp_path: Path):
    job = service.client.submit(_spec(max_steps=1))
    final = _poll(service, job["id"], {"succeeded", "failed"})[-1]
    assert final["status"] == "succeeded"
    meta = next(a for a in final["artifacts"] if a["name"] == "adapter.tar")
    first = httpx.get(
        service.base + meta["download_url"],
        headers={
            "Authorization": service.client.http.headers["Authorization"],
            "Range": "bytes=0-999",
        },
    )
    assert first.status_code == 206 and len(first.content) == 1000
    (tmp_path / "adapter.tar.partial").write_bytes(first.content)
    path = download_artifact(service.client, job["id"], "adapter.tar", tmp_path)
    assert sha256_file(path) == meta["sha256"] and path.stat().st_size == meta["size"]


def test_cancel_mid_training_then_worker_takes_next_job(service: Service):
    long_job = service.client.submit(_spec(max_steps=400))
    seen = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = service.client.get(long_job["id"])
        seen.append(job)
        if job["stage"] == "training" and (job["progress"]["step"] or 0) >= 2:
            break
        assert job["status"] in {"queued", "running"}, job
        time.sleep(0.1)
    else:
        raise AssertionError(f"never reached training\n{_logs_tail(service.logs)}")
    cancelled_at = time.monotonic()
    assert service.client.cancel(long_job["id"])["status"] == "cancelling"
    final = _poll(service, long_job["id"], {"succeeded", "failed", "cancelled"}, timeout=60)[-1]
    assert final["status"] == "cancelled"
    assert time.monotonic() - cancelled_at < 20  # within a step + a heartbeat, not 400 steps
    assert final["progress"]["step"] < 400
    assert "cancelled" in [e["type"] for e in _events(service, long_job["id"])]
    # The GPU slot is free again: the next job runs to the end.
    nxt = service.client.submit(_spec(max_steps=2))
    assert (
        _poll(service, nxt["id"], {"succeeded", "failed", "cancelled"})[-1]["status"] == "succeeded"
    )


def test_jobs_cli_submit_watch_list_download(service: Service, tmp_path: Path):
    from typer.testing import CliRunner

    from service_cli.main import app

    auth = [
        "jobs",
        "--api-url",
        service.base,
        "--api-key",
        service.client.http.headers["Authorization"].removeprefix("Bearer "),
    ]
    runner = CliRunner()
    submitted = runner.invoke(
        app,
        [
            *auth,
            "submit",
            "--base-model",
            "tiny-qwen2",
            "--lang",
            "de",
            "--data-size",
            "10",
            "--seed-source",
            "parallel",
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--heldout-size",
            "2",
            "--watch",
        ],
    )
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.output.splitlines()[0].strip()
    assert "artifact adapter.tar" in submitted.output
    listed = runner.invoke(app, [*auth, "list", "--status", "succeeded", "--limit", "100"])
    assert listed.exit_code == 0 and job_id[:8] in listed.output
    got = runner.invoke(app, [*auth, "download", job_id, "--out", str(tmp_path), "--extract"])
    assert got.exit_code == 0, got.output
    assert "sha256 verified" in got.output
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    bad = runner.invoke(
        app, [*auth, "submit", "--base-model", "nope", "--lang", "de", "--data-size", "10"]
    )
    assert bad.exit_code == 1 and "base_model" in bad.output


def test_evaluation_reports_base_beside_trained_and_reuses_cached_base_results(
    service: Service,
):
    def evaluated_job() -> dict[str, Any]:
        spec = train_spec(
            1,
            1,
            evaluation={"heldout_size": 2, "max_new_tokens": 8, "prompt_set_limit": 4},
        )
        job = service.client.submit(spec)
        final = _poll(service, job["id"], {"succeeded", "failed"})[-1]
        assert final["status"] == "succeeded", f"{final['error']}\n{_logs_tail(service.logs)}"
        return service.client.request("GET", f"/v1/jobs/{job['id']}/evaluation")["report"]

    first, second = evaluated_job(), evaluated_job()
    for report in (first, second):
        usable = report["versus_base"]["metrics"]["usable_rate_target"]
        assert usable["base"] is not None and usable["trained"] is not None
        for side in ("base_interval", "trained_interval"):
            assert 0.0 <= usable[side]["low"] <= usable[side]["high"] <= 1.0
        assert usable["delta_low"] <= usable["delta"] <= usable["delta_high"]
        assert usable["verdict"]
        assert any(s.startswith("shipped:de") for s in report["prompt_sources"])
    # The second job on the same base, prompts and decoding generated no base answer.
    assert second["versus_base"]["base"]["cached"] is True
    assert second["versus_base"]["base"]["generated_answers"] == 0
    assert (
        second["versus_base"]["metrics"]["usable_rate_target"]["base"]
        == (first["versus_base"]["metrics"]["usable_rate_target"]["base"])
    )
