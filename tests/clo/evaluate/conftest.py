"""Fixtures for the evaluation tests: a local OpenAI-compatible judge stub, loaded tiny models."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

MARKER = "GOOD"  # the stub prefers the answer that contains this word

_ANSWER_RE = re.compile(
    r"\[The Start of Assistant (A|B)'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]",
    re.DOTALL,
)


@dataclass
class StubJudge:
    """State of the stub server: its URL, the requests it saw, and how it answers."""

    base_url: str
    mode: str = "marker"  # marker | always_a | garbage | error500
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def reply(self, prompt: str) -> str:
        if self.mode == "always_a":
            return "[[A]]"
        if self.mode == "garbage":
            return "I cannot decide."
        answers = dict(_ANSWER_RE.findall(prompt))
        a_good, b_good = MARKER in answers.get("A", ""), MARKER in answers.get("B", "")
        if a_good and not b_good:
            return "Answer A is better. [[A]]"
        if b_good and not a_good:
            return "[[B]]"
        return "[[tie]]"


def _handler(state: StubJudge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            state.headers.append(dict(self.headers))
            if self.path != "/v1/chat/completions" or state.mode == "error500":
                self.send_response(500 if state.mode == "error500" else 404)
                self.end_headers()
                return
            text = state.reply(body["messages"][-1]["content"])
            payload = json.dumps(
                {
                    "id": "stub",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


@pytest.fixture
def stub_judge() -> Iterator[StubJudge]:
    """An OpenAI chat-completions stub on 127.0.0.1 (ephemeral port) in a thread."""
    state = StubJudge(base_url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def qwen2_loaded(tiny_qwen2: Path) -> tuple[Any, Any]:
    """The tiny Qwen2 and its tokenizer loaded through from_pretrained (do not mutate)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    model.eval()
    return model, AutoTokenizer.from_pretrained(tiny_qwen2)
