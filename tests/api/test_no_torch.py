"""The API process runs on the core install: no torch, transformers, peft, datasets, ...

The API image installs `pip install .` (core dependencies only, no `ml` extra). A child
interpreter puts an import hook in front of every finder that refuses the modules only the `ml`
extra brings (those distributions and everything they pull in that core does not), then imports
every module of api/, persistence/ and service/ (and the `clo` command), builds the app and
serves a few requests, including the paths that import late (the Celery wake-up, the
comparison report). A new `import torch` anywhere on the API path fails here, not in the image.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]

# Asserted to be in the refused set, so a broken metadata walk cannot make the test vacuous.
MUST_REFUSE = {"torch", "transformers", "peft", "datasets"}


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str]) -> set[str]:
    """Installed distributions these requirements pull in, transitively (extras followed)."""
    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, via_extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": via_extra}):
            continue
        name = _dist_name(req.name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (e.g. a platform-only dependency)
        extras = [""] + sorted(req.extras)
        key = name if not req.extras else f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for sub in dist.requires or []:
            for extra in extras:
                todo.append((Requirement(sub), extra))
    return {k.split("[")[0] for k in seen}


def _refused_modules() -> set[str]:
    """Top-level import names of the distributions the `ml` extra adds over core."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _closure(project["dependencies"])
    ml_only = _closure(project["optional-dependencies"]["ml"]) - core
    modules = {
        module
        for module, dists in metadata.packages_distributions().items()
        if dists and all(_dist_name(d) in ml_only for d in dists)
    }
    return {m for m in modules if m.isidentifier() and not m.startswith("_")} | MUST_REFUSE


CHILD = textwrap.dedent(
    """
    import importlib, json, os, pkgutil, sys, uuid
    from pathlib import Path

    REFUSED = set(json.loads(os.environ["CLO_TEST_REFUSED"]))

    class RefuseMl:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in REFUSED:
                raise ImportError(f"{name} is not installed in the API image (ml extra)")
            return None

    sys.meta_path.insert(0, RefuseMl())

    # service/ (job rules shared with the worker) once it exists; the `clo` console script, which
    # the image installs too, for `clo admin` inside the API container.
    packages = [p for p in ("api", "persistence", "service") if Path(p, "__init__.py").is_file()]
    for package in packages:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            importlib.import_module(info.name)
    if Path("service_cli", "main.py").is_file():
        importlib.import_module("service_cli.main")
        importlib.import_module("service_cli.admin")

    import asyncio

    import httpx

    from api.app import create_app
    from api.comparisons.service import _report
    from api.enqueue import default_send
    from persistence.db import make_engine, make_session_factory
    from persistence.settings import Settings
    from tests.support.api import MODELS, job_body
    from tests.support.tenants import new_tenant

    data = Path(os.environ["CLO_TEST_DIR"])
    settings = Settings(
        environment="development",
        database_url=f"sqlite:///{data / 'clo.db'}",
        broker_url="filesystem://",
        data_dir=data,
        models=MODELS,
        log_json=False,
    )
    sent = []
    app = create_app(settings, sent.append)

    # httpx over ASGI, not starlette's TestClient: that one imports httpx2, an ml-only package.
    async def serve():
        async with app.router.lifespan_context(app):  # migrates the SQLite database
            tenant = new_tenant(make_session_factory(make_engine(settings.db_url)))
            h = tenant.headers
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                assert (await client.get("/healthz")).status_code == 200
                assert (await client.get("/v1/languages", headers=h)).status_code == 200
                assert (await client.get("/v1/models", headers=h)).status_code == 200
                created = await client.post("/v1/jobs", json=job_body(), headers=h)
                assert created.status_code == 201, created.text
                job = await client.get(f"/v1/jobs/{created.json()['id']}", headers=h)
                assert job.status_code == 200, job.text
                body = {"name": "row", "base": job_body()}
                comparison = await client.post("/v1/comparisons", json=body, headers=h)
                assert comparison.status_code == 201, comparison.text
                path = f"/v1/comparisons/{comparison.json()['id']}"
                assert (await client.get(path, headers=h)).status_code == 200
                assert (await client.get("/metrics")).status_code == 200
        assert sent, "the app did not enqueue"

    asyncio.run(serve())
    _report([])  # compare_reports, reached once runs succeed
    # The production wake-up (the app above was given a list): Celery over the real broker.
    assert default_send(settings)(str(uuid.uuid4())) is not False

    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("the import hook let torch through")
    loaded = sorted({m.partition(".")[0] for m in sys.modules} & REFUSED)
    assert not loaded, loaded
    print("ok")
    """
)


def test_api_path_imports_nothing_of_the_ml_extra(tmp_path: Path) -> None:
    refused = _refused_modules()
    assert MUST_REFUSE <= refused
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "CLO_TEST_REFUSED": json.dumps(sorted(refused)),
        "CLO_TEST_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), (
        f"refused: {sorted(refused)}\n{done.stdout}\n{done.stderr}"
    )
