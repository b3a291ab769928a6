"""The GraphQL documents the Linear adapter sends, read from the `.graphql` files beside it.

Each file under `queries/` holds one operation; `fragments.graphql` holds the selections
several operations share. A document is the operation plus exactly the fragments it
spreads, since GraphQL rejects a document that defines a fragment it does not use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    OperationDefinitionNode,
    OperationType,
    parse,
)

QUERIES = Path(__file__).with_name("queries")
FRAGMENTS_FILE = "fragments.graphql"
_SPREAD = re.compile(r"\.\.\.\s*([_A-Za-z][_0-9A-Za-z]*)")


@dataclass(frozen=True)
class Document:
    """One operation ready to send: its name, its text and its parsed form."""

    name: str
    text: str
    ast: DocumentNode
    mutates: bool


@cache
def documents() -> dict[str, Document]:
    """Every operation the adapter can send, by operation name."""
    fragments = _fragments()
    found: dict[str, Document] = {}
    for path in sorted(QUERIES.glob("*.graphql")):
        if path.name == FRAGMENTS_FILE:
            continue
        operation = path.read_text()
        text = "\n".join([operation, *(fragments[name] for name in _needed(operation, fragments))])
        ast = parse(text)
        (definition,) = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
        assert definition.name is not None, f"{path.name}: operations must be named"
        mutates = definition.operation is OperationType.MUTATION
        found[definition.name.value] = Document(definition.name.value, text, ast, mutates)
    return found


def document(name: str) -> Document:
    """The operation called `name`."""
    return documents()[name]


def _fragments() -> dict[str, str]:
    """Each fragment of fragments.graphql as its own source text, by fragment name."""
    source = (QUERIES / FRAGMENTS_FILE).read_text()
    return {
        definition.name.value: source[definition.loc.start : definition.loc.end]  # type: ignore[union-attr]
        for definition in parse(source).definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


def _needed(text: str, fragments: dict[str, str]) -> list[str]:
    """The fragments `text` spreads, directly or through other fragments, in a stable order."""
    needed: list[str] = []
    pending = _SPREAD.findall(text)
    while pending:
        name = pending.pop(0)
        if name not in needed:
            needed.append(name)
            pending.extend(_SPREAD.findall(fragments[name]))
    return needed
