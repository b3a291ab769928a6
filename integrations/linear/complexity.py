"""Estimate what a GraphQL query costs against Linear's complexity budget.

Linear prices a query before running it: each scalar property costs 0.1 point, each object
1 point, and a connection multiplies what its nodes cost by its page size (`first` or `last`,
50 when neither is given). One query may cost at most 10,000 points, and the hourly budget
is counted in the same points. This module applies those published rules to a parsed
document; it needs no schema, because Linear's connections are recognisable by their
`nodes`/`edges` selections and their `first`/`last` arguments. Where the rules are silent it
approximates: the connection itself costs 1 point and its `pageInfo` is counted once, not
per node. Linear's own figures may differ slightly, which is why the adapter keeps its pages
below the ceiling and halves a page that Linear still refuses.

The adapter uses it to choose page sizes that stay under the per-query ceiling, and the
sandbox uses it to charge requests, so both read the same price list.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    value_from_ast_untyped,
)

PROPERTY_COST = 0.1
OBJECT_COST = 1.0
DEFAULT_PAGE_SIZE = 50
MAX_QUERY_COMPLEXITY = 10_000


def estimate(
    document: DocumentNode,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
) -> float:
    """The complexity of one operation of `document` run with `variables`."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    operation = _operation(document, operation_name)
    return _selection_cost(operation.selection_set, fragments, dict(variables or {}))


def points(complexity: float) -> int:
    """Whole points, rounded up as Linear reports them (ignoring float noise)."""
    return math.ceil(round(complexity, 6))


def largest_page(
    document: DocumentNode,
    variables: Mapping[str, Any],
    *,
    page_variable: str = "first",
    ceiling: float = MAX_QUERY_COMPLEXITY,
    cap: int = 250,
) -> int:
    """The largest value of `page_variable` (up to `cap`) whose query costs at most `ceiling`.

    The cost grows linearly with the page size, so two estimates give its slope.
    """
    one = estimate(document, {**variables, page_variable: 1})
    per_node = estimate(document, {**variables, page_variable: 2}) - one
    if per_node <= 0:
        return cap
    return max(1, min(cap, math.floor((ceiling - one) / per_node) + 1))


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is not None:
        operations = [op for op in operations if op.name and op.name.value == name]
    if len(operations) != 1:
        raise ValueError(f"expected exactly one operation named {name!r} in the document")
    return operations[0]


def _selection_cost(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> float:
    return sum(
        _field_cost(field, fragments, variables) for field in _fields(selection_set, fragments)
    )


def _fields(
    selection_set: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode]
) -> Iterator[FieldNode]:
    """The fields of a selection set, with fragments spread in place."""
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            yield from _fields(fragments[selection.name.value].selection_set, fragments)


def _field_cost(
    field: FieldNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> float:
    if field.selection_set is None:
        return PROPERTY_COST
    if not _is_connection(field):
        return OBJECT_COST + _selection_cost(field.selection_set, fragments, variables)
    size = _page_size(field, variables)
    total = OBJECT_COST
    for child in _fields(field.selection_set, fragments):
        cost = _field_cost(child, fragments, variables)
        total += size * cost if child.name.value in {"nodes", "edges"} else cost
    return total


def _is_connection(field: FieldNode) -> bool:
    arguments = {argument.name.value for argument in field.arguments or ()}
    if arguments & {"first", "last"}:
        return True
    children = field.selection_set.selections if field.selection_set else ()
    return any(isinstance(c, FieldNode) and c.name.value in {"nodes", "edges"} for c in children)


def _page_size(field: FieldNode, variables: Mapping[str, Any]) -> int:
    for argument in field.arguments or ():
        if argument.name.value in {"first", "last"}:
            value = _argument_value(argument.value, variables)
            if isinstance(value, int) and not isinstance(value, bool):
                return max(value, 0)
    return DEFAULT_PAGE_SIZE


def _argument_value(node: ValueNode, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, VariableNode):
        return variables.get(node.name.value)
    return value_from_ast_untyped(node, dict(variables))
