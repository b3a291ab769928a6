"""The JQL Ladder sends, built by pure functions.

Every query is bounded (Cloud's search rejects queries without a restriction: the scope is
one) and ordered, so pages are stable: oldest update first for syncs, creation order for the
id census.

No query compares `id` (or `key`): JQL reads `id >= 10500` as "issues of the project of issue
10500 whose key number is at least its key number", and refuses an id that names no issue.
Slices of the scope are creation-time ranges instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from itertools import pairwise

SYNC_ORDER = "updated ASC, id ASC"
CENSUS_ORDER = "created ASC, id ASC"
JQL_MINUTE = "%Y-%m-%d %H:%M"  # how JQL writes a time; it reads it in the API user's zone
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
    return local.strftime(JQL_MINUTE)


def created_ranges(
    first: datetime, last: datetime, count: int, size: int, most: int, zone: tzinfo
) -> list[str | None]:
    """Split the scope by creation time into slices of about `size` issues each (at most
    `most`), covering every issue exactly once; `[None]`, the whole scope, when it is small.

    The cuts divide the span from the first to the last creation (aware times) evenly, as
    "yyyy-MM-dd HH:mm" in `zone`, the zone JQL reads them in. The first slice is open below
    and the last open above, so issues created after the split, or dated outside the span
    seen, still fall into exactly one slice. Each cut is a later minute than the one before
    (JQL's resolution; never two in one minute), and one that exists exactly once on the
    zone's clock: a wall-clock time that a daylight-saving change skips or repeats could read
    as an earlier moment than the cut before it, and two slices would then overlap.
    """
    parts = max(1, min(most, math.ceil(count / max(size, 1))))
    cuts: list[datetime] = []
    previous = _wall_minute(first, zone)
    for part in range(1, parts):
        cut = _wall_minute(first + (last - first) * part / parts, zone)
        if cut > previous and _unambiguous(cut, zone):
            cuts.append(cut)
            previous = cut
    if not cuts:
        return [None]
    bounds = [f'"{cut.strftime(JQL_MINUTE)}"' for cut in cuts]
    ranges: list[str | None] = [f"created < {bounds[0]}"]
    ranges += [f"created >= {a} AND created < {b}" for a, b in pairwise(bounds)]
    ranges.append(f"created >= {bounds[-1]}")
    return ranges


def _wall_minute(moment: datetime, zone: tzinfo) -> datetime:
    """`moment` on `zone`'s clock (naive), floored to the minute."""
    return moment.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)


def _unambiguous(wall: datetime, zone: tzinfo) -> bool:
    """Whether the wall-clock time `wall` happens exactly once in `zone` (not skipped or
    repeated by a daylight-saving change): only then do both readings agree."""
    earlier, later = (wall.replace(tzinfo=zone, fold=fold) for fold in (0, 1))
    return earlier.utcoffset() == later.utcoffset()
