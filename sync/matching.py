"""Matching tracker items to bets and key results."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class MatchRules:
    """How labels and links map items to bets and KRs (from the settings)."""

    bet_label_prefix: str = "bet:"
    kr_label_prefix: str = "kr:"
    non_okr_labels: tuple[str, ...] = ("ktlo", "no-okr")
    base_url: str = "http://127.0.0.1:8000"


def rematch_items(session: Session, item_ids: Collection[int] | None, rules: MatchRules) -> None:
    """Re-match the given items and their descendants (all items when None)."""
