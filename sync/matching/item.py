"""The matching rules as pure functions: which bets and key results one item serves, and why.

No database here. A `Catalogue` is built from the OKRs, `ItemFacts` from one tracker item,
and `match_item` applies rules 1 and 2 of the design (labels; links and refs);
`apply_decisions` then applies the manual links and unlinks people made. Inheritance
(rule 3) needs the item's ancestors, so `sync.matching.rematch` runs it over the store.

Everything compares case-insensitively: `Bet:Checkout-Speed` names bet `checkout-speed`,
and `linear:initiative:Faster Checkout` is the same ref as `linear:initiative:faster checkout`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

TargetKind = Literal["bet", "kr"]
Origin = Literal["label", "link", "ref", "manual", "inherited"]


@dataclass(frozen=True)
class MatchRules:
    """How labels and links map items to bets and KRs (from the settings)."""

    bet_label_prefix: str = "bet:"
    kr_label_prefix: str = "kr:"
    non_okr_labels: tuple[str, ...] = ("ktlo", "no-okr")
    base_url: str = "http://127.0.0.1:8000"

    def bet_url(self, key: str) -> str:
        """The bet's page in Ladder, which a ticket may link to instead of labelling."""
        return f"{self.base_url.rstrip('/')}/bets/{key}"


@dataclass(frozen=True, slots=True)
class Target:
    """A bet or a key result an item can serve."""

    kind: TargetKind
    id: int
    key: str

    def __str__(self) -> str:
        return f"{'bet' if self.kind == 'bet' else 'key result'} {self.key}"


@dataclass(frozen=True, slots=True)
class Match:
    """One reason an item serves a target. `weight` is relative until `apply_decisions`
    normalises the item's matches to shares that add up to 1."""

    target: Target
    weight: float
    origin: Origin
    detail: str


@dataclass(frozen=True, slots=True)
class ItemFacts:
    """What matching reads of a tracker item."""

    source: str
    key: str
    url: str | None = None
    labels: Sequence[str] = ()
    linked_keys: Sequence[str] = ()
    linked_urls: Sequence[str] = ()
    container_refs: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """A manual link (`weight` optional, relative) or unlink of an item to a target."""

    target: Target
    action: Literal["link", "unlink"]
    weight: float | None = None
    author: str | None = None


def normalise_ref(ref: str) -> str:
    """The comparable form of a ref, a container ref or a URL: lower case, no trailing `/`."""
    return ref.strip().rstrip("/").lower()


def is_url(ref: str) -> bool:
    return ref.strip().lower().startswith(("http://", "https://"))


@dataclass
class Catalogue:
    """The OKR side of matching: bets and KRs by key, and bets by each of their refs."""

    rules: MatchRules
    bets: dict[str, Target] = field(default_factory=dict)
    krs: dict[str, Target] = field(default_factory=dict)
    refs: dict[str, list[tuple[Target, str]]] = field(default_factory=dict)
    by_id: dict[tuple[str, int], Target] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        rules: MatchRules,
        bets: Iterable[tuple[int, str, Sequence[str]]],
        krs: Iterable[tuple[int, str]],
    ) -> Catalogue:
        """From `(id, key, refs)` of every bet and `(id, key)` of every key result."""
        catalogue = cls(rules)
        for bet_id, key, refs in bets:
            target = Target("bet", bet_id, key)
            catalogue.bets.setdefault(key.lower(), target)
            catalogue.by_id[("bet", bet_id)] = target
            for ref in refs:
                catalogue.refs.setdefault(normalise_ref(ref), []).append((target, ref))
        for kr_id, key in krs:
            target = Target("kr", kr_id, key)
            catalogue.krs.setdefault(key.lower(), target)
            catalogue.by_id[("kr", kr_id)] = target
        return catalogue

    def bet_from_url(self, url: str) -> Target | None:
        """The bet whose Ladder page `url` is, if any."""
        prefix = normalise_ref(self.rules.base_url) + "/bets/"
        normalised = normalise_ref(url)
        if not normalised.startswith(prefix):
            return None
        key = normalised[len(prefix) :].split("?", 1)[0].split("#", 1)[0]
        return self.bets.get(key) if key and "/" not in key else None


