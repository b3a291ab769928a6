"""Orphan comments: one helpful comment on each open ticket that still serves no bet or KR.

The policy is a pure function (`choose`) over facts loaded in bulk; the job (`run`) loads
them, claims a `comments_sent` row per chosen item *before* calling the tracker, posts outside
any transaction and records the outcome. The row's unique (item, kind) key is what makes a
comment happen at most once, whatever the number of replicas or concurrent runs. A failed
post leaves the row `failed` and is retried with backoff, so a tracker outage delays the
comment without ever doubling it. A claim is a lease: a process that dies between claiming
and recording leaves a `pending` row that a later run takes over once the lease is out. A
failed or abandoned post may have reached the tracker all the same (a timeout after Jira
stored it, a kill just after), so before posting again the job asks the tracker for a
comment carrying the item's trace link and records that one if it is there.

Never commented: done, canceled or deleted items; items that appeared before comments were
switched on (the moment is stored the first time the job runs in that mode); items in projects
not opted in; an item whose orphan ancestor was told (the comment on the epic covers its
stories). At most `hourly_cap` comments are claimed per hour.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from integrations.base import TrackerAdapter
from sync.reports.orphans import listed
from sync.store.db import transaction
from sync.store.items import dialect_insert
from sync.store.models import (
    AppState,
    Bet,
    CommentSent,
    ItemMatch,
    ItemState,
    KeyResult,
    TrackerItem,
    utcnow,
)

log = logging.getLogger("ladder.comments")

SENT: Table = CommentSent.__table__  # type: ignore[assignment]
ORPHAN = "orphan"
DRY_RUN = "orphan-dry-run"
RESOLVED_STATES = ("matched", "non_okr")
ACTIVE_BET_STATUSES = ("now", "next")
MAX_BETS_NAMED = 8
MAX_DEPTH = 64  # bounds walks up the parent chain; only a cycle of parents reaches it

Mode = Literal["off", "dry-run", "on"]


@dataclass(frozen=True)
class CommentPolicy:
    """When and how Ladder comments on orphans (from the settings).

    `projects` are the Jira project keys and Linear team keys opted in (empty: all).
    `non_okr_label` is named in the comment as the way to mark deliberate non-OKR work.
    """

    mode: Mode = "off"
    projects: tuple[str, ...] = ()
    grace_seconds: float = 900.0
    hourly_cap: int = 50
    update_on_link: bool = True
    base_url: str = "http://127.0.0.1:8000"
    bet_label_prefix: str = "bet:"
    non_okr_label: str | None = "ktlo"
    retry_seconds: float = 60.0
    max_attempts: int = 10
    # Outlasts the slowest tracker call (with its own retries): a claim older than this
    # belongs to a process that died.
    lease_seconds: float = 600.0

    @property
    def kind(self) -> str:
        """Dry runs keep their own rows, so they never stand in for a real comment."""
        return DRY_RUN if self.mode == "dry-run" else ORPHAN

    def opted_in(self, project: str | None) -> bool:
        if not self.projects:
            return True
        return project is not None and project.upper() in {p.upper() for p in self.projects}

    def delay(self, attempts: int) -> timedelta:
        """Backoff before the next try after `attempts` failed ones (capped at a day)."""
        return timedelta(seconds=min(self.retry_seconds * 2 ** max(attempts - 1, 0), 86_400))

    def lease_end(self, now: datetime) -> datetime:
        """When a claim taken `now` and still unsettled is taken to be abandoned."""
        return now + timedelta(seconds=self.lease_seconds)


@dataclass(frozen=True)
class Candidate:
    """An open orphan item that has not been told, with what the policy looks at."""

    item_id: int
    source: str
    external_id: str
    key: str
    project: str | None
    parent_id: int | None
    appeared_at: datetime


@dataclass(frozen=True)
class BetChoice:
    """A bet named in a comment: its key (for the label) and its title."""

    key: str
    title: str


@dataclass
class CommentReport:
    """What one run of the job did."""

    posted: int = 0
    found: int = 0  # posted by an earlier attempt after all: recorded, not posted again
    dry_run: int = 0
    updated: int = 0
    failed: int = 0
    skipped_for_cap: int = 0
    errors: list[str] = field(default_factory=list)


# --- The policy (pure) ---------------------------------------------------------------------


def choose(
    candidates: Sequence[Candidate],
    *,
    orphan_parents: Mapping[int, int | None],
    told: Iterable[int],
    policy: CommentPolicy,
    now: datetime,
    room: int,
) -> tuple[list[Candidate], int]:
    """The candidates to comment on now, topmost first, and how many the cap held back.

    `orphan_parents` maps every orphan ancestor of a candidate to its parent; `told` holds
    the items that already have a comment. A candidate is chosen once its grace period is
    over, when its project is opted in and when no orphan ancestor was told or is chosen in
    the same run.
    """
    grace = timedelta(seconds=policy.grace_seconds)
    parents = {**orphan_parents, **{c.item_id: c.parent_id for c in candidates}}
    covered = set(told)

    def depth(item_id: int) -> int:
        steps, current = 0, parents.get(item_id)
        while current is not None and current in parents and steps < MAX_DEPTH:
            steps, current = steps + 1, parents.get(current)
        return steps

    def ancestor_covered(item_id: int) -> bool:
        current, steps = parents.get(item_id), 0
        while current is not None and steps < MAX_DEPTH:
            if current in covered:
                return True
            current, steps = parents.get(current), steps + 1
        return False

    chosen: list[Candidate] = []
    held_back = 0
    for candidate in sorted(candidates, key=lambda c: (depth(c.item_id), c.appeared_at)):
        if (
            candidate.item_id in covered
            or candidate.appeared_at + grace > now
            or not policy.opted_in(candidate.project)
            or ancestor_covered(candidate.item_id)
        ):
            continue
        if len(chosen) >= room:
            held_back += 1
            continue
        chosen.append(candidate)
        covered.add(candidate.item_id)
    return chosen, held_back


def trace_url(base_url: str, source: str, key: str) -> str:
    """The item's ladder up to the north star, in Ladder."""
    return f"{base_url.rstrip('/')}/api/items/{source}/{quote(key, safe='')}/trace"


def orphan_text(candidate: Candidate, bets: Sequence[BetChoice], policy: CommentPolicy) -> str:
    """The comment: what is missing, how to link the ticket, and where to see its trace.

    Plain lines that read well both as Jira text and as Linear markdown.
    """
    prefix = policy.bet_label_prefix
    lines = [
        f"Ladder: {candidate.key} serves no bet or key result yet, so its work counts "
        "towards no objective."
    ]
    if bets:
        lines.append("Active bets of this team, and the label that links a ticket to each:")
        lines.extend(f"- {bet.title}: add the label {prefix}{bet.key}" for bet in bets)
    else:
        lines.append(f"No bet is active for this team yet; the label {prefix}<bet key> links one.")
    if policy.non_okr_label:
        lines.append(f"If this is deliberate non-OKR work, add the label {policy.non_okr_label}.")
    lines.append(f"Trace: {trace_url(policy.base_url, candidate.source, candidate.key)}")
    return "\n".join(lines)


def linked_text(key: str, targets: Sequence[str], non_okr: bool) -> str:
    """The comment's new text once the item serves a bet or KR (or is marked non-OKR)."""
    if non_okr or not targets:
        return f"Ladder: {key} is now marked as deliberate non-OKR work. Thank you!"
    return f"Ladder: {key} now serves {', '.join(targets)}. Thank you for linking it!"


# --- The job -------------------------------------------------------------------------------


def run(
    sessions: sessionmaker[Session],
    adapters: Mapping[str, TrackerAdapter],
    policy: CommentPolicy,
    *,
    now: datetime | None = None,
) -> CommentReport:
    """One round: finish unfinished posts, comment on newly chosen orphans, update linked ones."""
    if policy.mode == "off":
        return CommentReport()
    job = _Round(sessions, adapters, policy, now or utcnow())
    with transaction(sessions) as session:
        enabled_at = enabled_since(session, policy.mode, job.now)
    if policy.mode == "on":
        job.finish_unfinished()
    job.comment_new(enabled_at)
    if policy.mode == "on" and policy.update_on_link:
        job.update_linked()
    return job.report


def enabled_since(session: Session, mode: str, now: datetime) -> datetime:
    """When comments were first switched to `mode`; recorded now if this is the first time."""
    key = f"orphan_comments.{mode}.enabled_at"
    session.execute(
        dialect_insert(session, AppState.__table__)  # type: ignore[arg-type]
        .values(key=key, value=now.isoformat(), updated_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    stored = session.scalar(select(AppState.value).where(AppState.key == key))
    return datetime.fromisoformat(stored) if stored else now


@dataclass
class _Round:
    """One run of the job: each step reads in one transaction, then claims, calls the
    tracker outside any transaction, and records the outcome in a short one."""

    sessions: sessionmaker[Session]
    adapters: Mapping[str, TrackerAdapter]
    policy: CommentPolicy
    now: datetime
    report: CommentReport = field(default_factory=CommentReport)

    def comment_new(self, enabled_at: datetime) -> None:
        kind = self.policy.kind
        with transaction(self.sessions) as session:
            candidates = _candidates(session, kind, enabled_at)
            if not candidates:
                return
            parents, told = _orphan_ancestry(session, candidates, kind)
            room = max(self.policy.hourly_cap - _claimed_since(session, kind, self.now), 0)
            chosen, self.report.skipped_for_cap = choose(
                candidates,
                orphan_parents=parents,
                told=told,
                policy=self.policy,
                now=self.now,
                room=room,
            )
            bets = {
                project: _team_bets(session, project) for project in {c.project for c in chosen}
            }
        for candidate in chosen:
            text = orphan_text(candidate, bets[candidate.project], self.policy)
            if self.policy.mode == "dry-run":
                if self._claim(candidate.item_id, text, "dry-run"):
                    log.info("dry run: would comment", extra={"item": candidate.key, "text": text})
                    self.report.dry_run += 1
            elif self._claim(candidate.item_id, text, "pending"):
                self._post(candidate.item_id, candidate.source, candidate.external_id, text, 1)

    def finish_unfinished(self) -> None:
        """Settle the comments an earlier attempt left unfinished: failed posts once their
        backoff is over, and claims still `pending` once their lease is out."""
        with transaction(self.sessions) as session:
            due = session.execute(
                select(
                    SENT.c.id,
                    SENT.c.status,
                    SENT.c.attempts,
                    SENT.c.item_id,
                    SENT.c.text,
                    TrackerItem.source,
                    TrackerItem.external_id,
                    TrackerItem.key,
                    _still_orphan().label("still_orphan"),
                )
                .join(TrackerItem, TrackerItem.id == SENT.c.item_id)
                .outerjoin(ItemState, ItemState.item_id == SENT.c.item_id)
                .where(
                    SENT.c.kind == ORPHAN,
                    SENT.c.status.in_(("failed", "pending")),
                    SENT.c.next_attempt_at <= self.now,
                    SENT.c.attempts < self.policy.max_attempts,
                )
            ).all()
        for row in due:
            if self._take(row, "pending"):
                self._finish(row)

    def _finish(self, row: Row[Any]) -> None:
        """Record the comment if an earlier attempt posted it after all; otherwise post it,
        or drop the claim when the item no longer needs a comment."""
        attempts = row.attempts + 1
        marker = trace_url(self.policy.base_url, row.source, row.key)
        try:
            found = self._adapter(row.source).find_comment(row.external_id, marker)
        except Exception as exc:  # any failure is recorded and retried later
            self._record(SENT.c.id == row.id, status="failed", **self._failure(exc, attempts))
            return
        if found is not None:
            self._record(SENT.c.id == row.id, **self._posted(found))
            self.report.found += 1
        elif row.still_orphan:
            self._post(row.item_id, row.source, row.external_id, row.text, attempts)
        else:
            with transaction(self.sessions) as session:
                session.execute(delete(SENT).where(SENT.c.id == row.id))

    def update_linked(self) -> None:
        """Rewrite the comment of each told item that now serves a bet or KR (or non-OKR)."""
        with transaction(self.sessions) as session:
            rows = session.execute(
                select(
                    SENT.c.id,
                    SENT.c.status,
                    SENT.c.item_id,
                    SENT.c.attempts,
                    SENT.c.tracker_comment_id,
                    TrackerItem.source,
                    TrackerItem.external_id,
                    TrackerItem.key,
                    ItemState.state,
                )
                .join(TrackerItem, TrackerItem.id == SENT.c.item_id)
                .join(ItemState, ItemState.item_id == SENT.c.item_id)
                .where(
                    SENT.c.kind == ORPHAN,
                    SENT.c.tracker_comment_id.is_not(None),
                    ItemState.state.in_(RESOLVED_STATES),
                    or_(
                        and_(SENT.c.status == "posted", SENT.c.next_attempt_at.is_(None)),
                        # after a failed update, or an abandoned one (an edit is idempotent)
                        and_(
                            SENT.c.status.in_(("posted", "updating")),
                            SENT.c.next_attempt_at <= self.now,
                        ),
                    ),
                )
            ).all()
            targets = _target_names(session, [row.item_id for row in rows])
        for row in rows:
            if not self._take(row, "updating"):
                continue
            text = linked_text(row.key, targets.get(row.item_id, []), row.state == "non_okr")
            try:
                self._adapter(row.source).update_comment(
                    row.external_id, row.tracker_comment_id, text
                )
            except Exception as exc:  # any failure is recorded and retried later
                failure = self._failure(exc, row.attempts + 1)
                self._record(SENT.c.id == row.id, status="posted", **failure)
            else:
                done = {"text": text, "updated_at": utcnow(), "next_attempt_at": None}
                self._record(SENT.c.id == row.id, status="updated", last_error=None, **done)
                self.report.updated += 1

    def _claim(self, item_id: int, text: str, status: str) -> bool:
        """Take the item's one comment of this kind; False when another run or replica has it."""
        with transaction(self.sessions) as session:
            claimed = session.execute(
                dialect_insert(session, SENT)
                .values(
                    item_id=item_id,
                    kind=self.policy.kind,
                    status=status,
                    text=text,
                    attempts=1,
                    created_at=self.now,
                    next_attempt_at=self.policy.lease_end(self.now),
                )
                .on_conflict_do_nothing(index_elements=[SENT.c.item_id, SENT.c.kind])
                .returning(SENT.c.id)
            ).scalar()
        return claimed is not None

    def _post(self, item_id: int, source: str, external_id: str, text: str, attempts: int) -> None:
        """Post a claimed comment and record how it went."""
        row = (SENT.c.item_id == item_id, SENT.c.kind == ORPHAN)
        try:
            comment_id = self._adapter(source).post_comment(external_id, text)
        except Exception as exc:  # any failure is recorded and retried later
            self._record(*row, status="failed", **self._failure(exc, attempts))
            return
        self._record(*row, **self._posted(comment_id))
        self.report.posted += 1

    def _take(self, row: Row[Any], status: str) -> bool:
        """Take over a row as read, leased to this run; False when another run was quicker
        (every take counts an attempt, so the attempts tell who was)."""
        with transaction(self.sessions) as session:
            return bool(
                session.execute(
                    update(SENT)
                    .where(
                        SENT.c.id == row.id,
                        SENT.c.status == row.status,
                        SENT.c.attempts == row.attempts,
                    )
                    .values(
                        status=status,
                        attempts=row.attempts + 1,
                        next_attempt_at=self.policy.lease_end(self.now),
                    )
                ).rowcount
            )

    @staticmethod
    def _posted(comment_id: str) -> dict[str, object]:
        return {
            "status": "posted",
            "tracker_comment_id": comment_id,
            "posted_at": utcnow(),
            "next_attempt_at": None,
            "last_error": None,
        }

    def _adapter(self, source: str) -> TrackerAdapter:
        adapter = self.adapters.get(source)
        if adapter is None:
            raise RuntimeError(f"{source} is not configured")
        return adapter

    def _failure(self, exc: Exception, attempts: int) -> dict[str, object]:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning("orphan comment failed, will retry", extra={"error": error})
        self.report.failed += 1
        self.report.errors.append(error)
        return {"last_error": error, "next_attempt_at": self.now + self.policy.delay(attempts)}

    def _record(self, *where: ColumnElement[bool], **values: object) -> None:
        with transaction(self.sessions) as session:
            session.execute(update(SENT).where(*where).values(values))


# --- Loading the facts ---------------------------------------------------------------------


def _still_orphan() -> ColumnElement[bool]:
    """An open orphan, as the orphan list has it (deleted and canceled items never are)."""
    return listed(ItemState.__table__, None)


def _candidates(session: Session, kind: str, enabled_at: datetime) -> list[Candidate]:
    """Open orphans without a comment of `kind` that appeared since comments went on."""
    appeared = func.coalesce(TrackerItem.created_at, TrackerItem.first_seen_at)
    told = exists().where(SENT.c.item_id == ItemState.item_id, SENT.c.kind == kind)
    rows = session.execute(
        select(
            ItemState.item_id,
            TrackerItem.source,
            TrackerItem.external_id,
            TrackerItem.key,
            TrackerItem.project,
            ItemState.parent_id,
            appeared.label("appeared_at"),
        )
        .join(TrackerItem, TrackerItem.id == ItemState.item_id)
        .where(_still_orphan(), appeared >= enabled_at, ~told)
        .order_by(ItemState.item_id)
    ).all()
    return [Candidate(*row) for row in rows]


def _orphan_ancestry(
    session: Session, candidates: Sequence[Candidate], kind: str
) -> tuple[dict[int, int | None], set[int]]:
    """The orphan ancestors of the candidates (each with its parent), and which were told.

    Walks up one level per query: trees are shallow, and each level is one bulk query.
    """
    parents: dict[int, int | None] = {}
    known = {candidate.item_id for candidate in candidates}
    frontier = {c.parent_id for c in candidates if c.parent_id is not None} - known
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        rows = session.execute(
            select(ItemState.item_id, ItemState.parent_id).where(
                ItemState.item_id.in_(frontier), ItemState.state == "orphan"
            )
        ).all()
        parents.update({row.item_id: row.parent_id for row in rows})
        known |= frontier
        frontier = {row.parent_id for row in rows if row.parent_id is not None} - known
    told = set(
        session.scalars(
            select(SENT.c.item_id).where(SENT.c.kind == kind, SENT.c.item_id.in_(list(parents)))
        )
    )
    return parents, told


def _claimed_since(session: Session, kind: str, now: datetime) -> int:
    """Comments of `kind` claimed in the hour before `now` (what the hourly cap counts)."""
    return session.scalar(
        select(func.count())
        .select_from(SENT)
        .where(SENT.c.kind == kind, SENT.c.created_at > now - timedelta(hours=1))
    )


def _team_bets(session: Session, project: str | None) -> list[BetChoice]:
    """The active bets of the item's team, else every active bet (at most a handful).

    An item's team is its project (Jira) or team (Linear); the bets of that team are those
    whose `team` is named like it, or shared with the bets its other items already serve.
    """
    active = (
        select(Bet.key, Bet.title)
        .where(Bet.status.in_(ACTIVE_BET_STATUSES))
        .order_by(Bet.position, Bet.id)
        .limit(MAX_BETS_NAMED)
    )
    if project is not None:
        served_teams = (
            select(func.lower(Bet.team))
            .join(ItemMatch, and_(ItemMatch.target_kind == "bet", ItemMatch.target_id == Bet.id))
            .join(ItemState, ItemState.item_id == ItemMatch.item_id)
            .where(ItemState.project == project, Bet.team.is_not(None))
        )
        same_team = or_(
            func.lower(Bet.team) == project.lower(), func.lower(Bet.team).in_(served_teams)
        )
        rows = session.execute(active.where(same_team)).all()
        if rows:
            return [BetChoice(*row) for row in rows]
    return [BetChoice(*row) for row in session.execute(active).all()]


def _target_names(session: Session, item_ids: Sequence[int]) -> dict[int, list[str]]:
    """What each item now serves, as the comment names it: `bet "…"`, `key result KR-1`."""
    names: dict[int, list[str]] = {}
    if not item_ids:
        return names
    rows = session.execute(
        select(ItemMatch.item_id, ItemMatch.target_kind, Bet.title, KeyResult.key)
        .outerjoin(Bet, and_(ItemMatch.target_kind == "bet", Bet.id == ItemMatch.target_id))
        .outerjoin(
            KeyResult, and_(ItemMatch.target_kind == "kr", KeyResult.id == ItemMatch.target_id)
        )
        .where(ItemMatch.item_id.in_(list(item_ids)))
        .order_by(ItemMatch.item_id, ItemMatch.id)
    ).all()
    for row in rows:
        name = f'bet "{row.title}"' if row.target_kind == "bet" else f"key result {row.key}"
        names.setdefault(row.item_id, []).append(name)
    return names
