"""The OKR API: strategies, cycles, objectives, key results and bets by key, check-ins, the
north star, and the whole catalogue as a YAML file.

Readers need a viewer token, writers an editor token. The rules live in
sync.okrs.catalogue; this module only translates HTTP to calls and rows to JSON.
"""

# No `from __future__ import annotations`: the routes below are built in a loop, and FastAPI
# must see their body models as objects, not as names to look up in this module.

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field, create_model

from service.api.common import Cursor, ErrorBody, Limit, Page
from service.deps import AppSettings, DbSession, Editor, Viewer
from service.trackers import match_rules
from sync.matching.rematch import MatchRules
from sync.okrs import catalogue as okrs
from sync.okrs.document import ImportPlan, export_okrs, import_okrs
from sync.okrs.specs import (
    BetSpec,
    CheckInSpec,
    CycleSpec,
    KeyResultSpec,
    NorthStarSpec,
    ObjectiveSpec,
    Spec,
    StrategySpec,
)
from sync.store.models import Bet, CheckIn, KeyResult, NorthStar, Objective
from sync.store.pagination import paginate

router = APIRouter(prefix="/api", tags=["okrs"])


def _match_rules(settings: AppSettings) -> MatchRules:
    return match_rules(settings)


# OKR changes re-match tickets by the configured label prefixes.
Rules = Annotated[MatchRules, Depends(_match_rules)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (status.HTTP_404_NOT_FOUND, status.HTTP_409_CONFLICT)
}


# --- responses -----------------------------------------------------------------------------


class StrategyOut(StrategySpec):
    """A strategy."""


class CycleOut(CycleSpec):
    """A planning cycle; dates are inclusive."""


class ObjectiveOut(ObjectiveSpec):
    """An objective, with the keys of its key results and its progress."""

    key_results: list[str] = Field(description="Keys of its key results, in order.")
    progress: float | None = Field(
        description="Mean progress (0..1) of its key results that have one; null if none has."
    )


class KeyResultOut(KeyResultSpec):
    """A key result and its progress."""

    progress: float | None = Field(
        description="From baseline towards target, 0..1; null when it cannot be computed "
        "(a value missing, or baseline equal to target)."
    )


class BetOut(BetSpec):
    """A bet, with its key results and their weights (null weights: split equally)."""

    # Stored bets may have lost their last key result to a cascade delete: still show them.
    key_results: dict[str, float | None] = Field(description="KR key → weight.")


class NorthStarOut(NorthStarSpec):
    """The north star."""


class CheckInOut(BaseModel):
    """One check-in of a key result."""

    id: int
    key_result: str
    value: float
    confidence: float | None
    note: str | None
    author: str | None
    created_at: datetime


class ChangeOut(BaseModel):
    """One step of an import."""

    action: str = Field(description="create, update or delete.")
    kind: str = Field(description="north_star, strategy, cycle, objective, key_result or bet.")
    key: str
    fields: list[str] = Field(description="For updates: the fields that differ.")


class ImportOut(BaseModel):
    """What an import did, or on a dry run would do."""

    dry_run: bool
    changed: bool = Field(description="False when the store already equals the file.")
    counts: dict[str, int] = Field(description="Number of creates, updates and deletes.")
    changes: list[ChangeOut]


def _objective_out(row: Objective) -> ObjectiveOut:
    key_results = sorted(row.key_results, key=lambda kr: (kr.position, kr.id))
    return ObjectiveOut(
        **okrs.objective_spec(row).model_dump(),
        key_results=[kr.key for kr in key_results],
        progress=okrs.objective_progress(key_results),
    )


def _key_result_out(row: KeyResult) -> KeyResultOut:
    spec = okrs.key_result_spec(row)
    return KeyResultOut(**spec.model_dump(), progress=okrs.key_result_progress(row))


def _bet_out(row: Bet) -> BetOut:
    return BetOut.model_validate(okrs.bet_spec(row).model_dump())


def _check_in_out(row: CheckIn) -> CheckInOut:
    return CheckInOut(
        id=row.id,
        key_result=row.key_result.key,
        value=row.value,
        confidence=row.confidence,
        note=row.note,
        author=row.author,
        created_at=row.created_at,
    )


def _north_star_out(row: NorthStar) -> NorthStarOut:
    return NorthStarOut(name=row.name, metric=row.metric)


def _import_out(plan: ImportPlan) -> ImportOut:
    return ImportOut(
        dry_run=plan.dry_run,
        changed=bool(plan.changes),
        counts=plan.counts,
        changes=[
            ChangeOut(action=c.action, kind=c.kind, key=c.key, fields=list(c.fields))
            for c in plan.changes
        ],
    )


# --- CRUD by key ---------------------------------------------------------------------------


def _partial(spec: type[Spec]) -> type[Spec]:
    """The PATCH body of `spec`: the same fields and checks, each optional."""
    fields: dict[str, Any] = {}
    for name, info in spec.model_fields.items():
        annotation = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]  # type: ignore[assignment]
        fields[name] = (annotation | None, Field(default=None, description=info.description))
    return create_model(  # type: ignore[call-overload,no-any-return]
        spec.__name__.removesuffix("Spec") + "Patch",
        __base__=Spec,
        __doc__="Only the fields to change; a new `key` renames the object.",
        **fields,
    )


def _crud(
    kind: okrs.Kind,
    path: str,
    out: type[BaseModel],
    to_out: Callable[[Any], BaseModel],
    *,
    cascade: str | None = None,
) -> None:
    """Register list, create, get, replace, patch and delete routes for `kind` at `path`.

    `cascade` says what `DELETE ?cascade=true` also deletes; None: the route has no such option.
    """
    name, label, spec = kind.name, kind.label, kind.spec
    plural = path.strip("/").replace("-", "_")
    patch_model = _partial(spec)
    one = f"{path}/{{key}}"
    read: dict[str, Any] = {"dependencies": [Viewer], "responses": _ERRORS}
    write: dict[str, Any] = {"dependencies": [Editor], "responses": _ERRORS}

    @router.get(
        path,
        response_model=Page[out],
        operation_id=f"list_{plural}",
        summary=f"List {plural.replace('_', ' ')}",
        **read,
    )
    def list_objects(session: DbSession, limit: Limit = 100, cursor: Cursor = None) -> Any:
        rows, next_cursor = paginate(session, okrs.query(kind), kind.model.id, limit, cursor)
        return {"items": [to_out(row) for row in rows], "next_cursor": next_cursor}

    @router.post(
        path,
        response_model=out,
        status_code=status.HTTP_201_CREATED,
        operation_id=f"create_{name}",
        summary=f"Create a {label}",
        description="409 if the key is taken; 422 naming any unknown parent.",
        **write,
    )
    def create_object(body: Annotated[spec, Body()], session: DbSession, rules: Rules) -> Any:
        row = okrs.create(session, kind, body, rules=rules)
        return to_out(okrs.get(session, kind, row.key))

    @router.get(
        one, response_model=out, operation_id=f"get_{name}", summary=f"Get a {label}", **read
    )
    def get_object(key: str, session: DbSession) -> Any:
        return to_out(okrs.get(session, kind, key))

    @router.put(
        one,
        response_model=out,
        operation_id=f"replace_{name}",
        summary=f"Replace a {label}",
        description="Omitted optional fields are cleared. A different `key` renames it.",
        **write,
    )
    def replace_object(
        key: str, body: Annotated[spec, Body()], session: DbSession, rules: Rules
    ) -> Any:
        row = okrs.replace(session, kind, key, body, rules=rules)
        return to_out(okrs.get(session, kind, row.key))

    @router.patch(
        one,
        response_model=out,
        operation_id=f"update_{name}",
        summary=f"Change some fields of a {label}",
        description="Only the fields sent change. A new `key` renames it.",
        **write,
    )
    def patch_object(
        key: str, body: Annotated[patch_model, Body()], session: DbSession, rules: Rules
    ) -> Any:
        fields = body.model_dump(exclude_unset=True)
        row = okrs.patch(session, kind, key, fields, rules=rules)
        return to_out(okrs.get(session, kind, row.key))

    delete = {
        "status_code": status.HTTP_204_NO_CONTENT,
        "operation_id": f"delete_{name}",
        "summary": f"Delete a {label}",
        **write,
    }
    if cascade is None:

        @router.delete(one, description="409 while something still depends on it.", **delete)
        def delete_object(key: str, session: DbSession, rules: Rules) -> None:
            okrs.remove(session, kind, key, rules=rules)

    else:

        @router.delete(one, description="409 while it has dependents, unless cascade.", **delete)
        def delete_with_cascade(
            key: str,
            session: DbSession,
            rules: Rules,
            cascade_: Annotated[bool, Query(alias="cascade", description=cascade)] = False,
        ) -> None:
            okrs.remove(session, kind, key, cascade=cascade_, rules=rules)


_crud(okrs.STRATEGY, "/strategies", StrategyOut, okrs.strategy_spec)
_crud(okrs.CYCLE, "/cycles", CycleOut, okrs.cycle_spec)
_crud(
    okrs.OBJECTIVE,
    "/objectives",
    ObjectiveOut,
    _objective_out,
    cascade="Also delete its key results, their check-ins and the bets' links to them.",
)
_crud(
    okrs.KEY_RESULT,
    "/key-results",
    KeyResultOut,
    _key_result_out,
    cascade="Also delete its check-ins and the bets' links to it.",
)
_crud(okrs.BET, "/bets", BetOut, _bet_out)


# --- check-ins -----------------------------------------------------------------------------


@router.post(
    "/key-results/{key}/check-ins",
    response_model=CheckInOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Editor],
    responses=_ERRORS,
)
def create_check_in(key: str, body: CheckInSpec, session: DbSession) -> Any:
    """Check in on a key result: its `current` becomes `value` (and its confidence, if given)."""
    return _check_in_out(okrs.add_check_in(session, key, body))


@router.get(
    "/key-results/{key}/check-ins",
    response_model=Page[CheckInOut],
    dependencies=[Viewer],
    responses=_ERRORS,
)
def list_check_ins(key: str, session: DbSession, limit: Limit = 100, cursor: Cursor = None) -> Any:
    """The check-ins of a key result, oldest first."""
    rows, next_cursor = paginate(
        session, okrs.check_ins_query(session, key), CheckIn.id, limit, cursor
    )
    return {"items": [_check_in_out(row) for row in rows], "next_cursor": next_cursor}


# --- north star ----------------------------------------------------------------------------


@router.get("/north-star", response_model=NorthStarOut, dependencies=[Viewer], responses=_ERRORS)
def get_north_star(session: DbSession) -> Any:
    """The north star (404 while none is set)."""
    return _north_star_out(okrs.get_north_star(session))


@router.put("/north-star", response_model=NorthStarOut, dependencies=[Editor])
def set_north_star(body: NorthStarSpec, session: DbSession) -> Any:
    """Set or replace the north star."""
    return _north_star_out(okrs.set_north_star(session, body))


@router.delete(
    "/north-star", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Editor], responses=_ERRORS
)
def delete_north_star(session: DbSession) -> None:
    """Remove the north star."""
    okrs.delete_north_star(session)


# --- OKRs as code --------------------------------------------------------------------------

YAML_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
)


async def _yaml_body(request: Request) -> bytes:
    """The raw request body, provided it is sent as YAML or plain text."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in YAML_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send the OKR file with content type application/yaml or text/plain",
        )
    return await request.body()


@router.post(
    "/okrs/import",
    response_model=ImportOut,
    dependencies=[Editor],
    responses={422: {"model": ErrorBody, "description": "The file is invalid; nothing written."}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The OKR file.",
            "content": {media: {"schema": {"type": "string"}} for media in sorted(YAML_TYPES)},
        }
    },
)
def import_file(
    session: DbSession,
    body: Annotated[bytes, Depends(_yaml_body)],
    rules: Rules,
    dry_run: Annotated[bool, Query(description="Only say what would change.")] = False,
) -> Any:
    """Make the store equal to an OKR file: what it lacks is deleted. Answers the plan.

    Send the file as the body with content type application/yaml (or text/plain). An invalid
    file is refused as a whole with 422 and every error with its path; nothing is written.
    """
    return _import_out(import_okrs(session, body, dry_run=dry_run, rules=rules))


@router.get(
    "/okrs/export",
    response_class=Response,
    dependencies=[Viewer],
    responses={200: {"content": {"application/yaml": {}}, "description": "The OKR file."}},
)
def export_file(session: DbSession) -> Response:
    """The whole catalogue as an OKR file, in the shape the import reads."""
    return Response(export_okrs(session), media_type="application/yaml")
