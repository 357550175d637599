"""docker-compose.yml: parsed and validated; every command points at a real entry point here."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "minio",
    "minio-init",
    "api",
    "worker",
    "reaper",
    "dispatcher",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _command(service: dict[str, Any], dockerfile: Path | None) -> list[str]:
    cmd = service.get("command")
    if cmd is None and dockerfile is not None:
        match = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile.read_text(), re.M)
        assert match, f"{dockerfile} has no exec-form CMD"
        cmd = yaml.safe_load(match.group(1))
    assert cmd, "service has no command"
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if argv[:2] == ["sh", "-c"]:
        return shlex.split(argv[2])
    return argv


def _split_commands(argv: list[str]) -> list[list[str]]:
    """`a && exec b` -> [[a], [b]] (drops `exec`)."""
    parts: list[list[str]] = [[]]
    for token in argv:
        if token == "&&":
            parts.append([])
        elif not (token == "exec" and not parts[-1]):
            parts[-1].append(token)
    return parts


def _module_exists(dotted: str) -> bool:
    return importlib.util.find_spec(dotted) is not None


def _check_entry_point(argv: list[str]) -> None:
    """Resolve the program + target of one command to files/objects of this repository."""
    prog = argv[0]
    if prog == "alembic":
        assert (ROOT / "alembic.ini").is_file() and (ROOT / "migrations" / "env.py").is_file()
        assert argv[1:3] == ["upgrade", "head"]
    elif prog == "uvicorn":
        module, _, attr = argv[1].partition(":")
        assert _module_exists(module), f"uvicorn target module {module} missing"
        names = vars(importlib.import_module(module))
        # api.app builds `app` lazily (module __getattr__) so importing reads no environment.
        lazy = callable(names.get("__getattr__")) and callable(names.get("create_app"))
        assert attr and (attr in names or lazy), f"{module} has no {attr}"
    elif prog == "celery":
        app_module = argv[argv.index("-A") + 1]
        mod = importlib.import_module(app_module)
        app = mod.app
        assert argv[argv.index("-A") + 2] in {"worker", "beat"}
        if "--queues" in argv:
            queue = argv[argv.index("--queues") + 1]
            assert queue == app.conf.task_default_queue
            app.loader.import_default_modules()  # the `include` modules register the tasks
            assert "clo.run_job" in app.tasks
    elif prog == "python":
        assert argv[1] == "-m"
        assert _module_exists(argv[2]), f"python -m {argv[2]}: module missing"
        mod = importlib.import_module(argv[2])
        assert callable(getattr(mod, "main", None)), f"{argv[2]} has no main()"
    else:
        raise AssertionError(f"unknown entry point {prog!r}")


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == EXPECTED_SERVICES
    for name in ("api", "worker", "reaper", "dispatcher"):
        dockerfile = ROOT / services[name]["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
    worker_df = (ROOT / services["worker"]["build"]["dockerfile"]).read_text()
    assert re.search(r"^FROM\s+pytorch/pytorch:\S*cuda", worker_df, re.M)
    assert re.search(
        r"^FROM\s+python:3\.\d+-slim", (ROOT / "docker/Dockerfile.api").read_text(), re.M
    )


def test_healthchecks_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "minio", "api", "worker"):
        check = services[name].get("healthcheck")
        assert check and check["test"], f"{name} has no healthcheck"
    api_deps = services["api"]["depends_on"]
    assert api_deps["postgres"]["condition"] == "service_healthy"
    assert api_deps["redis"]["condition"] == "service_healthy"


def test_worker_reserves_one_gpu(compose: dict[str, Any]) -> None:
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert devices[0]["count"] == 1


def test_volumes_declared_and_state_persisted(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in declared, f"{name} mounts undeclared volume {source}"
    assert any("/var/lib/postgresql/data" in m for m in compose["services"]["postgres"]["volumes"])


def test_services_share_config_pointing_at_compose_services(compose: dict[str, Any]) -> None:
    env = compose["services"]["api"]["environment"]
    assert env == compose["services"]["worker"]["environment"]
    assert env["CLO_ENVIRONMENT"] == "production"
    assert "@postgres:5432/" in env["CLO_DATABASE_URL"]
    assert env["CLO_BROKER_URL"].startswith("redis://redis:6379")


@pytest.mark.parametrize("service", ["api", "worker", "reaper", "dispatcher"])
def test_commands_resolve_to_entry_points(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    argv = _command(spec, ROOT / spec["build"]["dockerfile"])
    for command in _split_commands(argv):
        _check_entry_point(command)


def test_dockerfile_cmds_resolve_too() -> None:
    for dockerfile in (ROOT / "docker").glob("Dockerfile.*"):
        for command in _split_commands(_command({}, dockerfile)):
            _check_entry_point(command)


def test_object_store_is_the_only_thing_api_and_worker_share(compose: dict[str, Any]) -> None:
    """MinIO holds uploads, artifacts and checkpoints; the API and the worker mount no common
    volume (as on separate hosts), and the bucket exists before the API starts."""
    from persistence.settings import Settings
    from persistence.storage_url import parse_storage_url

    services = compose["services"]
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["minio-init"]["image"].startswith("minio/mc:")
    assert "mc mb --ignore-existing store/clo" in services["minio-init"]["command"][0]
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    init = services["api"]["depends_on"]["minio-init"]["condition"]
    assert init == "service_completed_successfully"
    env = services["api"]["environment"]
    location = parse_storage_url(env["CLO_STORAGE_URL"])
    assert location.scheme == "s3" and location.bucket == "clo"
    assert env["CLO_STORAGE_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    assert "CLO_ARTIFACT_DIR" not in env
    settings = Settings(
        storage_url=env["CLO_STORAGE_URL"],
        storage_endpoint_url=env["CLO_STORAGE_ENDPOINT_URL"],
        storage_region=env["CLO_STORAGE_REGION"],
    )
    assert settings.storage_url == "s3://clo/store"

    def mounts(name: str) -> set[str]:
        return {m.split(":")[0] for m in services[name].get("volumes", [])}

    assert not mounts("api") & mounts("worker")
    for name in ("reaper", "dispatcher"):
        assert not mounts(name), f"{name} needs no disk: it reaches the store"