def labelled_keys(labels: Iterable[str], prefix: str) -> list[tuple[str, str]]:
    """`(label, key)` for each label that starts with `prefix`, case-insensitively."""
    prefix = prefix.lower()
    return [
        (label, label[len(prefix) :])
        for label in labels
        if label.lower().startswith(prefix) and len(label) > len(prefix)
    ]


def match_item(facts: ItemFacts, catalogue: Catalogue) -> list[Match]:
    """The item's own matches by rules 1 and 2, one per target, strongest reason first.

    Labels come first, then links from the item (Ladder bet pages, linked issue keys,
    linked URLs), then refs the item itself is or sits in (its key or URL; its Jira
    project, Linear project or initiative). Each match weighs 1 before normalisation.
    """
    found: dict[Target, Match] = {}

    def add(target: Target | None, origin: Origin, detail: str) -> None:
        if target is not None and target not in found:
            found[target] = Match(target, 1.0, origin, detail)

    def add_ref(token: str, origin: Origin, describe: str) -> None:
        for target, ref in catalogue.refs.get(normalise_ref(token), ()):
            add(target, origin, f"{describe}, listed in bet {target.key}'s refs as {ref}")

    rules = catalogue.rules
    for label, key in labelled_keys(facts.labels, rules.bet_label_prefix):
        add(catalogue.bets.get(key.lower()), "label", f"label {label}")
    for label, key in labelled_keys(facts.labels, rules.kr_label_prefix):
        add(catalogue.krs.get(key.lower()), "label", f"label {label}")
    for url in facts.linked_urls:
        add(catalogue.bet_from_url(url), "link", f"a link to {url}, the bet's page in Ladder")
    for linked in facts.linked_keys:
        add_ref(f"jira:{linked}", "link", f"a link to {linked}")
    for url in facts.linked_urls:
        add_ref(url, "link", f"a link to {url}")
    add_ref(f"{facts.source}:{facts.key}", "ref", f"its key {facts.key}")
    if facts.url:
        add_ref(facts.url, "ref", f"its URL {facts.url}")
    for container in facts.container_refs:
        add_ref(container, "ref", f"container {container}")
    return list(found.values())


def apply_decisions(matches: Sequence[Match], decisions: Iterable[Decision]) -> list[Match]:
    """Apply manual links and unlinks to an item's own matches; normalise the weights.

    An unlink removes the target whatever matched it; a link adds it (or takes over an
    automatic match of the same target) with its weight, 1 by default.
    """
    by_target = {match.target: match for match in matches}
    for decision in decisions:
        if decision.action == "unlink":
            by_target.pop(decision.target, None)
        else:
            who = f" by {decision.author}" if decision.author else ""
            by_target[decision.target] = Match(
                decision.target,
                decision.weight if decision.weight is not None else 1.0,
                "manual",
                f"a manual link{who}",
            )
    return normalise(list(by_target.values()))


def normalise(matches: Sequence[Match]) -> list[Match]:
    """The same matches with weights scaled to add up to 1 (equal when all weigh 0)."""
    total = sum(match.weight for match in matches)
    if total <= 0:
        return [replace(match, weight=1 / len(matches)) for match in matches]
    return [replace(match, weight=match.weight / total) for match in matches]


def has_non_okr_label(labels: Iterable[str], rules: MatchRules) -> str | None:
    """The first label that marks the item as deliberate non-OKR work, if any."""
    marks = {label.lower() for label in rules.non_okr_labels}
    return next((label for label in labels if label.lower() in marks), None)


def unknown_labels(facts: ItemFacts, catalogue: Catalogue) -> list[str]:
    """Labels that look like `bet:…` or `kr:…` but name nothing: typos worth pointing out."""
    rules = catalogue.rules
    known = ((catalogue.bets, rules.bet_label_prefix), (catalogue.krs, rules.kr_label_prefix))
    return [
        label
        for targets, prefix in known
        for label, key in labelled_keys(facts.labels, prefix)
        if key.lower() not in targets
    ]
