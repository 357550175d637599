"""A real HTTP receiver for webhook tests: a thread serving http.server on a free loopback
port that checks each POST's CLO-Signature the way docs/WEBHOOKS.md tells receivers to
(written from the document, not with service.webhooks.signing) and can fail on purpose."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    answered: int

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    secret: str = ""  # set once the endpoint is registered (the API shows it then)
    fail_first: int = 0  # answer 500 to this many requests before answering 200
    always_fail: bool = False
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_for_next(self) -> int:
        with self.lock:
            if self.always_fail or len(self.requests) < self.fail_first:
                return 500
            return 200

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first `count` requests, waiting at most `timeout` seconds for them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.requests)} of {count} webhook requests arrived")


def signature_valid(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """docs/WEBHOOKS.md, "Verifying": split on commas, HMAC-SHA256 of `<t>.<body>`."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if "t" not in parts or "v1" not in parts or abs(time.time() - int(parts["t"])) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


@contextmanager
def webhook_receiver(path: str = "/hooks/clo") -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}{path}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.answer_for_next()
            ok = signature_valid(receiver.secret, self.headers.get("CLO-Signature", ""), body)
            with receiver.lock:
                receiver.requests.append(Received(dict(self.headers), body, ok, status))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            reply = b"ok" if status == 200 else b"receiver failing on purpose"
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
