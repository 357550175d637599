"""OpenAPI links from a job to its sub-resources, so clients and stateful testers can follow them.

A link says "the `id` in this response is the `job_id` of that operation": from a created or
read job (and the first job of a list page) to its read, cancel, events, event stream,
training metrics, evaluation and artifacts; from an artifact listing to the download and the
signed-link request of its first artifact. Schemathesis' stateful phase walks these links,
which it could not reach before (every job id it made up was a 404).
"""

from __future__ import annotations

from typing import Any

JOB = "/v1/jobs/{job_id}"
# (method, path) of each job sub-resource; the link is named after the last path part.
JOB_TARGETS = {
    "GetJob": ("get", JOB),
    "CancelJob": ("post", f"{JOB}/cancel"),
    "ListEvents": ("get", f"{JOB}/events"),
    "StreamEvents": ("get", f"{JOB}/events/stream"),
    "GetTrainingMetrics": ("get", f"{JOB}/metrics"),
    "GetEvaluation": ("get", f"{JOB}/evaluation"),
    "ListArtifacts": ("get", f"{JOB}/artifacts"),
}
ARTIFACT_TARGETS = {
    "DownloadArtifact": ("get", f"{JOB}/artifacts/{{name}}"),
    "CreateDownloadLink": ("post", f"{JOB}/artifacts/{{name}}/link"),
}
# Where a job id is found in each source response.
JOB_SOURCES = [
    ("post", "/v1/jobs", "201", "$response.body#/id"),
    ("post", "/v1/jobs", "200", "$response.body#/id"),  # an idempotent replay
    ("get", "/v1/jobs", "200", "$response.body#/data/0/id"),
    ("get", JOB, "200", "$response.body#/id"),
]


def _operation_id(schema: dict[str, Any], method: str, path: str) -> str | None:
    operation = schema.get("paths", {}).get(path, {}).get(method)
    return operation.get("operationId") if isinstance(operation, dict) else None


def _add_links(
    schema: dict[str, Any],
    source: tuple[str, str, str],
    targets: dict[str, tuple[str, str]],
    parameters: dict[str, str],
) -> None:
    method, path, status = source
    response = schema.get("paths", {}).get(path, {}).get(method, {}).get("responses", {})
    if status not in response:
        return
    links = response[status].setdefault("links", {})
    for name, (target_method, target_path) in targets.items():
        operation_id = _operation_id(schema, target_method, target_path)
        if operation_id is not None:
            wanted = {k: v for k, v in parameters.items() if "{" + k + "}" in target_path}
            links[name] = {"operationId": operation_id, "parameters": wanted}


def with_job_links(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the job and artifact links to a generated OpenAPI document (in place)."""
    for method, path, status, expression in JOB_SOURCES:
        _add_links(schema, (method, path, status), JOB_TARGETS, {"job_id": expression})
    _add_links(
        schema,
        ("get", f"{JOB}/artifacts", "200"),
        ARTIFACT_TARGETS,
        {"job_id": "$request.path.job_id", "name": "$response.body#/0/name"},
    )
    return schema
