"""Fault-injection fixtures: a throwaway database per session, tiny models built once,
and stacks of real processes (plus private Redis/Postgres) that are always killed after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from service_cli.demo import build_tiny_models
from tests.reliability.harness import PrivatePostgres, PrivateRedis, Stack
from tests.support.database import database_fixtures

# The migrated per-session database (pg_url -> engine -> factory) the stacks run on.
pg_url, engine, factory = database_fixtures("clo_rel")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 + tiny-m2m100, built once per test process."""
    folder = tmp_path_factory.mktemp("rel-models")
    build_tiny_models(folder)
    return folder


@pytest.fixture
def data_dir(tmp_path: Path, tiny_models: Path) -> Path:
    """CLO_DATA_DIR of one test; models/ links to the shared tiny models (the allow-list)."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "models").symlink_to(tiny_models, target_is_directory=True)
    return folder


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Stack]]:
    """make(env) -> a Stack; every process it starts is killed when the test ends."""
    stacks: list[Stack] = []

    def make(env: dict[str, str]) -> Stack:
        stack = Stack(env=env, logs=tmp_path / "logs")
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()
        _drop_queue(stack.env)


def _drop_queue(env: dict[str, str]) -> None:
    """Leftover wake-ups (duplicates by design) must not pile up in the shared Redis."""
    try:
        redis.Redis.from_url(env["CLO_BROKER_URL"], socket_timeout=2).delete(env["CLO_QUEUE"])
    except redis.RedisError:
        pass  # a private Redis already gone


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()
