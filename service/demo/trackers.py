"""The demo's trackers: a sandbox Jira and a sandbox Linear shaped after the demo OKRs.

Each demo team works in one or two trackers (`JIRA_PROJECTS`, `LINEAR_TEAMS`). What the
sandboxes generate is derived from the OKR file, never from a second list of keys: every
team's issues carry labels naming its own bets and key results (`bet:<key>`, `kr:<key>`) or
the first non-OKR label, and the epics, projects and initiatives the bets' refs name exist,
so the refs resolve. The rest of each workspace is generated: stories, tasks, bugs and
sub-tasks with estimates, time spent and statuses, a share of which link to nothing.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from integrations.sandbox.jira import JiraSandbox
from integrations.sandbox.linear import LinearSandbox
from integrations.sandbox.server import serve_in_thread
from sync.matching.rematch import MatchRules
from sync.okrs.document import OkrDocument

# Demo team → the Jira project it works in.
JIRA_PROJECTS = {"payments": "PAY", "search": "SRCH"}
# Demo team → (key, name) of its Linear team; payments builds its mobile checkout there.
LINEAR_TEAMS = {
    "payments": ("CHK", "Mobile checkout"),
    "growth": ("GRO", "Growth"),
    "platform": ("PLT", "Platform"),
}
DEFAULT_ISSUES = 300
SEED = 3
# The sandbox Jira creates issues over 330 days and updates them up to 60 days later: starting
# 390 days ago puts the last updates near now, so some work is done in the current cycle.
JIRA_HISTORY = timedelta(days=390)
_JIRA_REF = re.compile(r"jira:([A-Z][A-Z0-9_]*)-(\d+)")


@dataclass
class Workspace:
    """What the sandboxes are asked to hold, derived from an OKR document."""

    jira_labels: dict[str, list[str]] = field(default_factory=dict)  # project key → labels
    jira_epics: list[tuple[str, str]] = field(default_factory=list)  # (project, summary)
    linear_labels: dict[str, list[str]] = field(default_factory=dict)  # team key → labels
    linear_projects: list[tuple[str, str, list[str]]] = field(default_factory=list)


def plan_workspace(document: OkrDocument, rules: MatchRules) -> Workspace:
    """The labels, epics and projects that make `document`'s bets show up in the trackers.

    A Jira ref `jira:PAY-3` becomes the third issue of PAY, an epic titled after its bet
    (numbers no bet names become epics of plain upkeep). A Linear project ref becomes a
    project of the bet's team titled after the slug, inside the initiatives the bet also
    names; a bet naming only initiatives gets a project of its own inside them.
    """
    team_labels: dict[str, list[str]] = defaultdict(list)
    for bet in document.bets:
        team_labels[bet.team or ""].append(f"{rules.bet_label_prefix}{bet.key}")
    for objective in document.objectives:
        team_labels[objective.team or ""] += [
            f"{rules.kr_label_prefix}{kr.key}" for kr in objective.key_results
        ]
    non_okr = list(rules.non_okr_labels[:1])
    workspace = Workspace(
        jira_labels={key: team_labels[team] + non_okr for team, key in JIRA_PROJECTS.items()},
        linear_labels={key: team_labels[team] + non_okr for team, (key, _) in LINEAR_TEAMS.items()},
    )

    epic_titles: dict[str, dict[int, str]] = {key: {} for key in JIRA_PROJECTS.values()}
    for bet in document.bets:
        for ref in bet.refs:
            found = _JIRA_REF.fullmatch(ref)
            if found and found[1] in epic_titles:
                epic_titles[found[1]][int(found[2])] = bet.title
        initiatives = [_title(r.split(":", 2)[2]) for r in bet.refs if _names(r, "initiative")]
        projects = [_title(r.split(":", 2)[2]) for r in bet.refs if _names(r, "project")]
        if initiatives and not projects:
            projects = [bet.title]
        if projects and bet.team not in LINEAR_TEAMS:
            raise ValueError(f"bet {bet.key} names Linear refs but its team has no Linear team")
        for name in projects:
            team_key = LINEAR_TEAMS[bet.team or ""][0]
            workspace.linear_projects.append((name, team_key, initiatives))
    for project, titles in epic_titles.items():
        for number in range(1, max(titles, default=0) + 1):
            workspace.jira_epics.append((project, titles.get(number, f"{project} upkeep")))
    return workspace


def _names(ref: str, kind: str) -> bool:
    return ref.startswith(f"linear:{kind}:")


def _title(slug: str) -> str:
    """`edge-cache` → `Edge cache`: a name whose slug is the ref again."""
    return slug.replace("-", " ").capitalize()


@dataclass
class Sandboxes:
    """The sandboxes the demo runs, and where they listen."""

    jira: JiraSandbox
    jira_url: str
    linear: LinearSandbox
    linear_url: str


def start_sandboxes(workspace: Workspace, issues: int, resources: ExitStack) -> Sandboxes:
    """Serve a Cloud Jira and a Linear on loopback ports.

    The servers run in background threads until `resources` is closed.
    """
    jira = JiraSandbox(
        "cloud",
        issues,
        SEED,
        list(workspace.jira_labels),
        workspace.jira_labels,
        epics=workspace.jira_epics,
        start=datetime.now(UTC) - JIRA_HISTORY,
    )
    jira_url = resources.enter_context(serve_in_thread(jira.app))
    linear = LinearSandbox(
        issues,
        {key: name for key, name in LINEAR_TEAMS.values()},
        SEED,
        workspace.linear_labels,
        projects=workspace.linear_projects,
    )
    linear_url = resources.enter_context(serve_in_thread(linear.app)) + "/graphql"
    return Sandboxes(jira, jira_url, linear, linear_url)


def tracker_settings(sandboxes: Sandboxes) -> dict[str, object]:
    """Settings that point Ladder at the sandboxes, with their webhook secrets unset."""
    return {
        "jira_url": sandboxes.jira_url,
        "jira_email": sandboxes.jira.email,
        "jira_api_token": sandboxes.jira.api_token,
        "jira_pat": None,
        "jira_jql": None,
        "jira_story_points_field": None,
        "jira_webhook_secret": None,
        "jira_webhook_token": None,
        "linear_url": sandboxes.linear_url,
        "linear_api_key": sandboxes.linear.api_key,
        "linear_teams": [],
        "linear_webhook_secret": None,
    }


def trace_example(sandboxes: Sandboxes, workspace: Workspace) -> str | None:
    """The key of a Jira sub-task whose story sits in a named epic: its trace climbs every rung."""
    numbers: Counter[str] = Counter()
    named = set()
    for project, _ in workspace.jira_epics:
        numbers[project] += 1
        named.add(f"{project}-{numbers[project]}")
    jira = sandboxes.jira
    for issue in jira.issues():
        story = jira.issue(issue.parent_id) if issue.kind == "subtask" and issue.parent_id else None
        epic = jira.issue(story.parent_id) if story and story.parent_id else None
        if epic is not None and epic.key in named:
            return issue.key
    return None
