"""The project's Linear schema is a faithful subset of Linear's published one.

integrations/linear/schema.graphql is what the sandbox Linear serves; Linear's own
`linear/schema.graphql` in the corpus is what Linear serves. Every type, field, argument,
input field, enum value, interface and union member of ours must be in Linear's identically
(same kind, same type with the same list and non-null wrapping, same defaults, same
deprecation), and wherever ours declares a field or an input type, the arguments and input
fields Linear requires (non-null, no default) must be there too. So a document that passes
the sandbox's validation passes Linear's, and every document the adapter sends passes both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    Undefined,
    build_schema,
    print_ast,
    specified_directives,
    validate,
    validate_schema,
)
from support.reference import REFERENCE

from integrations.linear.documents import documents
from integrations.sandbox.linear.schema import SCHEMA_PATH, load_schema

LINEAR_SCHEMA = REFERENCE / "linear" / "schema.graphql"
BUILT_IN_DIRECTIVES = {directive.name for directive in specified_directives}


@pytest.fixture
def ours() -> GraphQLSchema:
    """The project's schema, as the sandbox builds it."""
    return load_schema()


@pytest.fixture
def linear() -> GraphQLSchema:
    """Linear's published schema (the corpus fixture has skipped the test if it is absent)."""
    return load_schema(LINEAR_SCHEMA)


# --- the comparison ------------------------------------------------------------------------


def _kind(named: GraphQLNamedType) -> str:
    return type(named).__name__.removeprefix("GraphQL").removesuffix("Type").lower()


def _default(value: GraphQLArgument | GraphQLInputField) -> str | None:
    """The default of an argument or input field as GraphQL text, or None without one."""
    default = getattr(value, "default", None)  # graphql-core 3.3 keeps the literal here
    if default is not None:
        return print_ast(default.literal) if default.literal is not None else repr(default.value)
    return None if value.default_value is Undefined else repr(value.default_value)


def _same(where: str, what: str, mine: str, linears: str) -> Iterator[str]:
    if mine != linears:
        yield f"{where}: {what} {mine}, Linear's is {linears}"


def _compare_argument(
    where: str,
    ours: GraphQLArgument | GraphQLInputField,
    theirs: GraphQLArgument | GraphQLInputField,
) -> Iterator[str]:
    yield from _same(where, "type", str(ours.type), str(theirs.type))
    yield from _same(where, "default", str(_default(ours)), str(_default(theirs)))
    yield from _same(
        where, "deprecation", repr(ours.deprecation_reason), repr(theirs.deprecation_reason)
    )


def _compare_field(where: str, ours: GraphQLField, theirs: GraphQLField) -> Iterator[str]:
    yield from _same(where, "type", str(ours.type), str(theirs.type))
    yield from _same(
        where, "deprecation", repr(ours.deprecation_reason), repr(theirs.deprecation_reason)
    )
    for name, argument in ours.args.items():
        if name not in theirs.args:
            yield f"{where}({name}:): Linear's field has no such argument"
        else:
            yield from _compare_argument(f"{where}({name}:)", argument, theirs.args[name])


def _compare_type(ours: GraphQLNamedType, theirs: GraphQLNamedType) -> Iterator[str]:
    name = ours.name
    if type(ours) is not type(theirs):
        yield f"{name}: kind {_kind(ours)}, Linear's is {_kind(theirs)}"
        return
    if isinstance(ours, GraphQLObjectType | GraphQLInterfaceType):
        assert isinstance(theirs, GraphQLObjectType | GraphQLInterfaceType)
        mine = sorted(i.name for i in ours.interfaces)
        linears = sorted(i.name for i in theirs.interfaces)
        if mine != linears:
            yield f"{name}: implements {mine}, Linear's implements {linears}"
        for field_name, field in ours.fields.items():
            if field_name not in theirs.fields:
                yield f"{name}.{field_name}: Linear's {name} has no such field"
            else:
                yield from _compare_field(f"{name}.{field_name}", field, theirs.fields[field_name])
    elif isinstance(ours, GraphQLInputObjectType):
        assert isinstance(theirs, GraphQLInputObjectType)
        for field_name, input_field in ours.fields.items():
            if field_name not in theirs.fields:
                yield f"{name}.{field_name}: Linear's input {name} has no such field"
            else:
                yield from _compare_argument(
                    f"{name}.{field_name}", input_field, theirs.fields[field_name]
                )
    elif isinstance(ours, GraphQLEnumType):
        assert isinstance(theirs, GraphQLEnumType)
        for value_name, value in ours.values.items():
            if value_name not in theirs.values:
                yield f"{name}.{value_name}: Linear's enum {name} has no such value"
            else:
                yield from _same(
                    f"{name}.{value_name}",
                    "deprecation",
                    repr(value.deprecation_reason),
                    repr(theirs.values[value_name].deprecation_reason),
                )
    elif isinstance(ours, GraphQLUnionType):
        assert isinstance(theirs, GraphQLUnionType)
        extra = sorted({t.name for t in ours.types} - {t.name for t in theirs.types})
        if extra:
            yield f"{name}: members {extra} are not members of Linear's union"


