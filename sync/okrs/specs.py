"""What an OKR object must look like, whether it arrives as JSON or in an OKRs-as-code file.

The same models validate API bodies and YAML entries, so both give the same answers for the
same mistake. Errors are reported as `{"path": ..., "message": ...}` pairs whose paths name
the place in the input, e.g. `objectives[1].key_results[0].target: not a number`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StringConstraints,
    ValidationError,
    model_validator,
)

from sync.errors import Invalid

BetStatus = Literal["now", "next", "later", "done", "dropped"]
ObjectiveStatus = Literal["active", "achieved", "missed", "dropped"]
Direction = Literal["increase", "decrease"]

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_JIRA_ISSUE = re.compile(r"jira:(?P<value>[A-Z][A-Z0-9_]*-[1-9][0-9]*)")
_LINEAR_PROJECT = re.compile(r"linear:project:(?P<value>[A-Za-z0-9][A-Za-z0-9._-]*)")
_LINEAR_INITIATIVE = re.compile(r"linear:initiative:(?P<value>\S(?:.*\S)?)")


def _valid_key(value: str) -> str:
    # Keys appear in URLs and in tracker labels (`bet:<key>`), where spaces and slashes break.
    if not _KEY.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid key: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Key = Annotated[str, StringConstraints(max_length=100), AfterValidator(_valid_key)]
Title = Annotated[str, StringConstraints(max_length=500), AfterValidator(_not_blank)]
Name = Annotated[str, StringConstraints(max_length=200), AfterValidator(_not_blank)]
# Strict, so that a YAML `yes` or a quoted "70" is refused instead of read as a number.
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Weight = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]
Confidence = Annotated[StrictFloat, Field(ge=0, le=1)]


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed bet ref: `kind` is `jira_issue`, `linear_project`, `linear_initiative` or `url`."""

    kind: Literal["jira_issue", "linear_project", "linear_initiative", "url"]
    value: str


def parse_ref(ref: str) -> Ref:
    """Parse a bet ref such as `jira:PAY-100`; raise ValueError saying which forms are valid."""
    for kind, pattern in (
        ("jira_issue", _JIRA_ISSUE),
        ("linear_project", _LINEAR_PROJECT),
        ("linear_initiative", _LINEAR_INITIATIVE),
    ):
        if match := pattern.fullmatch(ref):
            return Ref(kind, match["value"])  # type: ignore[arg-type]
    if ref.startswith("jira:"):
        raise ValueError(f"{ref!r} is not a Jira issue key (like jira:PAY-100)")
    if ref.startswith("linear:"):
        raise ValueError(
            f"{ref!r}: use linear:project:<id or slug> or linear:initiative:<id or name>"
        )
    parts = urlsplit(ref)
    if parts.scheme in {"http", "https"} and parts.netloc and not re.search(r"\s", ref):
        return Ref("url", ref)
    raise ValueError(
        f"{ref!r} is not a ref: use jira:<issue key>, linear:project:<id or slug>, "
        "linear:initiative:<id or name> or an http(s) URL"
    )


def _valid_ref(value: str) -> str:
    parse_ref(value)
    return value


RefText = Annotated[str, StringConstraints(max_length=1000), AfterValidator(_valid_ref)]


class Spec(BaseModel):
    """Base of the OKR input models: unknown fields are refused, so typos do not vanish."""

    model_config = ConfigDict(extra="forbid")


class NorthStarSpec(Spec):
    """The one metric the whole organisation moves."""

    name: Name
    metric: Name | None = None


class StrategySpec(Spec):
    """A strategy that objectives serve."""

    key: Key
    title: Title


class CycleSpec(Spec):
    """A planning period such as `2026-Q4`; both dates are inclusive."""

    key: Key
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> CycleSpec:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class ObjectiveSpec(Spec):
    """An objective: what a team wants to achieve in a cycle, measured by its key results."""

    key: Key
    title: Title
    cycle: Key = Field(description="Key of the cycle the objective belongs to.")
    strategy: Key | None = Field(default=None, description="Key of the strategy it serves.")
    owner: Name | None = None
    team: Name | None = None
    status: ObjectiveStatus = "active"


class KeyResultFields(Spec):
    """A key result as written under its objective in an OKRs-as-code file."""

    key: Key
    title: Title
    metric: Name | None = None
    unit: Annotated[str, StringConstraints(max_length=50)] | None = None
    baseline: Number | None = None
    target: Number | None = None
    current: Number | None = None
    direction: Direction = Field(
        default="increase", description="Whether progress means the metric going up or down."
    )
    owner: Name | None = None
    due: date | None = None
    confidence: Confidence | None = Field(
        default=None, description="How likely the owner thinks the target is, from 0 to 1."
    )

    @model_validator(mode="after")
    def _target_agrees_with_direction(self) -> KeyResultFields:
        if self.baseline is None or self.target is None or self.baseline == self.target:
            return self
        if (self.target > self.baseline) != (self.direction == "increase"):
            side = "above" if self.target > self.baseline else "below"
            raise ValueError(
                f"target {self.target:g} is {side} baseline {self.baseline:g}, "
                f"but direction is {self.direction}"
            )
        return self


class KeyResultSpec(KeyResultFields):
    """A key result: a measurable outcome of one objective."""

    objective: Key = Field(description="Key of the objective the key result measures.")


def _list_means_equal_weights(value: object) -> object:
    if not isinstance(value, list):
        return value
    if not all(isinstance(key, str) for key in value):
        raise ValueError("list key result keys (strings), or map them to weights")
    _refuse_repeats(value)
    return dict.fromkeys(value)


def _weighted_alike(value: dict[str, float | None]) -> dict[str, float | None]:
    if not value:
        raise ValueError("a bet needs at least one key result")
    if len({weight is None for weight in value.values()}) > 1:
        raise ValueError("give every key result a weight, or list them without weights")
    return value


def _refuse_repeats(value: list[str]) -> list[str]:
    if repeated := sorted({item for item in value if value.count(item) > 1}):
        raise ValueError(f"listed more than once: {', '.join(repeated)}")
    return value


KeyResultWeights = Annotated[
    dict[Key, Weight | None],
    BeforeValidator(_list_means_equal_weights),
    AfterValidator(_weighted_alike),
]
RefList = Annotated[list[RefText], AfterValidator(_refuse_repeats)]


class BetSpec(Spec):
    """A bet: work placed to move one or more key results, and the tracker objects it owns."""

    key: Key = Field(description="A short slug; tickets link to the bet with label `bet:<key>`.")
    title: Title
    hypothesis: Annotated[str, StringConstraints(max_length=5000)] | None = None
    status: BetStatus = "now"
    team: Name | None = None
    key_results: KeyResultWeights = Field(
        description="KR key → weight (relative, positive); a plain list of KR keys means "
        "equal weights."
    )
    refs: RefList = Field(
        default_factory=list,
        description="Tracker objects that belong to the bet: jira:<issue key>, "
        "linear:project:<id or slug>, linear:initiative:<id or name>, or a URL.",
    )


class CheckInSpec(Spec):
    """A progress update of a key result: it sets the KR's `current` (and `confidence`)."""

    value: Number
    confidence: Confidence | None = Field(
        default=None, description="0..1; when omitted the KR keeps its confidence."
    )
    note: Annotated[str, StringConstraints(max_length=5000)] | None = None
    author: Name | None = None


_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "string_type": "not a string",
    "float_type": "not a number",
    "float_parsing": "not a number",
    "finite_number": "not a finite number",
    "date_type": "not a date (YYYY-MM-DD)",
    "date_parsing": "not a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "not a date (YYYY-MM-DD)",
    "date_from_datetime_inexact": "not a date (YYYY-MM-DD)",
    "list_type": "not a list",
    "dict_type": "not a mapping",
    "model_type": "not a mapping",
    "model_attributes_type": "not a mapping",
}


def format_path(loc: tuple[str | int, ...]) -> str:
    """`("objectives", 1, "target")` → `objectives[1].target`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def error_list(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, str]]:
    """A pydantic error report as short `{"path", "message"}` pairs a person can act on."""
    errors = []
    for error in exc.errors():
        # A YAML key with no value, or a JSON null, for a field that must have one.
        required = error["type"].endswith("_type") and error.get("input", ...) is None
        message = "required" if required else _MESSAGES.get(error["type"])
        if message is None:
            message = error["msg"].removeprefix("Value error, ")
            message = message[:1].lower() + message[1:]
        errors.append({"path": format_path(prefix + tuple(error["loc"])), "message": message})
    return errors


def describe(errors: list[dict[str, str]]) -> str:
    """The errors as one line each: `path: message`."""
    return "\n".join(
        f"{error['path']}: {error['message']}" if error["path"] else error["message"]
        for error in errors
    )


S = TypeVar("S", bound=Spec)


def validate_spec(model: type[S], data: Any) -> S:
    """Validate `data` as `model`, raising Invalid with every error and its path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = error_list(exc)
        raise Invalid(describe(errors), errors=errors) from None
