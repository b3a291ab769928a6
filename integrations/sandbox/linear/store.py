"""The sandbox Linear's workspace: in-memory teams, issues, projects and initiatives.

Records are plain dicts shaped like Linear's schema types, so GraphQL's default resolver
reads their scalar fields; relations are stored as ids (`teamId`, `projectId`…) and
resolved in `resolvers`. Timestamps are ISO strings in one fixed format
(`2026-01-02T03:04:05.678Z`), which sort as text in time order.

A workspace is generated from a seed, so the same arguments always give the same teams,
projects, issues and labels (only the absolute times follow the clock). A caller may name the
teams, give each team its own labels and name the projects (with their team and initiatives)
instead of having them generated. Mutation helpers
model what the sync has to notice: edits, archiving (which, as in Linear's own webhook
payloads, sets `archivedAt` without moving `updatedAt`), trashing, and moving an issue to
another team (a new identifier, the old one kept in `previousIdentifiers`).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from integrations.linear.mapping import slug

Record = dict[str, Any]

ORGANIZATION_KEY = "sandbox"
TEAM_NAMES = {
    "ENG": "Engineering",
    "OPS": "Operations",
    "WEB": "Web",
    "MOB": "Mobile",
    "DAT": "Data",
    "SEC": "Security",
    "INF": "Infrastructure",
    "DES": "Design",
}
# Each team's workflow: (name, type, weight when generating issues).
WORKFLOW = (
    ("Triage", "triage", 2),
    ("Backlog", "backlog", 15),
    ("Todo", "unstarted", 20),
    ("In Progress", "started", 20),
    ("In Review", "started", 5),
    ("Done", "completed", 30),
    ("Canceled", "canceled", 6),
    ("Duplicate", "canceled", 2),
)
PROJECT_STATUSES = (
    ("Backlog", "backlog"),
    ("Planned", "planned"),
    ("In Progress", "started"),
    ("Paused", "paused"),
    ("Completed", "completed"),
    ("Canceled", "canceled"),
)
BASE_LABELS = ("Bug", "Feature", "Improvement", "ktlo")
INITIATIVE_NAMES = (
    "Faster checkout",
    "Platform reliability",
    "Grow mid-market",
    "Self-serve onboarding",
    "Mobile parity",
)
WORDS = ("billing", "search", "checkout", "login", "export", "alerts", "sync", "reports")
VERBS = ("Fix", "Add", "Improve", "Remove", "Refactor", "Document", "Speed up", "Audit")
ESTIMATES = (None, None, None, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 5.0, 8.0)
DAY_MS = 86_400_000


def iso(ms: int) -> str:
    """Epoch milliseconds in the one format the sandbox stores."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


# A named project: (name, team key, initiative names).
ProjectSpec = tuple[str, str, Sequence[str]]


