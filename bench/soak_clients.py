"""The soak's clients: asyncio tasks that read, list, stream, upload and create jobs, and keep
their own record of every request (status, latency) and of every SSE event id they received.

The checker (bench/soak_check.py) compares those records with the database. A client retries
what a real client would retry (a refused connection while the API restarts, a 503 with
Retry-After, a 429) after a pause; it records the failed attempt either way.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

SLOW_S = 2.0  # a request slower than this is counted (the bound)
THINK_S = (0.3, 1.2)  # pause between one client's requests (uniform)


@dataclass
class Record:
    """Everything the clients saw; shared by all tasks of one soak (one event loop)."""

    requests: list[tuple[str, int | str, float]] = field(default_factory=list)  # kind, status, s
    created: dict[str, list[str]] = field(default_factory=dict)  # tenant -> job ids (201/200)
    streams: list[StreamLog] = field(default_factory=list)

    def add(self, kind: str, status: int | str, seconds: float) -> None:
        self.requests.append((kind, status, seconds))


@dataclass
class StreamLog:
    """One SSE client's view of one job: the ids it received over all its reconnects."""

    tenant: str
    job_id: str
    start_after: int
    seqs: list[int] = field(default_factory=list)
    reconnects: int = 0
    ended: bool = False  # saw `end`: the job is terminal and every event was sent


@dataclass
class Tenant:
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Clients:
    """`run(n, until)` starts n clients of mixed kinds over the tenants until `until`."""

    def __init__(self, base: str, tenants: list[Tenant], spec: dict[str, Any], seed: int = 0):
        self.base = base
        self.tenants = tenants
        self.spec = spec
        self.record = Record(created={t.name: [] for t in tenants})
        self.rng = random.Random(seed)
        self.stop = asyncio.Event()
        self.max_open_jobs = 3  # per tenant: job creation keeps a short queue, not a flood

    # ---- plumbing ----------------------------------------------------------------------

    async def _request(
        self, client: httpx.AsyncClient, kind: str, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await client.request(method, url, **kw)
        except httpx.HTTPError as exc:  # refused while the API restarts, or a timeout
            self.record.add(kind, type(exc).__name__, time.monotonic() - started)
            await asyncio.sleep(0.5)
            return None
        self.record.add(kind, response.status_code, time.monotonic() - started)
        if response.status_code in (429, 503):
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        return response

    async def _think(self) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), self.rng.uniform(*THINK_S))
        except TimeoutError:
            pass

    def _job_of(self, tenant: Tenant) -> str | None:
        jobs = self.record.created[tenant.name]
        return self.rng.choice(jobs[-10:]) if jobs else None

    def _client(self, tenant: Tenant) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, headers=tenant.headers, timeout=30)

    # ---- the kinds ---------------------------------------------------------------------

    async def status_reader(self, tenant: Tenant) -> None:
        async with self._client(tenant) as c:
            while not self.stop.is_set():
                if job := self._job_of(tenant):
                    await self._request(c, "status", "GET", f"/v1/jobs/{job}")
                await self._think()

    async def lister(self, tenant: Tenant) -> None:
        async with self._client(tenant) as c:
            while not self.stop.is_set():
                await self._request(c, "list", "GET", "/v1/jobs", params={"limit": 20})
                await self._think()

    async def events_reader(self, tenant: Tenant) -> None:
        async with self._client(tenant) as c:
            while not self.stop.is_set():
                if job := self._job_of(tenant):
                    await self._request(c, "events", "GET", f"/v1/jobs/{job}/events")
                await self._think()

    async def uploader(self, tenant: Tenant) -> None:
        lines = [{"prompt": f"Frage {i}?", "response": f"Antwort {i}."} for i in range(20)]
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        headers = {"Content-Type": "application/jsonl"}
        async with self._client(tenant) as c:
            while not self.stop.is_set():
                await self._request(c, "upload", "POST", "/v1/files", content=body, headers=headers)
                await self._think()
                await self._think()

    async def creator(self, tenant: Tenant, open_jobs: Any) -> None:
        """Submits a job whenever the tenant has fewer than max_open_jobs unfinished; a retry
        of a failed attempt carries the same Idempotency-Key, so it never makes a second job."""
        async with self._client(tenant) as c:
            while not self.stop.is_set():
                if await open_jobs(tenant) < self.max_open_jobs:
                    key = uuid.uuid4().hex
                    for _ in range(20):
                        r = await self._request(
                            c, "create", "POST", "/v1/jobs", json=self.spec,
                            headers={"Idempotency-Key": key},
                        )  # fmt: skip
                        if r is not None and r.status_code in (200, 201):
                            if (job_id := r.json()["id"]) not in self.record.created[tenant.name]:
                                self.record.created[tenant.name].append(job_id)
                            break
                        if r is not None and r.status_code < 500 and r.status_code != 429:
                            break  # a 4xx other than 429 would fail again
                await self._think()
                await self._think()

    async def streamer(self, tenant: Tenant) -> None:
        """Follows a recent job's events to its end, reconnecting with Last-Event-ID whenever
        the stream drops (API restart, shutdown hint, network error); then picks another."""
        async with httpx.AsyncClient(base_url=self.base, headers=tenant.headers,
                                     timeout=httpx.Timeout(30, read=60)) as c:  # fmt: skip
            while not self.stop.is_set():
                job = self._job_of(tenant)
                if job is None:
                    await self._think()
                    continue
                log = StreamLog(tenant.name, job, start_after=0)
                self.record.streams.append(log)
                while not log.ended and not self.stop.is_set():
                    await self._follow(c, log)
                    if not log.ended:
                        log.reconnects += 1
                        await asyncio.sleep(0.5)  # the shutdown hint's retry: 500
                await self._think()

    async def _follow(self, c: httpx.AsyncClient, log: StreamLog) -> None:
        last = log.seqs[-1] if log.seqs else log.start_after
        headers = {"Last-Event-ID": str(last)} if log.seqs else {}
        started = time.monotonic()
        try:
            url = f"/v1/jobs/{log.job_id}/events/stream"
            async with c.stream("GET", url, headers=headers) as response:
                self.record.add("sse", response.status_code, time.monotonic() - started)
                if response.status_code != 200:
                    await response.aread()
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    return
                event: dict[str, str] = {}
                async for line in response.aiter_lines():
                    if self.stop.is_set():
                        return
                    if line == "":
                        if event.get("id"):
                            log.seqs.append(int(event["id"]))
                        if event.get("event") == "end":
                            log.ended = True
                            return
                        event = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        event[name] = value.removeprefix(" ")
        except httpx.HTTPError as exc:
            self.record.add("sse", type(exc).__name__, time.monotonic() - started)

    # ---- the whole ---------------------------------------------------------------------

    async def run(self, n_clients: int, seconds: float, open_jobs: Any) -> None:
        """n clients: per tenant 1 creator, and of the rest 35% status reads, 20% lists, 20%
        events, 15% SSE streams, 10% uploads (round-robin over the tenants)."""
        kinds = [self.status_reader] * 7 + [self.lister] * 4 + [self.events_reader] * 4
        kinds += [self.streamer] * 3 + [self.uploader] * 2
        tasks = [asyncio.create_task(self.creator(t, open_jobs)) for t in self.tenants]
        for i in range(max(0, n_clients - len(self.tenants))):
            tenant = self.tenants[i % len(self.tenants)]
            tasks.append(asyncio.create_task(kinds[i % len(kinds)](tenant)))
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass
        self.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
