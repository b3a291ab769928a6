"""Linear's real GraphQL schema, which the sandbox executes every query against.

The schema is not part of this repository: it is read from Linear's published
`schema.graphql` in the shared reference directory (`../shared/reference` beside the repo,
or `$LADDER_REFERENCE_DIR`), or from the path given explicitly. Building it takes about a
second, so each process builds it once per path.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from graphql import GraphQLSchema, build_schema

REPO_ROOT = Path(__file__).resolve().parents[3]
ENV_VAR = "LADDER_REFERENCE_DIR"


class SchemaMissing(FileNotFoundError):
    """The schema file is not where the sandbox was told to find it."""


def default_schema_path() -> Path:
    """`$LADDER_REFERENCE_DIR/linear/schema.graphql`, else the shared reference beside the repo."""
    reference = os.environ.get(ENV_VAR)
    base = Path(reference) if reference else REPO_ROOT.parent / "shared" / "reference"
    return base / "linear" / "schema.graphql"


def load_schema(path: str | Path | None = None) -> GraphQLSchema:
    """The built schema at `path` (default: `default_schema_path()`), cached per process."""
    resolved = Path(path) if path is not None else default_schema_path()
    if not resolved.is_file():
        raise SchemaMissing(
            f"Linear's schema.graphql is not at {resolved}: point {ENV_VAR} at the reference "
            "directory (it holds linear/schema.graphql), or pass the file's path explicitly"
        )
    return _build(resolved.resolve())


@cache
def _build(path: Path) -> GraphQLSchema:
    return build_schema(path.read_text(encoding="utf-8"))
