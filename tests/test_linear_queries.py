"""Every GraphQL document the Linear adapter can send, against the project's Linear schema.

That schema (integrations/linear/schema.graphql) is what the sandbox serves; the conformance
tests check it, and these documents, against Linear's published schema. Also the complexity
estimate the adapter sizes its pages with, and how the sandbox turns away what Linear would
turn away.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import GraphQLSchema, parse, validate
from starlette.testclient import TestClient

import integrations
from integrations.linear.adapter import LIST_SIZES, PAGE_CAP
from integrations.linear.complexity import MAX_QUERY_COMPLEXITY, estimate, largest_page, points
from integrations.linear.documents import QUERIES, documents
from integrations.sandbox.linear import DEFAULT_API_KEY, LinearSandbox
from integrations.sandbox.linear.schema import SCHEMA_PATH, load_schema

PAGED = ["Issues", "Projects", "IssueIds", "ProjectIds", "Teams"]


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    """The schema the sandbox serves: the package's own."""
    return load_schema()


def test_the_schema_ships_with_the_package(schema: GraphQLSchema) -> None:
    """No reference corpus needed: the sandbox builds the package's schema, once."""
    assert SCHEMA_PATH.is_relative_to(Path(integrations.__file__).parent)
    assert schema is load_schema(SCHEMA_PATH) is LinearSandbox().schema
    assert {"Issue", "Project", "Team", "Node"} <= set(schema.type_map)


def test_every_file_is_one_named_operation() -> None:
    files = {path.stem for path in QUERIES.glob("*.graphql")} - {"fragments"}
    assert len(documents()) == len(files) == 10
    assert {d.name for d in documents().values() if d.mutates} == {
        "CommentCreate",
        "CommentUpdate",
    }


@pytest.mark.parametrize("name", sorted(documents()))
def test_document_validates_against_the_schema(schema: GraphQLSchema, name: str) -> None:
    assert [error.message for error in validate(schema, documents()[name].ast)] == []


def test_the_schema_rejects_what_linear_rejects(schema: GraphQLSchema) -> None:
    """The check above has teeth: a field Linear lacks, or a misspelt filter, fails it."""
    wrong_field = parse("query { issues { nodes { id storyPoints } } }")
    assert "Cannot query field 'storyPoints'" in validate(schema, wrong_field)[0].message
    wrong_argument = parse("query { issues(orderBy: priority) { nodes { id } } }")
    assert validate(schema, wrong_argument)


@pytest.mark.parametrize("name", PAGED)
def test_pages_stay_under_the_complexity_ceiling(name: str) -> None:
    document = documents()[name]
    variables = {**LIST_SIZES, "orderBy": "updatedAt"}
    first = largest_page(document.ast, variables, ceiling=8_000, cap=PAGE_CAP)
    assert 1 <= first <= PAGE_CAP
    assert estimate(document.ast, {**variables, "first": first}) <= 8_000
    if first < PAGE_CAP:
        assert estimate(document.ast, {**variables, "first": first + 1}) > 8_000


def test_issue_pages_are_large_enough_for_the_hourly_quota() -> None:
    """50,000 issues must fit in far fewer than the 1,500 requests an hour allows."""
    document = documents()["Issues"]
    first = largest_page(document.ast, {**LIST_SIZES}, ceiling=8_000, cap=PAGE_CAP)
    assert first == PAGE_CAP
    assert 50_000 / first <= 200


def test_complexity_follows_linears_price_list() -> None:
    # 0.1 per property, 1 per object, connections times their page size (50 by default).
    assert estimate(parse("{ viewer { id name } }")) == pytest.approx(1.2)
    assert estimate(parse("{ issues(first: 10) { nodes { id title } } }")) == pytest.approx(13)
    assert estimate(parse("{ issues { nodes { id } } }")) == pytest.approx(56)
    nested = parse("{ issues(first: 2) { nodes { labels(first: 3) { nodes { name } } } } }")
    assert estimate(nested) == pytest.approx(1 + 2 * (1 + 1 + 3 * 1.1))
    by_variable = parse("query Q($n: Int) { teams(first: $n) { nodes { key } } }")
    assert estimate(by_variable, {"n": 4}) == pytest.approx(1 + 4 * 1.1)
    assert points(12304.999999999998) == 12305
    assert points(13.000000001) == 13


def _post(client: TestClient, query: str, **variables: object) -> tuple[int, dict]:
    response = client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": DEFAULT_API_KEY},
    )
    return response.status_code, response.json()


def test_the_sandbox_refuses_invalid_queries_in_linears_shape() -> None:
    client = TestClient(LinearSandbox(issues=5).app)
    status, body = _post(client, "query { issues { nodes { storyPoints } } }")
    assert status == 400
    (error,) = body["errors"]
    assert "storyPoints" in error["message"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert error["extensions"]["userError"] is True

    status, body = _post(
        client, "query Q($f: IssueFilter) { issues(filter: $f) { nodes { id } } }", f={"x": 1}
    )
    assert (status, body["errors"][0]["extensions"]["code"]) == (400, "BAD_USER_INPUT")

    too_complex = "{ issues(first: 250) { nodes { labels(first: 250) { nodes { name } } } } }"
    status, body = _post(client, too_complex)
    assert status == 400
    assert body["errors"][0]["message"] == "Query too complex"
    assert (
        f"Maximum allowed complexity: {MAX_QUERY_COMPLEXITY}"
        in (body["errors"][0]["extensions"]["userPresentableMessage"])
    )

    status, body = _post(client, "query { issues(first: 251) { nodes { id } } }")
    assert "between 0 and 250" in body["errors"][0]["message"]

    status, body = _post(
        client,
        "query Q($f: IssueFilter) { issues(filter: $f) { nodes { id } } }",
        f={"dueDate": {"null": True}},
    )
    assert "cannot filter Issue on `dueDate`" in body["errors"][0]["message"]

    unauthorised = client.post("/graphql", json={"query": "{ viewer { id } }"})
    assert unauthorised.json()["errors"][0]["extensions"]["code"] == "AUTHENTICATION_ERROR"
