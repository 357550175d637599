"""Schemathesis' stateful phase follows the OpenAPI links (api/docs/links.py) from a job to its
sub-resources with real ids, where the stateless run only ever reaches their 404s.

Kept short: the job operations only, a few scenarios of a few steps.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from persistence.artifact_store import ArtifactStore, make_key
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from tests.support.tenants import new_tenant

# As in test_schemathesis.py: a schema-valid body may name an unknown model (a rightful 422).
EXCLUDED = [positive_data_acceptance]
SUB_RESOURCES = {
    "/v1/jobs/{job_id}",
    "/v1/jobs/{job_id}/events",
    "/v1/jobs/{job_id}/metrics",
    "/v1/jobs/{job_id}/artifacts",
}


def test_links_lead_from_a_job_to_its_sub_resources(app) -> None:  # type: ignore[no-untyped-def]
    schema = app.openapi()
    created = schema["paths"]["/v1/jobs"]["post"]["responses"]["201"]["links"]
    assert set(created) >= {"GetJob", "CancelJob", "ListEvents", "StreamEvents", "ListArtifacts"}
    assert created["ListEvents"]["parameters"] == {"job_id": "$response.body#/id"}
    operation_ids = {op["operationId"] for ops in schema["paths"].values() for op in ops.values()}
    assert {link["operationId"] for link in created.values()} <= operation_ids
    listed = schema["paths"]["/v1/jobs/{job_id}/artifacts"]["get"]["responses"]["200"]["links"]
    assert listed["DownloadArtifact"]["parameters"] == {
        "job_id": "$request.path.job_id",
        "name": "$response.body#/0/name",
    }


def test_stateful_run_reaches_job_sub_resources(app, factory, insert_job) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(factory, "stateful")
    # A finished job with events and an artifact, so the list page links to something real.
    job_id = insert_job(tenant, status="succeeded")
    store: ArtifactStore = app.state.store
    stored = store.write_bytes(make_key("jobs", str(job_id), "adapter.tar"), b"z" * 100)
    with session_scope(factory) as session:
        events_repo.append_event(session, job_id, "succeeded", "done")
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
    schema = (
        schemathesis.openapi.from_asgi("/openapi.json", app)
        # Reads of jobs only: a deleted or cancelled job ends what a scenario can follow.
        .include(path_regex="^/v1/jobs", method="GET")
        # A job created during the run is queued for good: its stream would never end.
        .exclude(path_regex="/events/stream$")
    )
    # Valid requests only: a negative case (a 401, a 422) ends a chain before it follows a link.
    schema.config.generation.update(modes=[GenerationMode.POSITIVE])
    reached: set[tuple[str, str, int]] = set()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case):  # type: ignore[no-untyped-def]
            return {"headers": tenant.headers}

        def after_call(self, response, case) -> None:  # type: ignore[no-untyped-def]
            super().after_call(response, case)
            reached.add((case.method, case.operation.path, response.status_code))

        def validate_response(self, response, case, additional_checks=None, **kwargs):  # type: ignore[no-untyped-def]
            case.validate_response(
                response,
                excluded_checks=EXCLUDED,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    Machine.run(
        settings=settings(
            max_examples=3,
            stateful_step_count=3,
            derandomize=True,  # the same scenarios every run
            phases=[Phase.generate],
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    ok = {path for method, path, status in reached if status in (200, 206)}
    assert SUB_RESOURCES & ok, sorted(reached)
