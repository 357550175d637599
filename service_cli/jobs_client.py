"""HTTP client of the CLO API's /v1/jobs: submit, poll with a progress bar, resumable downloads."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path
from typing import Any, cast

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from clo.checksum import sha256_file

console = Console(stderr=True)

TERMINAL = {"succeeded", "failed", "cancelled"}
CHUNK = 1024 * 1024
Json = dict[str, Any]  # one decoded JSON object of the API


class ApiError(Exception):
    """The API answered with an error body (or not at all)."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        self.status = status
        self.error = error
        where = f" (field: {error['param']})" if error.get("param") else ""
        code, message = error.get("code", "error"), error.get("message", "")
        super().__init__(f"{status} {code}: {message}{where}")


class JobsClient:
    """A thin httpx client for /v1/jobs (Bearer API key)."""

    def __init__(self, api_url: str, api_key: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            follow_redirects=True,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; the decoded JSON body, or ApiError carrying the API's error object."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                0, {"code": "unreachable", "message": f"cannot reach {self.http.base_url}: {exc}"}
            ) from exc
        if response.status_code >= 400:
            try:
                error = response.json().get("error") or {"message": response.text}
            except ValueError:
                error = {"message": response.text[:500]}
            raise ApiError(response.status_code, error)
        return response.json() if response.content else None

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """Create a job (retries with one idempotency key return the same job)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return cast(Json, self.request("POST", "/v1/jobs", json=spec, headers=headers))

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's current state."""
        return cast(Json, self.request("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(self, **params: Any) -> dict[str, Any]:
        """One page of jobs, newest first; falsy filters are left out."""
        return cast(
            Json, self.request("GET", "/v1/jobs", params={k: v for k, v in params.items() if v})
        )

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the job to stop."""
        return cast(Json, self.request("POST", f"/v1/jobs/{job_id}/cancel"))

    def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's artifacts (name, size, sha256, download_url)."""
        return cast(list[Json], self.request("GET", f"/v1/jobs/{job_id}/artifacts"))


def describe_progress(job: dict[str, Any]) -> str:
    """One line: status, queue position while queued, and stage."""
    stage = job.get("stage") or "-"
    extra = ""
    if job["status"] == "queued" and job.get("queue_position"):
        extra = f" (position {job['queue_position']})"
    return f"{job['status']}{extra} · {stage}"


def watch_job(
    client: JobsClient,
    job_id: str,
    interval: float = 1.0,
    timeout: float | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Poll until the job ends, drawing a live progress bar per stage; returns the final job."""
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[steps]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task("queued", total=None, steps="")
        while True:
            job = client.get(job_id)
            progress = job.get("progress") or {}
            total, step = progress.get("total_steps"), progress.get("step")
            steps = f"{step}/{total}" if step is not None and total else ""
            bar.update(
                task,
                description=describe_progress(job),
                total=total or None,
                completed=step or 0,
                steps=steps,
            )
            if job["status"] in TERMINAL:
                if job["status"] == "succeeded" and total:
                    bar.update(task, completed=total)
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(interval)


def download_artifact(client: JobsClient, job_id: str, name: str, out_dir: Path) -> Path:
    """Download one artifact, resuming a partial file with Range; verify its sha256."""
    listing = {a["name"]: a for a in client.artifacts(job_id)}
    if name not in listing:
        available = ", ".join(sorted(listing)) or "none yet"
        raise ApiError(
            404,
            {
                "code": "artifact_not_found",
                "message": f"job {job_id} has no artifact {name!r} ({available})",
            },
        )
    meta = listing[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    target, partial = out_dir / name, out_dir / f"{name}.partial"
    if target.exists() and sha256_file(target) == meta["sha256"]:
        return target
    offset = partial.stat().st_size if partial.exists() else 0
    if offset > meta["size"]:
        partial.unlink()
        offset = 0
    headers = {"Range": f"bytes={offset}-"} if 0 < offset < meta["size"] else {}
    if offset < meta["size"]:
        with client.http.stream("GET", meta["download_url"], headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError(response.status_code, {"message": response.text[:500]})
            mode = "ab" if response.status_code == 206 else "wb"  # 200: the server restarted it
            with open(partial, mode) as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
    actual = sha256_file(partial)
    if actual != meta["sha256"]:
        partial.unlink()
        raise ApiError(
            0,
            {
                "code": "checksum_mismatch",
                "message": f"{name}: sha256 {actual} != expected {meta['sha256']}; "
                "the partial file was removed, run download again",
            },
        )
    os.replace(partial, target)
    return target


def extract_bundle(archive: Path, dest: Path) -> Path:
    """Unpack a tar bundle with the 'data' filter (no links out, no absolute paths)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest
