"""/docs works offline: Swagger UI's assets come from the app itself, and Authorize exists."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_page_and_its_assets_are_served_by_the_app(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200, page
        assert "http://" not in response.text and "https://" not in response.text, page
        assets = _assets(response.text)
        assert any(a.endswith(".js") for a in assets), page
        for asset in assets:
            fetched = client.get(asset)
            assert fetched.status_code == 200 and len(fetched.content) > 1000, asset
    assert "/openapi.json" in client.get("/docs").text
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_openapi_declares_bearer_auth_on_keyed_operations(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    paths = schema["paths"]
    assert paths["/v1/jobs"]["post"]["security"] == [{"bearerAuth": []}]
    assert paths["/v1/comparisons/{comparison_id}"]["get"]["security"] == [{"bearerAuth": []}]
    # No key: the health checks and the signed download link (its token is the credential).
    assert "security" not in paths["/healthz"]["get"]
    assert "security" not in paths["/v1/downloads/{token}"]["get"]