def differences(ours: GraphQLSchema, theirs: GraphQLSchema) -> list[str]:
    """Everything `ours` declares that `theirs` lacks or declares differently, one line each."""
    found: list[str] = []
    for root in ("query_type", "mutation_type", "subscription_type"):
        mine, linears = getattr(ours, root), getattr(theirs, root)
        if mine is not None and (linears is None or mine.name != linears.name):
            found.append(f"the {root} is {mine.name}, Linear's is {linears and linears.name}")
    for name, named in sorted(ours.type_map.items()):
        if name.startswith("__"):
            continue
        if name not in theirs.type_map:
            found.append(f"{name}: Linear's schema has no such type")
        else:
            found.extend(_compare_type(named, theirs.type_map[name]))
    for directive in ours.directives:
        if (
            directive.name not in BUILT_IN_DIRECTIVES
            and theirs.get_directive(directive.name) is None
        ):
            found.append(f"@{directive.name}: Linear's schema has no such directive")
    return found


def _required(values: dict[str, GraphQLArgument] | dict[str, GraphQLInputField]) -> list[str]:
    return [
        name
        for name, value in values.items()
        if isinstance(value.type, GraphQLNonNull) and _default(value) is None
    ]


def missing_required(ours: GraphQLSchema, theirs: GraphQLSchema) -> list[str]:
    """What Linear requires (non-null, no default) that ours omits where it declares the parent.

    Arguments of the fields ours declares, and input fields of the input types ours declares:
    a document valid for ours would lack them, and Linear would refuse it.
    """
    found: list[str] = []
    for name, named in sorted(ours.type_map.items()):
        linears = theirs.type_map.get(name)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType) and isinstance(
            linears, GraphQLObjectType | GraphQLInterfaceType
        ):
            for field_name, field in named.fields.items():
                if field_name in linears.fields:
                    for argument in _required(linears.fields[field_name].args):
                        if argument not in field.args:
                            found.append(f"{name}.{field_name}({argument}:) is required by Linear")
        elif isinstance(named, GraphQLInputObjectType) and isinstance(
            linears, GraphQLInputObjectType
        ):
            for input_field in _required(linears.fields):
                if input_field not in named.fields:
                    found.append(f"{name}.{input_field} is required by Linear")
    return found


def _first(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{problems[0]}{more}" if problems else ""


# --- the tests -----------------------------------------------------------------------------


def test_our_schema_is_a_faithful_subset_of_linears(
    ours: GraphQLSchema, linear: GraphQLSchema
) -> None:
    """A valid schema, every part of which Linear's declares identically."""
    assert [error.message for error in validate_schema(ours)] == []
    problems = differences(ours, linear)
    assert not problems, _first(problems)


def test_our_schema_keeps_what_linear_requires(ours: GraphQLSchema, linear: GraphQLSchema) -> None:
    """No argument or input field Linear requires is left out where ours declares its parent."""
    problems = missing_required(ours, linear)
    assert not problems, _first(problems)


def test_our_schema_is_a_small_part_of_linears(ours: GraphQLSchema, linear: GraphQLSchema) -> None:
    """A subset, not a copy: Ladder declares only what it uses."""
    assert len(ours.type_map) * 10 < len(linear.type_map)


@pytest.mark.parametrize("name", sorted(documents()))
def test_every_document_validates_against_both_schemas(
    ours: GraphQLSchema, linear: GraphQLSchema, name: str
) -> None:
    """What the sandbox accepts from the adapter, Linear accepts too."""
    ast = documents()[name].ast
    assert [error.message for error in validate(ours, ast)] == []
    assert [error.message for error in validate(linear, ast)] == []


# One edit each to our schema's text, and the mismatch the comparison must then name.
BROKEN = {
    "nullability flipped": (
        "  identifier: String!\n",
        "  identifier: String\n",
        "Issue.identifier",
    ),
    "list unwrapped": ("  nodes: [Issue!]!\n", "  nodes: [Issue]!\n", "IssueConnection.nodes"),
    "field Linear lacks": (
        "  identifier: String!\n",
        "  storyPoints: Float\n",
        "Issue.storyPoints",
    ),
    "argument retyped": ("  issue(id: String!)", "  issue(id: ID!)", "Query.issue(id:)"),
    "argument default": (
        "    first: Int\n",
        "    first: Int = 50\n",
        "(first:): default 50, Linear's is None",
    ),
    "enum value": ("  createdAt\n  updatedAt\n", "  createdAt\n  priority\n", "priority"),
    "input field retyped": ("  gte: DateTimeOrDuration\n", "  gte: DateTime\n", "Comparator.gte"),
    "interface dropped": ("type Team implements Node {", "type Team {", "Team: implements []"),
    "kind changed": ("scalar DateTime\n", "enum DateTime {\n  never\n}\n", "DateTime: kind enum"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_comparison_catches_a_mismatch(linear: GraphQLSchema, case: str) -> None:
    """The subset check has teeth: each edit above makes it fail, naming what changed."""
    old, new, named = BROKEN[case]
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    assert old in text, f"{case}: the edit no longer applies to our schema"
    broken = _rebuilt(text.replace(old, new, 1))
    problems = differences(broken, linear)
    assert problems, f"{case}: the comparison found nothing"
    assert named in problems[0], problems


def test_the_required_check_catches_a_dropped_argument(linear: GraphQLSchema) -> None:
    """Dropping a required argument is no mismatch, but the required check names it."""
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    old = "commentUpdate(id: String!, input: CommentUpdateInput!)"
    assert old in text
    broken = _rebuilt(text.replace(old, "commentUpdate(input: CommentUpdateInput!)"))
    assert differences(broken, linear) == []
    assert missing_required(broken, linear) == ["Mutation.commentUpdate(id:) is required by Linear"]


def _rebuilt(text: str) -> GraphQLSchema:
    """Our schema from edited text, built without validating it (some edits break it)."""
    return build_schema(text, assume_valid=True)
