"""Every API route is behind a token, viewers cannot write, and admins manage tokens over HTTP.

The route walks read /openapi.json, so they cover every route added later without a list here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.tokens import Role

WRITES = {"post", "put", "patch", "delete"}


def _api_operations(client: TestClient) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation under /api/, path parameters filled in."""
    paths = client.get("/openapi.json").json()["paths"]
    operations = [
        (method, re.sub(r"\{[^}]+\}", "1", path))
        for path, item in paths.items()
        if path.startswith("/api/")
        for method in item
        if method in WRITES | {"get"}
    ]
    assert len(operations) >= 30, "the OKR routes alone are more than 30"
    return operations


def test_no_api_route_answers_without_a_token(client: TestClient) -> None:
    refused = {
        (method, path): client.request(method, path).status_code
        for method, path in _api_operations(client)
    }
    assert {operation for operation, code in refused.items() if code != 401} == set()
    bad = {"Authorization": "Bearer ldr_not-a-token"}
    for method, path in _api_operations(client):
        assert client.request(method, path, headers=bad).status_code == 401, (method, path)


def test_viewers_cannot_write(client: TestClient, headers: dict[Role, dict[str, str]]) -> None:
    answers = {
        (method, path): client.request(method, path, headers=headers[Role.viewer]).status_code
        for method, path in _api_operations(client)
        if method in WRITES
    }
    assert {operation for operation, code in answers.items() if code != 403} == set()


def _tokens(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    return client.get("/api/tokens", headers=admin).json()["items"]


def test_admins_manage_tokens(client: TestClient, headers: dict[Role, dict[str, str]]) -> None:
    admin = headers[Role.admin]
    created = client.post("/api/tokens", json={"role": "editor", "name": "ci"}, headers=admin)
    assert created.status_code == 201
    new = created.json()
    assert (new["role"], new["name"]) == ("editor", "ci")
    bearer = {"Authorization": f"Bearer {new['token']}"}
    body = {"key": "S1", "title": "Win the mid-market"}
    assert client.post("/api/strategies", json=body, headers=bearer).status_code == 201

    listed = _tokens(client, admin)
    assert {"viewer", "editor", "admin"} <= {token["role"] for token in listed}
    assert all(set(token) == {"id", "name", "role", "created_at", "revoked_at"} for token in listed)
    assert new["token"] not in client.get("/api/tokens", headers=admin).text

    assert client.delete(f"/api/tokens/{new['id']}", headers=admin).status_code == 204
    assert client.get("/api/strategies", headers=bearer).status_code == 401
    revoked = next(token for token in _tokens(client, admin) if token["id"] == new["id"])
    assert revoked["revoked_at"] is not None
    assert client.delete(f"/api/tokens/{new['id']}", headers=admin).status_code == 404
    assert client.delete("/api/tokens/999999", headers=admin).status_code == 404


@pytest.mark.parametrize("role", [Role.viewer, Role.editor])
def test_only_admins_manage_tokens(
    client: TestClient, headers: dict[Role, dict[str, str]], role: Role
) -> None:
    assert client.get("/api/tokens", headers=headers[role]).status_code == 403
    body = {"role": "admin"}
    assert client.post("/api/tokens", json=body, headers=headers[role]).status_code == 403


def test_the_last_admin_token_cannot_be_revoked(
    client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    admin = headers[Role.admin]
    (own,) = [token for token in _tokens(client, admin) if token["role"] == "admin"]
    refused = client.delete(f"/api/tokens/{own['id']}", headers=admin)
    assert refused.status_code == 409
    assert "last active admin token" in refused.json()["detail"]
    second = client.post("/api/tokens", json={"role": "admin"}, headers=admin).json()
    assert client.delete(f"/api/tokens/{own['id']}", headers=admin).status_code == 204
    assert client.get("/api/tokens", headers=admin).status_code == 401
    other = {"Authorization": f"Bearer {second['token']}"}
    assert client.get("/api/tokens", headers=other).status_code == 200


def test_bad_token_bodies_are_refused(
    client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    admin = headers[Role.admin]
    assert client.post("/api/tokens", json={"role": "owner"}, headers=admin).status_code == 422
    assert client.post("/api/tokens", json={}, headers=admin).status_code == 422