class LinearStore:
    """Everything the sandbox knows, guarded by one lock shared with the resolvers.

    `teams` is a count (keys and names are generated) or team names by key; `labels` are
    shared by every team, or given per team key; `projects`, when given, replace the
    generated projects (initiatives they name are created if new).
    """

    def __init__(
        self,
        issues: int = 0,
        teams: int | Mapping[str, str] = 3,
        seed: int = 0,
        labels: Iterable[str] | Mapping[str, Iterable[str]] = (),
        projects: Sequence[ProjectSpec] = (),
    ) -> None:
        if isinstance(teams, int):
            if not 1 <= teams <= 50:
                raise ValueError("teams must be between 1 and 50")
            keys = [*TEAM_NAMES, *(f"T{n}" for n in range(len(TEAM_NAMES), teams))][:teams]
            teams = {key: TEAM_NAMES.get(key, f"Team {key}") for key in keys}
        if not teams:
            raise ValueError("the sandbox needs at least one team")
        by_team = labels if isinstance(labels, Mapping) else dict.fromkeys(teams, tuple(labels))
        team_labels = {key: [*BASE_LABELS, *by_team.get(key, ())] for key in teams}
        self.lock = threading.RLock()
        self.version = 0  # bumped by every change, so cached query results expire
        self._rng = random.Random(seed)
        self._last_ms = 0
        self.teams: dict[str, Record] = {}
        self.states: dict[str, Record] = {}
        self.users: dict[str, Record] = {}
        self.labels: dict[str, Record] = {}
        self.cycles: dict[str, Record] = {}
        self.initiatives: dict[str, Record] = {}
        self.projects: dict[str, Record] = {}
        self.issues: dict[str, Record] = {}
        self.comments: dict[str, Record] = {}
        self.organization = {"id": self._id(), "name": "Sandbox", "urlKey": ORGANIZATION_KEY}
        # Everything generated lies an hour or more in the past, clear of any sync's overlap.
        anchor = self.now_ms() - 3_600_000
        self._generate(issues, teams, team_labels, projects, anchor)
        self.viewer = next(iter(self.users.values()))

    # --- clock and ids -----------------------------------------------------------------

    def now_ms(self) -> int:
        """The current time in epoch ms, strictly increasing so edits order unambiguously."""
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms

    def _id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # --- lookups -----------------------------------------------------------------------

    def team(self, key_or_id: str) -> Record:
        for team in self.teams.values():
            if key_or_id in (team["id"], team["key"]):
                return team
        raise KeyError(f"no team {key_or_id!r}")

    def state_of(self, team_id: str, state_type: str) -> Record:
        return next(
            s for s in self.states.values() if s["teamId"] == team_id and s["type"] == state_type
        )

    # --- changes the tests and benchmarks make -----------------------------------------

    def touch(self, count: int) -> list[str]:
        """Edit the titles of `count` live issues (the least recently updated); their ids."""
        with self.lock:
            live = sorted(
                (i for i in self.issues.values() if not i["archivedAt"]),
                key=lambda i: (i["updatedAt"], i["id"]),
            )
            touched = live[:count]
            for issue in touched:
                issue["title"] = issue["title"].split(" (edited")[0] + f" (edited {self._last_ms})"
                self._updated(issue)
            return [issue["id"] for issue in touched]

    def update(self, issue_id: str, **fields: Any) -> Record:
        """Set fields of an issue (e.g. `estimate`, `labelIds`, `stateId`) as an edit would."""
        with self.lock:
            issue = self.issues[issue_id]
            unknown = set(fields) - set(issue)
            if unknown:
                raise KeyError(f"issues have no fields {sorted(unknown)}")
            issue.update(fields)
            self._updated(issue)
            return issue

    def archive(self, issue_id: str) -> Record:
        """Archive an issue; as in Linear, `updatedAt` stays where it was."""
        with self.lock:
            issue = self.issues[issue_id]
            issue["archivedAt"] = iso(self.now_ms())
            self.version += 1
            return issue

    def trash(self, issue_id: str) -> Record:
        """Delete an issue to the trash: archived and flagged `trashed`."""
        with self.lock:
            issue = self.archive(issue_id)
            issue["trashed"] = True
            return issue

    def move(self, issue_id: str, team_key: str) -> Record:
        """Move an issue to another team: a new number and identifier, the same id."""
        with self.lock:
            issue = self.issues[issue_id]
            team = self.team(team_key)
            if team["id"] == issue["teamId"]:
                raise ValueError(f"{issue['identifier']} is already in {team['key']}")
            old_state = self.states[issue["stateId"]]
            issue["previousIdentifiers"] = [*issue["previousIdentifiers"], issue["identifier"]]
            issue["teamId"] = team["id"]
            issue["stateId"] = self.state_of(team["id"], old_state["type"])["id"]
            issue["cycleId"] = None  # cycles belong to teams
            self._number(issue, team)
            self._updated(issue)
            return issue

    def create(
        self,
        team_key: str,
        title: str,
        *,
        state_type: str = "unstarted",
        estimate: float | None = None,
        labels: Iterable[str] = (),
        parent_id: str | None = None,
        project_id: str | None = None,
        attachments: Iterable[str] = (),
    ) -> Record:
        """Create an issue now; labels are named and created when new."""
        with self.lock:
            team = self.team(team_key)
            now = iso(self.now_ms())
            issue = self._issue_record(team, title, now)
            issue.update(
                stateId=self.state_of(team["id"], state_type)["id"],
                estimate=estimate,
                labelIds=[self._label(name)["id"] for name in labels],
                parentId=parent_id,
                projectId=project_id,
                attachments=[self._attachment(url, now) for url in attachments],
            )
            self._set_resolution(issue, state_type, now)
            self.issues[issue["id"]] = issue
            self.version += 1
            return issue

    def add_comment(self, issue_id: str, body: str) -> Record:
        with self.lock:
            if issue_id not in self.issues:
                raise KeyError(issue_id)
            now = iso(self.now_ms())
            comment = {
                "id": self._id(),
                "body": body,
                "issueId": issue_id,
                "userId": self.viewer["id"],
                "createdAt": now,
                "updatedAt": now,
                "editedAt": None,
                "archivedAt": None,
            }
            comment["url"] = f"{self.issues[issue_id]['url']}#comment-{comment['id'][:8]}"
            self.comments[comment["id"]] = comment
            self.version += 1
            return comment

    def edit_comment(self, comment_id: str, body: str) -> Record:
        with self.lock:
            comment = self.comments[comment_id]
            now = iso(self.now_ms())
            comment.update(body=body, updatedAt=now, editedAt=now)
            self.version += 1
            return comment

    # --- generation ----------------------------------------------------------------------

    def _generate(
        self,
        issues: int,
        teams: Mapping[str, str],
        team_labels: Mapping[str, list[str]],
        projects: Sequence[ProjectSpec],
        anchor: int,
    ) -> None:
        rng = self._rng
        for key, name in teams.items():
            created = iso(anchor - 400 * DAY_MS)
            team = {"id": self._id(), "key": key, "name": name}
            team.update(createdAt=created, updatedAt=created, archivedAt=None, _next=1)
            self.teams[team["id"]] = team
            for position, (name, state_type, _) in enumerate(WORKFLOW):
                state = {"id": self._id(), "name": name, "type": state_type, "teamId": team["id"]}
                state.update(position=float(position), color="#bec2c8", description=None)
                self.states[state["id"]] = state
            for number in range(1, 7):
                starts = anchor - (7 - number) * 14 * DAY_MS
                cycle = {"id": self._id(), "number": float(number), "name": None}
                cycle.update(
                    teamId=team["id"], startsAt=iso(starts), endsAt=iso(starts + 14 * DAY_MS)
                )
                self.cycles[cycle["id"]] = cycle
        for n in range(8):
            user = {"id": self._id(), "name": f"User {n + 1}", "displayName": f"user{n + 1}"}
            user.update(email=f"user{n + 1}@sandbox.example", active=True)
            self.users[user["id"]] = user
        labels = {
            self.team(key)["id"]: list(dict.fromkeys(self._label(name)["id"] for name in names))
            for key, names in team_labels.items()
        }
        self._generate_initiatives(anchor)
        if projects:
            self._name_projects(projects, anchor)
        else:
            self._generate_projects(max(3, issues // 100), anchor)
        team_projects = {
            t: [p["id"] for p in self.projects.values() if t in p["teamIds"]] for t in self.teams
        }
        cycles = {
            t: [c["id"] for c in self.cycles.values() if c["teamId"] == t] for t in self.teams
        }
        for _ in range(issues):
            self._generate_issue(rng, anchor, team_projects, cycles, labels)

    def _generate_initiatives(self, anchor: int) -> None:
        for n, name in enumerate(INITIATIVE_NAMES):
            # The last initiative sits under the first, to exercise parent initiatives.
            parent = next(iter(self.initiatives)) if n == len(INITIATIVE_NAMES) - 1 else None
            self._add_initiative(name, iso(anchor - (300 - n) * DAY_MS), parent)

    def _add_initiative(self, name: str, when: str, parent_id: str | None) -> Record:
        initiative = {"id": self._id(), "name": name, "slugId": self._slug_id()}
        initiative.update(
            url=f"https://linear.app/{ORGANIZATION_KEY}/initiative/{slug(name)}",
            createdAt=when,
            updatedAt=when,
            archivedAt=None,
            trashed=None,
            status="Active",
            parentId=parent_id,
        )
        self.initiatives[initiative["id"]] = initiative
        return initiative

    def _initiative(self, name: str, when: str) -> Record:
        for initiative in self.initiatives.values():
            if initiative["name"] == name:
                return initiative
        return self._add_initiative(name, when, None)

    def _name_projects(self, projects: Sequence[ProjectSpec], anchor: int) -> None:
        """Projects under way, one per spec, each in its team and initiatives."""
        users = list(self.users)
        for name, team_key, initiative_names in projects:
            slug_id = self._slug_id()
            created = anchor - self._rng.randint(60, 200) * DAY_MS
            self._add_project(
                self._id(),
                name,
                slug_id,
                created,
                anchor - DAY_MS,
                PROJECT_STATUSES[2],
                [self.team(team_key)["id"]],
                [self._initiative(i, iso(created))["id"] for i in initiative_names],
                self._rng.choice(users),
                anchor,
            )

    def _generate_projects(self, count: int, anchor: int) -> None:
        rng = self._rng
        team_ids = list(self.teams)
        initiative_ids = list(self.initiatives)
        users = list(self.users)
        for n in range(count):
            name = f"{rng.choice(WORDS).capitalize()} {rng.choice(('v2', 'revamp', 'beta'))} {n}"
            slug_id = self._slug_id()
            created = anchor - rng.randint(30, 300) * DAY_MS
            status = PROJECT_STATUSES[rng.randrange(len(PROJECT_STATUSES))]
            project_id = self._id()
            updated = created + rng.randint(0, anchor - created)
            teams = rng.sample(team_ids, k=min(len(team_ids), rng.choice((1, 1, 2))))
            initiatives = rng.sample(initiative_ids, k=rng.choice((0, 1, 1, 2)))
            self._add_project(
                project_id,
                name,
                slug_id,
                created,
                updated,
                status,
                teams,
                initiatives,
                rng.choice(users),
                anchor,
            )

    def _add_project(
        self,
        project_id: str,
        name: str,
        slug_id: str,
        created: int,
        updated: int,
        status: tuple[str, str],
        team_ids: list[str],
        initiative_ids: list[str],
        lead_id: str,
        anchor: int,
    ) -> None:
        status_name, status_type = status
        project = {"id": project_id, "name": name, "slugId": slug_id}
        project.update(
            url=f"https://linear.app/{ORGANIZATION_KEY}/project/{slug(name)}-{slug_id}",
            createdAt=iso(created),
            updatedAt=iso(updated),
            startedAt=iso(created) if status_type != "backlog" else None,
            completedAt=iso(anchor - DAY_MS) if status_type == "completed" else None,
            canceledAt=iso(anchor - DAY_MS) if status_type == "canceled" else None,
            archivedAt=None,
            trashed=None,
            statusName=status_name,
            statusType=status_type,
            teamIds=team_ids,
            initiativeIds=initiative_ids,
            leadId=lead_id,
            labelNames=[],
        )
        self.projects[project_id] = project

    def _generate_issue(
        self,
        rng: random.Random,
        anchor: int,
        team_projects: dict[str, list[str]],
        team_cycles: dict[str, list[str]],
        team_labels: dict[str, list[str]],
    ) -> None:
        team = rng.choice(list(self.teams.values()))
        created = anchor - rng.randint(DAY_MS // 24, 180 * DAY_MS)
        updated = created + rng.randint(0, anchor - created)
        title = f"{rng.choice(VERBS)} {rng.choice(WORDS)}"
        issue = self._issue_record(team, title, iso(created))
        issue["updatedAt"] = iso(updated)
        weights = [weight for *_, weight in WORKFLOW]
        _, state_type, _ = rng.choices(WORKFLOW, weights=weights)[0]
        issue["stateId"] = self.state_of(team["id"], state_type)["id"]
        self._set_resolution(issue, state_type, iso(updated))
        issue["estimate"] = rng.choice(ESTIMATES)
        labels = team_labels[team["id"]]
        issue["labelIds"] = rng.sample(labels, k=min(len(labels), rng.choice((0, 0, 1, 1, 2, 3))))
        issue["assigneeId"] = rng.choice([None, *self.users])
        if team_projects[team["id"]] and rng.random() < 0.7:
            issue["projectId"] = rng.choice(team_projects[team["id"]])
        if rng.random() < 0.5:
            issue["cycleId"] = rng.choice(team_cycles[team["id"]])
        parents = team.setdefault("_parents", [])
        if parents and rng.random() < 0.15:
            parent = self.issues[rng.choice(parents)]
            issue["parentId"] = parent["id"]
            issue["projectId"] = parent["projectId"]  # sub-issues follow their parent
        elif len(parents) < 200:
            parents.append(issue["id"])
        repo = team["key"].lower()
        issue["attachments"] = [
            self._attachment(
                f"https://github.com/acme/{repo}/pull/{rng.randint(1, 9999)}", iso(updated)
            )
            for _ in range(rng.choice((0, 0, 0, 1, 1, 2)))
        ]
        if state_type in ("completed", "canceled") and rng.random() < 0.02:
            issue["archivedAt"] = iso(min(updated + DAY_MS // 2, anchor))
            issue["trashed"] = True if rng.random() < 0.25 else None
        self.issues[issue["id"]] = issue

    def _issue_record(self, team: Record, title: str, created: str) -> Record:
        issue: Record = {
            "id": self._id(),
            "title": title,
            "description": None,
            "priority": 0.0,
            "priorityLabel": "No priority",
            "createdAt": created,
            "updatedAt": created,
            "startedAt": None,
            "completedAt": None,
            "canceledAt": None,
            "archivedAt": None,
            "trashed": None,
            "estimate": None,
            "previousIdentifiers": [],
            "labelIds": [],
            "attachments": [],
            "teamId": team["id"],
            "stateId": None,
            "parentId": None,
            "projectId": None,
            "cycleId": None,
            "assigneeId": None,
        }
        self._number(issue, team)
        return issue

    def _number(self, issue: Record, team: Record) -> None:
        number = team["_next"]
        team["_next"] += 1
        issue["number"] = float(number)
        issue["identifier"] = f"{team['key']}-{number}"
        issue["url"] = (
            f"https://linear.app/{ORGANIZATION_KEY}/issue/{issue['identifier']}/"
            f"{slug(issue['title'])}"
        )

    def _set_resolution(self, issue: Record, state_type: str, when: str) -> None:
        if state_type in ("started", "completed"):
            issue["startedAt"] = issue["createdAt"]
        if state_type == "completed":
            issue["completedAt"] = when
        if state_type == "canceled":
            issue["canceledAt"] = when

    def _updated(self, issue: Record) -> None:
        issue["updatedAt"] = iso(self.now_ms())
        self.version += 1

    def _label(self, name: str) -> Record:
        for label in self.labels.values():
            if label["name"] == name:
                return label
        label = {"id": self._id(), "name": name, "color": "#bec2c8", "description": None}
        label.update(createdAt=iso(self._last_ms), updatedAt=iso(self._last_ms), archivedAt=None)
        self.labels[label["id"]] = label
        return label

    def _attachment(self, url: str, when: str) -> Record:
        return {"id": self._id(), "url": url, "title": url, "createdAt": when}

    def _slug_id(self) -> str:
        return f"{self._rng.getrandbits(48):012x}"
