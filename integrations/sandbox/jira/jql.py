"""The subset of JQL the sandbox Jira understands, and nothing more.

Clauses on `project` (=, !=, in, not in), the issue clause `id` / `issue` / `issuekey` / `key`
(=, !=, in, not in, and comparisons, as Jira means them: see `_Parser.issue_clause`), and
`updated` / `created` (comparisons against "yyyy-MM-dd[ HH:mm]" in the user's time zone),
combined with AND, OR, NOT and parentheses, then an optional ORDER BY over id, updated and
created. Anything else is rejected with the message Jira gives, so a client that drifts from
what it is meant to send fails in tests instead of against a real site.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol


class JqlError(ValueError):
    """A query outside the supported subset; the message is Jira's 400 text."""


class Searchable(Protocol):
    id: int
    key: str
    project: str
    updated: int
    created: int


Predicate = Callable[[Searchable], bool]
# The issue an id or key names (a key it had before a move too), as Jira resolves literals.
Lookup = Callable[[str], Searchable | None]
ISSUE_FIELDS = frozenset({"id", "issue", "issuekey", "key"})
SORTABLE = {"id": "id", "key": "id", "issuekey": "id", "updated": "updated", "created": "created"}
_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|>=|<=|=|>|<|\(|\)|,)"""
    r"""|(?P<word>[^\s"'=!<>(),]+))"""
)
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")
_ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*-[0-9]+")


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: what to keep, how to order it, and the creation times it implies."""

    where: Predicate | None
    order: tuple[tuple[str, bool], ...]  # (attribute, descending)
    # Inclusive bounds on `created` (epoch ms) from top-level AND clauses, for index narrowing.
    created_low: int | None
    created_high: int | None

    @property
    def bounded(self) -> bool:
        """Whether Cloud's /search/jql takes the query: it refuses one without any restriction
        (an empty query, or ORDER BY alone), whatever the restriction is."""
        return self.where is not None

    def sort_key(self, issue: Searchable) -> tuple[int, ...]:
        """The issue's position under ORDER BY (descending fields negated); id breaks ties."""
        key = tuple(-getattr(issue, a) if desc else getattr(issue, a) for a, desc in self.order)
        return (*key, issue.id)


def parse(jql: str, zone: tzinfo, lookup: Lookup) -> Query:
    """Parse `jql`; dates without an offset are read in `zone`, as Jira reads them, and the
    issues that ids and keys name are found with `lookup` (one naming none is an error)."""
    return _Parser(_tokens(jql), zone, lookup).query()


def _tokens(jql: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    jql = jql.strip()
    while position < len(jql):
        match = _TOKEN.match(jql, position)
        if not match or match.end() == position:
            raise JqlError(f"Error in the JQL Query: unexpected character at position {position}.")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], zone: tzinfo, lookup: Lookup) -> None:
        self.tokens = tokens
        self.position = 0
        self.zone = zone
        self.lookup = lookup
        self.low: int | None = None
        self.high: int | None = None

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].lower() == words[0]:
            following = self.tokens[self.position + 1 : self.position + len(words)]
            if [t[1].lower() for t in following] == list(words[1:]):
                self.position += len(words)
                return True
        return False

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise JqlError("Error in the JQL Query: the query ended unexpectedly.")
        self.position += 1
        return token

    def expect(self, symbol: str) -> None:
        kind, value = self.take()
        if (kind, value) != ("op", symbol):
            raise JqlError(f"Error in the JQL Query: expecting '{symbol}' but got '{value}'.")

    def query(self) -> Query:
        where = None
        if self.peek() and not self._at_order_by():
            where = self.disjunction(top=True)
        order: list[tuple[str, bool]] = []
        if self.keyword("order", "by"):
            while True:
                _, field = self.take()
                if field.lower() not in SORTABLE:
                    raise JqlError(f"Not able to sort using field '{field}'.")
                descending = self.keyword("desc")
                if not descending:
                    self.keyword("asc")
                order.append((SORTABLE[field.lower()], descending))
                if self.peek() != ("op", ","):
                    break
                self.take()
        leftover = self.peek()
        if leftover is not None:
            raise JqlError(f"Error in the JQL Query: unexpected '{leftover[1]}'.")
        return Query(where, tuple(order), self.low, self.high)

    def _at_order_by(self) -> bool:
        token = self.peek()
        return bool(token and token[1].lower() == "order")

    def disjunction(self, top: bool = False) -> Predicate:
        parts = [self.conjunction(top)]
        while self.keyword("or"):
            parts.append(self.conjunction(False))
        if len(parts) == 1:
            return parts[0]
        if top:  # creation bounds only hold when every result must satisfy them
            self.low = self.high = None
        return lambda issue: any(part(issue) for part in parts)

    def conjunction(self, top: bool) -> Predicate:
        parts = [self.unary(top)]
        while self.keyword("and"):
            parts.append(self.unary(top))
        return parts[0] if len(parts) == 1 else lambda issue: all(p(issue) for p in parts)

    def unary(self, top: bool) -> Predicate:
        if self.keyword("not"):
            inner = self.unary(False)
            return lambda issue: not inner(issue)
        if self.peek() == ("op", "("):
            self.take()
            inner = self.disjunction(top)
            self.expect(")")
            return inner
        return self.clause(top)

    def clause(self, top: bool) -> Predicate:
        _, field = self.take()
        name = field.lower()
        if self.keyword("not", "in"):
            values = self.values()
            inner = self.membership(field, values)
            return lambda issue: not inner(issue)
        if self.keyword("in"):
            return self.membership(field, self.values())
        kind, operator = self.take()
        if kind != "op" or operator not in {"=", "!=", ">", ">=", "<", "<="}:
            raise JqlError(f"Error in the JQL Query: expecting an operator after '{field}'.")
        _, value = self.take()
        if name == "project":
            if operator not in {"=", "!="}:
                raise JqlError(
                    f"The operator '{operator}' is not supported by the 'project' field."
                )
            wanted = value.upper()
            return (
                (lambda i: i.project == wanted)
                if operator == "="
                else (lambda i: i.project != wanted)
            )
        if name in ISSUE_FIELDS:
            return self.issue_clause(field, operator, value)
        if name in {"updated", "created"}:
            moment = self.timestamp(value)
            if top and name == "created":
                self.narrow(operator, moment)
            return _compare(name, operator, moment)
        raise JqlError(f"Field '{field}' does not exist or you do not have permission to view it.")

    def issue_clause(self, field: str, operator: str, value: str) -> Predicate:
        """`id` / `key` / … as Jira's issue key clause reads them: `=` and `!=` are that issue;
        `<`, `<=`, `>`, `>=` keep the issues of that issue's project whose key number compares
        so with its key number. So `id >= 10500`, 10500 being PAY-7, is PAY-7, PAY-8, … and no
        issue of another project: not an id range."""
        named = self.resolve(field, value)
        if operator in {"=", "!="}:
            wanted = named.id
            return (lambda i: i.id == wanted) if operator == "=" else (lambda i: i.id != wanted)
        project, number = named.project, _key_number(named.key)
        test = _compare_to(operator, number)
        return lambda issue: issue.project == project and test(_key_number(issue.key))

    def resolve(self, field: str, value: str) -> Searchable:
        """The issue an id or key names; Jira's validator refuses one that names none."""
        if not (value.isdigit() or _ISSUE_KEY.fullmatch(value)):
            raise JqlError(f"The issue key '{value}' for field '{field}' is invalid.")
        issue = self.lookup(value)
        if issue is None:
            raise JqlError(f"An issue with key '{value}' does not exist for field '{field}'.")
        return issue

    def membership(self, field: str, values: list[str]) -> Predicate:
        name = field.lower()
        if name == "project":
            projects = {v.upper() for v in values}
            return lambda issue: issue.project in projects
        if name in ISSUE_FIELDS:
            ids = {self.resolve(field, v).id for v in values}
            return lambda issue: issue.id in ids
        raise JqlError(f"The operator 'in' is not supported by the '{name}' field.")

    def values(self) -> list[str]:
        self.expect("(")
        values = []
        while True:
            kind, value = self.take()
            if kind == "op":
                raise JqlError(f"Error in the JQL Query: unexpected '{value}' in a list.")
            values.append(value)
            kind, value = self.take()
            if value == ")":
                return values
            if value != ",":
                raise JqlError("Error in the JQL Query: expecting ',' or ')'.")

    def narrow(self, operator: str, moment: int) -> None:
        low = {">=": moment, ">": moment + 1, "=": moment}.get(operator)
        high = {"<": moment - 1, "<=": moment, "=": moment}.get(operator)
        if low is not None:
            self.low = low if self.low is None else max(self.low, low)
        if high is not None:
            self.high = high if self.high is None else min(self.high, high)

    def timestamp(self, text: str) -> int:
        for form in _DATE_FORMATS:
            try:
                moment = datetime.strptime(text, form).replace(tzinfo=self.zone)
            except ValueError:
                continue
            return int(moment.timestamp() * 1000)
        raise JqlError(
            f"Date value '{text}' for field 'updated' is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd'."
        )


def _key_number(key: str) -> int:
    """The number in an issue key: 7 for PAY-7."""
    return int(key.rpartition("-")[2])


def _compare_to(operator: str, value: int) -> Callable[[int], bool]:
    tests: dict[str, Callable[[int], bool]] = {
        "=": lambda v: v == value,
        "!=": lambda v: v != value,
        ">": lambda v: v > value,
        ">=": lambda v: v >= value,
        "<": lambda v: v < value,
        "<=": lambda v: v <= value,
    }
    return tests[operator]


def _compare(attribute: str, operator: str, value: int) -> Predicate:
    test = _compare_to(operator, value)
    return lambda issue: test(getattr(issue, attribute))
