"""The evaluation stage as the worker runs it: rewards against the base model for every kind
of bundle, benchmarks from local data, the configured judge, another job as baseline, and the
headline numbers + translation report stored in the job's metrics_summary."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from persistence.db import session_scope
from persistence.models import Job
from persistence.settings import Settings
from tests.worker.conftest import in_process_settings
from worker.config import WorkerSettings
from worker.runner import run_job

JUDGE_KEY = "sk-test-judge-key"


class _JudgeStub(BaseHTTPRequestHandler):
    """An OpenAI chat API that always prefers answer A (a maximally position-biased judge)."""

    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        reply = {"choices": [{"message": {"role": "assistant", "content": "[[A]]"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def judge_url() -> Iterator[str]:
    _JudgeStub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JudgeStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _spec(trainable: str, **evaluation: Any) -> dict[str, Any]:
    return {
        "base_model": "tiny",
        "target_language": "de",
        "data_size": 12,
        "trainable": trainable,
        "seed_data": {"source": "parallel"},
        "hyperparameters": {
            "max_steps": 2,
            "batch_size": 2,
            "learning_rate": 5e-3,
            "max_length": 96,
        },
        "evaluation": {
            "heldout_size": 3,
            "max_new_tokens": 4,
            "prompt_set_limit": 4,
            "judge": "openai",
            **evaluation,
        },
    }


def _run(
    job_id: uuid.UUID, settings: Settings, tmp_path: Path, factory: Any
) -> tuple[dict[str, Any], dict[str, Any], uuid.UUID]:
    """Run the job in-process; (its evaluation, its metrics_summary, its tenant)."""
    wsettings = WorkerSettings(work_dir=tmp_path / "work")
    outcome = run_job(
        str(job_id), worker_id="w", settings=settings, wsettings=wsettings, factory=factory
    )
    with session_scope(factory) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert outcome == "succeeded", job.error
        assert job.evaluation is not None and job.metrics_summary is not None
        return job.evaluation, job.metrics_summary, job.tenant_id


def _real(value: Any) -> bool:
    return isinstance(value, float) and value == value  # a number, not None / NaN


def test_attention_then_full_job_judged_against_it(
    tiny_qwen2: Path, factory, make_job, pg_url, tmp_path, judge_url
) -> None:  # type: ignore[no-untyped-def]
    settings = in_process_settings(
        pg_url,
        tmp_path,
        models={"tiny": {"source": str(tiny_qwen2), "kind": "causal_lm"}},
        judge_url=judge_url,
        judge_model="stub-judge",
        judge_api_key=JUDGE_KEY,
    )
    first_id = make_job(spec=_spec("attention"), base_model="tiny")
    first_report, summary, tenant_id = _run(first_id, settings, tmp_path, factory)

    report = first_report
    pref = report["preference"]
    assert pref["reference"] == "adapter_disabled"  # attention-only bundle: base = adapter off
    for d in ("tgt", "en"):
        stats = pref["directions"][d]
        assert _real(stats["accuracy"]) and _real(stats["reward_margin_mean"]), stats
        # two learning steps moved the attention weights: rewards are not identically zero
        assert stats["chosen_reward_mean"] != 0.0
    # shipped local benchmark data for German and English is scored by default
    scored = {(b["benchmark"], b["language"]) for b in report["benchmarks"]}
    assert scored == {("belebele", "de"), ("belebele", "en"), ("mmmlu", "de"), ("mmmlu", "en")}
    # the judge: every pair asked in both orders, with the configured model and key
    wins = report["judge"]["results"]["tgt"]
    assert wins["n"] == 3 and len(_JudgeStub.seen) == 2 * 3 * 2  # 2 orders, tgt + en prompts
    assert {r["auth"] for r in _JudgeStub.seen} == {f"Bearer {JUDGE_KEY}"}
    assert {r["model"] for r in _JudgeStub.seen} == {"stub-judge"}
    # "always A" flips with the order, so every pair is a position-inconsistent tie
    assert (wins["ties"], wins["win_rate"], wins["position_inconsistent"]) == (3, 0.5, 3)
    assert JUDGE_KEY not in json.dumps(report)

    assert summary["translation"]["source"] == "parallel" and summary["translation"]["kept"] == 12
    assert summary["eval_pref_acc_tgt"] == pref["directions"]["tgt"]["accuracy"]
    assert summary["eval_pref_acc_en"] == pref["directions"]["en"]["accuracy"]
    assert summary["eval_win_rate"] == 0.5
    # 4-token answers have no 5-word line to check: uncomputed numbers are left out, not None
    assert summary.get("eval_english_bias") == report["language"]["english_bias"]
    assert all(_real(v) for k, v in summary.items() if k.startswith("eval_"))
    assert summary["eval_belebele_tgt"] == next(
        b["accuracy"]
        for b in report["benchmarks"]
        if b["benchmark"] == "belebele" and b["language"] == "de"
    )
    assert summary["train_steps"] == 2  # the training numbers stay

    # A full fine-tune of the same tenant, judged against the first job's stored adapter.
    second_id = make_job(
        tenant_id=tenant_id,
        spec=_spec("full", baseline_job_id=str(first_id)),
        base_model="tiny",
        data_size=12,
    )
    _JudgeStub.seen = []
    report, _, _ = _run(second_id, settings, tmp_path, factory)
    pref = report["preference"]
    # a full model has no adapter to disable: rewards use base-model log-probs scored first
    assert pref["reference"] == "precomputed"
    for d in ("tgt", "en"):
        assert _real(pref["directions"][d]["accuracy"])
        assert pref["directions"][d]["chosen_reward_mean"] != 0.0
    _assert_reference_is_the_base_model(first_report, report)
    assert report["judge"]["baseline"] == f"job {first_id} (clo)"
    assert len(_JudgeStub.seen) == 12
    # the baseline's answers (first job's adapter) are what the judge saw as the other side
    first_answers = {s["prompt"]: s["answer"] for s in first_report["language"]["samples"]}
    for pair in report["judge"]["samples"]:
        assert pair["baseline_answer"] == first_answers[pair["prompt"]]


def _assert_reference_is_the_base_model(
    attention_report: dict[str, Any], full_report: dict[str, Any]
) -> None:
    """Both jobs share the held-out set, so their implied reference log-probs must agree:
    β·(policy − reference) = reward  =>  reference = policy − reward/β, per direction."""
    for d in ("tgt", "en"):
        refs = []
        for report in (attention_report, full_report):
            beta = report["preference"]["beta"]
            stats = report["preference"]["directions"][d]
            refs.append(stats["chosen_logp_mean"] - stats["chosen_reward_mean"] / beta)
        assert refs[0] == pytest.approx(refs[1], rel=1e-4, abs=1e-3), (d, refs)


def test_judge_settings_resolve_to_the_judge_the_stage_builds(tiny_qwen2: Path, factory) -> None:  # type: ignore[no-untyped-def]
    from clo.errors import CloError
    from clo.evaluate import LocalJudge, OpenAIJudge
    from clo.evaluate.job import make_judge
    from clo.resolve import ResolvedJob, resolve_job
    from clo.spec import JobSpec
    from service.catalog import ServiceCatalog
    from worker.evaluation_env import judge_api_key

    models = {
        "tiny": {"source": str(tiny_qwen2), "kind": "causal_lm"},
        "tiny-judge": {"source": str(tiny_qwen2), "kind": "causal_lm"},
    }

    def resolve(judge: str, settings: Settings, enabled: bool = True) -> ResolvedJob:
        base = _spec("lora")
        evaluation = {**base["evaluation"], "judge": judge, "enabled": enabled}
        spec = JobSpec.model_validate({**base, "evaluation": evaluation})
        with session_scope(factory) as session:
            return resolve_job(spec, ServiceCatalog(session, settings, uuid.uuid4()))

    bare = Settings(broker_url="memory://", models=models)
    assert resolve("none", bare).judge is None
    assert resolve("openai", bare, enabled=False).judge is None  # no evaluation, no judge
    with pytest.raises(CloError) as missing:
        resolve("openai", bare)
    assert missing.value.param == "evaluation.judge" and "CLO_JUDGE_URL" in str(missing.value)
    assert missing.value.code == "judge_not_configured"

    remote = Settings(
        broker_url="memory://",
        models=models,
        judge_url="http://127.0.0.1:9/v1",
        judge_model="m",
        judge_api_key=JUDGE_KEY,
    )
    resolved = resolve("openai", remote)
    assert resolved.judge is not None
    assert (resolved.judge.kind, resolved.judge.url) == ("openai", "http://127.0.0.1:9/v1")
    assert JUDGE_KEY not in resolved.model_dump_json()  # stored with the job: no secret
    assert judge_api_key(resolved, remote) == JUDGE_KEY  # the worker adds it at run time
    judge = make_judge(resolved.judge, judge_api_key(resolved, remote), None)
    assert isinstance(judge, OpenAIJudge) and judge.describe()["model"] == "m"

    local = Settings(broker_url="memory://", models=models, judge_model="tiny-judge")
    resolved = resolve("local", local)
    assert resolved.judge is not None
    assert (resolved.judge.kind, resolved.judge.model) == ("local", str(tiny_qwen2))
    assert judge_api_key(resolved, local) is None
    judge = make_judge(resolved.judge, None, "cpu")
    assert isinstance(judge, LocalJudge) and isinstance(judge.complete("Which is better?"), str)
    unlisted = Settings(broker_url="memory://", models=models, judge_model="not-listed")
    with pytest.raises(CloError) as not_listed:
        resolve("local", unlisted)
    assert not_listed.value.param == "evaluation.judge"
