"""The trackers configured in the settings, as adapters, and the matching rules.

The one place where settings turn into the objects the sync engine and the jobs work with;
sync/ itself never reads the settings. Adapters hold HTTP connections: whoever builds them
closes them (`close_adapters`) once done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from integrations.base import TrackerAdapter
from integrations.jira.adapter import JiraAdapter
from integrations.linear import LinearAdapter
from service.settings import Settings
from sync.matching.rematch import MatchRules


def build_adapters(settings: Settings) -> dict[str, TrackerAdapter]:
    """An adapter per configured tracker, by source name (`jira`, `linear`)."""
    adapters: dict[str, TrackerAdapter] = {}
    if settings.jira_url:
        adapters["jira"] = JiraAdapter(
            settings.jira_url,
            email=settings.jira_email,
            api_token=settings.jira_api_token,
            pat=settings.jira_pat,
            jql=settings.jira_jql,
            story_points_field=settings.jira_story_points_field,
            canceled_resolutions=settings.jira_canceled_resolutions,
            # As many creation-time ranges as fetch threads: all run at once, and each range
            # ends in at most one partial page, which keeps the request count near the minimum.
            max_partitions=settings.sync_concurrency,
            webhook_secret=settings.jira_webhook_secret,
            bot_account_id=settings.jira_bot_account_id,
        )
    if settings.linear_api_key:
        adapters["linear"] = LinearAdapter.connect(
            settings.linear_url,
            settings.linear_api_key,
            settings.linear_teams,
            webhook_secret=settings.linear_webhook_secret,
        )
    return adapters


def close_adapters(adapters: Iterable[TrackerAdapter]) -> None:
    """Close the HTTP connections of `adapters`, every one even if closing another fails."""
    with ExitStack() as stack:
        for adapter in adapters:
            stack.callback(adapter.close)


def match_rules(settings: Settings) -> MatchRules:
    """The matching rules from the label settings and the base URL of bet pages."""
    return MatchRules(
        bet_label_prefix=settings.bet_label_prefix,
        kr_label_prefix=settings.kr_label_prefix,
        non_okr_labels=tuple(settings.non_okr_labels),
        base_url=settings.base_url,
    )


@dataclass(frozen=True)
class JobContext:
    """What a job gets to work with.

    The adapters live as long as the process, so what they learn about a tracker on first
    use (a Jira site's fields, for one) is not fetched again on every tick.
    """

    settings: Settings
    sessions: sessionmaker[Session]
    adapters: Mapping[str, TrackerAdapter]
