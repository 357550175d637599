"""What tests/api (in-process TestClient) leaves open, checked on a real uvicorn server:
an oversized streamed upload is refused while it is still arriving (never buffered whole),
and a job cannot name another tenant's job as its evaluation baseline."""

from __future__ import annotations

import select
import socket
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from tests.reliability.harness import api_key_for, record, stack_env, submit, train_spec

pytestmark = pytest.mark.slow

LIMIT = 1 << 20  # CLO_MAX_UPLOAD_BYTES of this server
TOTAL = 256 << 20  # what the client offers to send


def _peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _stream_until_answered(base: str, key: str) -> tuple[int, int]:
    """Send a chunked JSONL body of TOTAL bytes, stopping when the server answers.

    Returns (HTTP status, bytes sent before the answer)."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    head = (
        "POST /v1/files HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/jsonl\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    line = b'{"prompt": "p", "response": "r"}\n'
    chunk = line * (65536 // len(line))
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    try:
        sock.sendall(head.encode())
        while sent < TOTAL:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered mid-body
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(chunk)
        reply = b""
        while b"\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    finally:
        sock.close()
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0
    return status, sent


def test_oversized_streamed_upload_is_413_before_the_body_ends(
    factory, pg_url, data_dir, make_stack
):
    stack = make_stack(stack_env(pg_url, data_dir, CLO_MAX_UPLOAD_BYTES=str(LIMIT)))
    stack.start_api()
    stack.wait_api()
    key = api_key_for(factory)
    peak_before = _peak_rss_kib(stack.procs["api"].pid)
    status, sent = _stream_until_answered(stack.base, key)
    assert status == 413, (status, sent, stack.tail())
    # Answered after about the limit, not after the whole body: nothing buffered it whole.
    assert sent < 16 * LIMIT < TOTAL, sent
    grown_mib = (_peak_rss_kib(stack.procs["api"].pid) - peak_before) / 1024
    assert grown_mib < 32, grown_mib
    assert not list((data_dir / "artifacts").rglob("*.jsonl"))  # nothing stored
    # The server is fine afterwards: a small upload on a new connection works.
    small = httpx.post(
        f"{stack.base}/v1/files",
        content=b'{"prompt": "p", "response": "r"}\n' * 3,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert small.status_code == 201, small.text
    record(
        "oversized streamed upload",
        status=status,
        limit_mib=LIMIT >> 20,
        sent_before_answer_mib=round(sent / (1 << 20), 1),
        offered_mib=TOTAL >> 20,
        api_peak_rss_growth_mib=round(grown_mib, 1),
    )


def test_baseline_job_of_another_tenant_is_refused(factory, pg_url, data_dir, make_stack):
    env = stack_env(pg_url, data_dir)
    stack = make_stack(env)
    stack.start_api()
    stack.wait_api()
    owner, other = api_key_for(factory), api_key_for(factory)
    try:
        baseline = submit(stack.base, owner, train_spec(2, 1))

        def refusal(key: str, job_id: str) -> dict:
            evaluation = {"heldout_size": 2, "max_new_tokens": 8, "prompt_set_limit": 4}
            spec = train_spec(2, 1, evaluation={**evaluation, "baseline_job_id": job_id})
            response = httpx.post(
                f"{stack.base}/v1/jobs", json=spec, headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 422, response.text
            return response.json()["error"]

        foreign = refusal(other, baseline)
        unknown = refusal(other, str(uuid.uuid4()))
        assert foreign["param"] == "evaluation.baseline_job_id"
        # Indistinguishable from a job that does not exist: nothing about A's job leaks.
        assert foreign["code"] == unknown["code"]
        assert foreign["message"].replace(baseline, "?") == unknown["message"].replace(
            unknown["message"].split("'")[1], "?"
        )
        # The owner's own lookup finds the job (refused only because it has not run yet).
        assert refusal(owner, baseline)["code"] == "baseline_job_not_succeeded"
    finally:
        redis.Redis.from_url(env["CLO_BROKER_URL"]).delete(env["CLO_QUEUE"])
