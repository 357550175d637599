"""Starting and stopping the service's processes (uvicorn API, Celery worker) on this machine.

Used by `clo demo`, the integration and fault-injection tests and the API load benchmark.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def repo_root() -> Path:
    """The checkout holding api/ and worker/ (the processes are started from there)."""
    return Path(__file__).resolve().parents[1]


def _child_env(env: dict[str, str]) -> dict[str, str]:
    """Our environment plus `env`, with the checkout importable (api, worker, service_cli)."""
    path = os.pathsep.join(p for p in (str(repo_root()), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **env, "PYTHONPATH": path}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own process group, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=repo_root(),
            env=_child_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_api(
    env: dict[str, str], port: int, log: Path, workers: int = 1, access_log: bool = True
) -> subprocess.Popen[bytes]:
    """uvicorn serving api.app:app on 127.0.0.1:`port`."""
    cmd = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    return spawn(cmd if access_log else [*cmd, "--no-access-log"], env, log)


def start_worker(
    env: dict[str, str], queue: str, name: str, log: Path, pool: str = "prefork"
) -> subprocess.Popen[bytes]:
    """A Celery worker (one task at a time) consuming `queue` as `name`."""
    return spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app",
            "worker",
            "--queues",
            queue,
            "--concurrency",
            "1",
            "--pool",
            pool,
            "--hostname",
            name,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ],
        env,
        log,
    )


def start_dispatcher(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The webhook and retention dispatcher (`python -m service.dispatcher`)."""
    return spawn([sys.executable, "-m", "service.dispatcher"], env, log)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    """Return once `url` answers 200; fail early if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group we started (a worker's pool children too), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
    except ProcessLookupError:
        pass


def clo_cli(args: list[str], env: dict[str, str]) -> str:
    """Run a `clo` sub-command in a child process (its settings come from `env`, not ours)."""
    done = subprocess.run(
        [sys.executable, "-m", "service_cli", *args],
        cwd=repo_root(),
        env=_child_env(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"clo {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout
