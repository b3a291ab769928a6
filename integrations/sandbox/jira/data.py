"""The sandbox Jira's issues: generated deterministically, changed by tests, searched fast.

Issues are small slotted records, not JSON: 100,000 of them fit in a few tens of megabytes
and only the page being answered is rendered. Each distinct query is evaluated once per
change of the data (its ordered result is cached), so paging through it costs a bisection.
"""

from __future__ import annotations

import random
import threading
import time
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from integrations.sandbox.jira.jql import Query

Flavour = Literal["cloud", "datacenter"]
Kind = Literal["epic", "story", "task", "bug", "subtask"]

# (id, name, category key) — one status per category, two for work in progress.
STATUSES: tuple[tuple[str, str, str], ...] = (
    ("10000", "To Do", "new"),
    ("3", "In Progress", "indeterminate"),
    ("10001", "In Review", "indeterminate"),
    ("10002", "Done", "done"),
)
DONE = 3
RESOLUTIONS = {"Done": "10000", "Won't Do": "10001", "Duplicate": "10002"}
CANCELED = frozenset({"Won't Do", "Duplicate"})
USERS: tuple[str, ...] = (
    "Dana Levi",
    "Ravi Kumar",
    "Ana Souza",
    "Tom Becker",
    "Mei Chen",
    "Omar Haddad",
    "Lena Novak",
    "Sam Okafor",
)
_VERBS = ("Add", "Fix", "Refactor", "Speed up", "Document", "Test", "Redesign", "Remove")
_NOUNS = ("checkout", "login", "search", "invoices", "onboarding", "exports", "alerts", "billing")
_AREAS = ("mobile", "web", "API", "admin console", "reports", "emails")
_PLAIN_LABELS = ("frontend", "backend", "tech-debt", "customer")
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_SPAN = timedelta(days=330)  # issues are created over most of 2025 by default
_DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class SiteFields:
    """The custom field ids of one flavour of site."""

    story_points: str  # "Story Points", company-managed projects
    story_point_estimate: str | None  # "Story point estimate", team-managed projects (Cloud)
    epic_link: str
    sprint: str
    rank: str


FIELDS: dict[Flavour, SiteFields] = {
    "cloud": SiteFields(
        "customfield_10024",
        "customfield_10016",
        "customfield_10014",
        "customfield_10020",
        "customfield_10019",
    ),
    "datacenter": SiteFields(
        "customfield_10106", None, "customfield_10101", "customfield_10104", "customfield_10105"
    ),
}


@dataclass(slots=True)
class Project:
    id: int
    key: str
    name: str
    team_managed: bool


@dataclass(slots=True)
class Link:
    id: int
    type: str  # "Blocks" or "Relates"
    other: int
    outward: bool


@dataclass(slots=True)
class SandboxIssue:
    """One issue as the sandbox models it; the JSON shapes are rendered from this."""

    id: int
    key: str
    project: str
    kind: Kind
    summary: str
    status: int  # index into STATUSES
    resolution: str | None
    labels: tuple[str, ...]
    parent_id: int | None
    points: float | None
    time_spent: int | None
    assignee: int | None  # index into USERS
    created: int  # epoch milliseconds
    updated: int
    resolved: int | None
    links: list[Link] = field(default_factory=list)

    @property
    def category(self) -> str:
        """todo / in_progress / done / canceled, from the sandbox's own model."""
        key = STATUSES[self.status][2]
        if key == "done":
            return "canceled" if self.resolution in CANCELED else "done"
        return {"new": "todo", "indeterminate": "in_progress"}[key]


class JiraStore:
    """All issues of one sandbox site, safe to change from a test while the server answers."""

    def __init__(
        self,
        flavour: Flavour,
        projects: Sequence[str],
        team_managed: Iterable[str],
        time_zone: str,
        labels: Sequence[str] | Mapping[str, Sequence[str]],
        issues: int,
        seed: int,
        epics: Sequence[tuple[str, str]] = (),
        start: datetime = DEFAULT_START,
        span: timedelta = DEFAULT_SPAN,
        weights: Sequence[float] | None = None,
    ) -> None:
        if not projects:
            raise ValueError("the sandbox needs at least one project")
        if weights is not None and len(weights) != len(projects):
            raise ValueError("weights need one number per project")
        self.flavour: Flavour = flavour
        self.fields = FIELDS[flavour]
        self.zone = ZoneInfo(time_zone)
        managed = set(team_managed) if flavour == "cloud" else set()
        self.projects: dict[str, Project] = {
            key: Project(10000 + i, key, f"{key.title()} team", key in managed)
            for i, key in enumerate(projects)
        }
        self.lock = threading.RLock()
        self.issues: dict[int, SandboxIssue] = {}
        self.children: dict[int, list[int]] = {}
        self.old_keys: dict[str, int] = {}
        self._keys: dict[str, int] = {}
        self.comments: dict[int, list[dict[str, object]]] = {}
        self.version = 0
        self._ids: list[int] = []  # sorted
        self._numbers = dict.fromkeys(self.projects, 0)
        self._next_id = 10000
        self._next_link = 20000
        self._next_comment = 30000
        self._cache: OrderedDict[tuple[str, int], tuple[list[tuple[int, ...]], list[int]]] = (
            OrderedDict()
        )
        self._rng = random.Random(seed)
        self._start_ms = int(start.timestamp() * 1000)
        self._span_ms = int(span.total_seconds() * 1000)
        by_project = {
            key: list(labels.get(key, ()) if isinstance(labels, Mapping) else labels)
            for key in self.projects
        }
        self._generate(issues, by_project, epics, weights)
        # (created, id), sorted: queries bounded by creation time read only their part of it.
        self._by_created = sorted((issue.created, issue.id) for issue in self.issues.values())

    # --- generation -------------------------------------------------------------------

    def _generate(
        self,
        count: int,
        labels: dict[str, list[str]],
        named_epics: Sequence[tuple[str, str]],
        weights: Sequence[float] | None,
    ) -> None:
        rng = self._rng
        epics: dict[str, list[int]] = {key: [] for key in self.projects}
        work: dict[str, list[int]] = {key: [] for key in self.projects}
        # Named epics come first, so each project numbers them 1, 2, … in the order given.
        for project, summary in named_epics:
            epic = self._add(project, "epic", None, (), self._start_ms + rng.randrange(60_000))
            epic.summary = summary
            self._randomise(epic, rng)
            epics[project].append(epic.id)
        keys = list(self.projects)
        for n in range(count):
            # Every project gets an issue first; then the weights (if any) set their sizes.
            if n < len(keys):
                project = keys[n]
            else:
                project = rng.choices(keys, weights)[0] if weights else rng.choice(keys)
            created = self._start_ms + n * self._span_ms // max(count, 1) + rng.randrange(60_000)
            roll = rng.random()
            if not epics[project] or roll < 0.06:
                kind: Kind = "epic"
            elif roll < 0.26 and work[project]:
                kind = "subtask"
            else:
                kind = rng.choice(("story", "story", "story", "task", "task", "bug"))
            parent = None
            if kind == "subtask":
                parent = rng.choice(work[project][-50:])
            elif kind != "epic" and rng.random() < 0.85:
                parent = rng.choice(epics[project][-8:])
            label_chance = {"epic": 0.5, "subtask": 0.03}.get(kind, 0.15)
            bet_labels = labels[project]
            chosen = [rng.choice(bet_labels)] if bet_labels and rng.random() < label_chance else []
            if rng.random() < 0.2:
                chosen.append(rng.choice(_PLAIN_LABELS))
            issue = self._add(project, kind, parent, tuple(chosen), created)
            self._randomise(issue, rng)
            if kind == "epic":
                epics[project].append(issue.id)
            elif kind != "subtask":  # sub-tasks hang under stories, tasks and bugs only
                work[project].append(issue.id)
            if kind != "epic" and rng.random() < 0.08 and len(work[project]) > 1:
                self._link(issue.id, rng.choice(work[project][-200:-1]), rng)

    def _randomise(self, issue: SandboxIssue, rng: random.Random) -> None:
        roll = rng.random()
        issue.status = 0 if roll < 0.35 else (1 if roll < 0.5 else (2 if roll < 0.6 else DONE))
        issue.assignee = rng.randrange(len(USERS)) if rng.random() < 0.8 else None
        points_chance = {"epic": 0.1, "subtask": 0.2}.get(issue.kind, 0.7)
        if rng.random() < points_chance:
            issue.points = float(
                rng.choice((1, 2, 3, 5, 8, 13) if issue.kind != "subtask" else (1, 2))
            )
        if issue.status > 0 and rng.random() < 0.4:
            issue.time_spent = rng.randrange(1, 33) * 1800
        issue.updated = issue.created + rng.randrange(1, 60 * _DAY_MS)
        if issue.status == DONE:
            roll = rng.random()
            issue.resolution = (
                "Done" if roll < 0.85 else ("Won't Do" if roll < 0.95 else "Duplicate")
            )
            issue.resolved = issue.updated - rng.randrange(0, 3600_000)

    def _add(
        self, project: str, kind: Kind, parent: int | None, labels: tuple[str, ...], created: int
    ) -> SandboxIssue:
        self._numbers[project] += 1
        issue_id = self._next_id
        self._next_id += 1
        words = self._rng
        summary = f"{words.choice(_VERBS)} {words.choice(_NOUNS)} for {words.choice(_AREAS)}"
        issue = SandboxIssue(
            id=issue_id,
            key=f"{project}-{self._numbers[project]}",
            project=project,
            kind=kind,
            summary=summary,
            status=0,
            resolution=None,
            labels=labels,
            parent_id=parent,
            points=None,
            time_spent=None,
            assignee=None,
            created=created,
            updated=created,
            resolved=None,
        )
        self.issues[issue_id] = issue
        self._keys[issue.key] = issue_id
        self._ids.append(issue_id)  # ids only grow, so the list stays sorted
        if parent is not None:
            self.children.setdefault(parent, []).append(issue_id)
        return issue

    def _link(self, source: int, target: int, rng: random.Random) -> None:
        kind = rng.choice(("Blocks", "Relates"))
        self._next_link += 1
        self.issues[source].links.append(Link(self._next_link, kind, target, True))
        self.issues[target].links.append(Link(self._next_link, kind, source, False))

    # --- changes a test makes -----------------------------------------------------------

    def _changed(self, issue: SandboxIssue) -> None:
        issue.updated = max(int(time.time() * 1000), issue.updated + 1)
        self.version += 1

    def touch(self, count: int) -> list[str]:
        """Change `count` issues (summary and `updated`); return their ids, oldest first."""
        with self.lock:
            chosen = self._rng.sample(self._ids, min(count, len(self._ids)))
            for issue_id in sorted(chosen):
                issue = self.issues[issue_id]
                issue.summary = issue.summary.split(" (rev")[0] + f" (rev {self.version + 1})"
                self._changed(issue)
            return [str(i) for i in sorted(chosen)]

    def delete(self, ids: Iterable[str | int]) -> None:
        """Delete issues for good, with their links; sub-tasks go with their parent, as in Jira."""
        with self.lock:
            doomed = [int(i) for i in ids]
            unknown = [i for i in doomed if i not in self.issues]
            if unknown:
                raise KeyError(f"no such issues: {unknown}")
            for issue_id in list(doomed):
                if self.issues[issue_id].kind != "epic":
                    doomed.extend(self.children.get(issue_id, ()))
            for issue_id in dict.fromkeys(doomed):
                issue = self.issues.pop(issue_id)
                del self._keys[issue.key]
                self._ids.pop(bisect_left(self._ids, issue_id))
                self._by_created.pop(bisect_left(self._by_created, (issue.created, issue_id)))
                for link in issue.links:
                    other = self.issues.get(link.other)
                    if other:
                        other.links = [x for x in other.links if x.id != link.id]
                for child in self.children.pop(issue_id, ()):
                    if child in self.issues:  # an epic's children stay, without an epic
                        self.issues[child].parent_id = None
                if issue.parent_id in self.children:
                    self.children[issue.parent_id].remove(issue_id)
                self.comments.pop(issue_id, None)
            self.version += 1

    def move(self, issue_id: str | int, project: str) -> str:
        """Move an issue to another project: a new key, the same id (the old key still resolves)."""
        with self.lock:
            issue = self.get(issue_id)
            if issue is None or project not in self.projects:
                raise KeyError(f"no issue {issue_id} or no project {project}")
            self.old_keys[issue.key] = issue.id
            del self._keys[issue.key]
            self._numbers[project] += 1
            issue.key, issue.project = f"{project}-{self._numbers[project]}", project
            self._keys[issue.key] = issue.id
            self._changed(issue)
            return issue.key

    def create(
        self,
        project: str,
        kind: Kind = "story",
        *,
        summary: str | None = None,
        labels: Sequence[str] = (),
        parent: str | int | None = None,
        points: float | None = None,
        created: datetime | None = None,
    ) -> str:
        """Create an issue now; return its id. `created` backdates it, as an import can."""
        with self.lock:
            now = int(time.time() * 1000)
            born = now if created is None else int(created.timestamp() * 1000)
            issue = self._add(project, kind, int(parent) if parent else None, tuple(labels), born)
            issue.summary = summary or issue.summary
            issue.points = points
            issue.updated = max(now, born)
            insort(self._by_created, (issue.created, issue.id))
            self.version += 1
            return str(issue.id)

    def set_labels(self, issue_id: str | int, labels: Sequence[str]) -> None:
        """Replace an issue's labels (and bump `updated`, as Jira does)."""
        with self.lock:
            issue = self.issues[int(issue_id)]
            issue.labels = tuple(labels)
            self._changed(issue)

    def add_comment(self, issue_id: int, text: str) -> dict[str, object]:
        """Store a comment on an issue (comments do not change `updated` in Jira's search)."""
        with self.lock:
            self._next_comment += 1
            now = int(time.time() * 1000)
            comment: dict[str, object] = {"id": self._next_comment, "body": text, "created": now}
            comment["updated"] = now
            self.comments.setdefault(issue_id, []).append(comment)
            return comment

    # --- reading ------------------------------------------------------------------------

    def get(self, id_or_key: str | int) -> SandboxIssue | None:
        """An issue by id, current key or a key it had before a move."""
        text = str(id_or_key).upper()
        if text.isdigit():
            return self.issues.get(int(text))
        issue_id = self._keys.get(text, self.old_keys.get(text))
        return None if issue_id is None else self.issues.get(issue_id)

    def search(self, jql: str, query: Query) -> tuple[list[tuple[int, ...]], list[int]]:
        """The sort keys and ids of every issue `query` matches, in its order (cached)."""
        with self.lock:
            cache_key = (jql, self.version)
            if cache_key in self._cache:
                self._cache.move_to_end(cache_key)
                return self._cache[cache_key]
            matches = [self.issues[i] for i in self._candidates(query)]
            if query.where is not None:
                matches = [i for i in matches if query.where(i)]
            keyed = sorted((query.sort_key(i), i.id) for i in matches)
            result = ([k for k, _ in keyed], [i for _, i in keyed])
            self._cache[cache_key] = result
            if len(self._cache) > 64:
                self._cache.popitem(last=False)
            return result

    def _candidates(self, query: Query) -> list[int]:
        """The ids `query` can match at most: those created within its creation bounds."""
        low, high = query.created_low, query.created_high
        if low is None and high is None:
            return self._ids
        index = self._by_created
        start = 0 if low is None else bisect_left(index, (low,))
        end = len(index) if high is None else bisect_left(index, (high + 1,))
        return [issue_id for _, issue_id in index[start:end]]

    def ids(self) -> list[str]:
        with self.lock:
            return [str(i) for i in self._ids]
