"""The JQL Ladder sends, built by pure functions.

Every query is bounded (Cloud's search rejects queries without a restriction) and ordered,
so pages are stable: oldest update first for syncs, creation order for the id census.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from itertools import pairwise

SYNC_ORDER = "updated ASC, id ASC"
CENSUS_ORDER = "created ASC, id ASC"
WHOLE_SCOPE = "id >= 0"
# JQL reads dates in the API user's time zone; without it, reach back a full day instead.
UNKNOWN_ZONE_MARGIN = timedelta(hours=24)
_ORDER_BY = re.compile(r"\s+order\s+by\s+.*$", re.IGNORECASE | re.DOTALL)


def scope_jql(configured: str | None, projects: Sequence[str]) -> str:
    """The restriction every query starts from: the configured JQL, else all projects."""
    if configured and configured.strip():
        # The caller's ORDER BY would sit inside our parentheses, where JQL forbids it.
        return _ORDER_BY.sub("", " " + configured.strip()).strip()
    return "project in (" + ", ".join(f'"{key}"' for key in projects) + ")"


def search_jql(
    scope: str, *, partition: str | None = None, since: str | None = None, order: str = SYNC_ORDER
) -> str:
    """`(scope) AND (partition) AND updated >= "since" ORDER BY order`."""
    clauses = [f"({scope})"]
    if partition:
        clauses.append(f"({partition})")
    if since:
        clauses.append(f'updated >= "{since}"')
    return " AND ".join(clauses) + f" ORDER BY {order}"


def since_literal(since: datetime, zone: tzinfo | None) -> str:
    """`since` as JQL's "yyyy-MM-dd HH:mm" in the user's zone, floored to the minute.

    Flooring keeps `>=` inclusive of `since` itself; the engine already subtracts its own
    overlap for clock skew and Jira's eventual consistency.
    """
    if since.tzinfo is None:
        raise ValueError("since must be an aware datetime")
    local = since.astimezone(zone) if zone else since - UNKNOWN_ZONE_MARGIN
    return local.strftime("%Y-%m-%d %H:%M")


def id_ranges(lowest: int, highest: int, count: int, size: int, most: int) -> list[str]:
    """Split ids into ranges of about `size` issues each (at most `most`), covering every id.

    The first range is open below and the last open above, so issues created after the
    split, or older than the lowest id seen, still fall into exactly one range.
    """
    parts = max(1, min(most, math.ceil(count / max(size, 1)), highest - lowest + 1))
    if parts == 1:
        return [WHOLE_SCOPE]
    span = highest + 1 - lowest
    cuts = [lowest + round(i * span / parts) for i in range(1, parts)]
    ranges = [f"id < {cuts[0]}"]
    ranges += [f"id >= {a} AND id < {b}" for a, b in pairwise(cuts)]
    ranges.append(f"id >= {cuts[-1]}")
    return ranges
