"""The GraphQL schema the sandbox executes every query against.

It is the project's own `integrations/linear/schema.graphql`: the part of Linear's API that
Ladder uses, a faithful subset of Linear's published schema (the conformance tests prove
it), shipped with the package. Each process builds it once per path.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from graphql import GraphQLSchema, build_schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "linear" / "schema.graphql"


def load_schema(path: str | Path | None = None) -> GraphQLSchema:
    """The built schema at `path` (default: the package's `SCHEMA_PATH`), cached per process."""
    return _build(Path(SCHEMA_PATH if path is None else path).resolve())


@cache
def _build(path: Path) -> GraphQLSchema:
    return build_schema(path.read_text(encoding="utf-8"))
