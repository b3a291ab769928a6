"""A small org whose effort report, orphan list and traces were computed by hand.

The org: 3 objectives, 6 KRs, 8 bets and 60 items from a Jira-like and a Linear-like source.
Every figure below was worked out on paper from the item list, item by item; the comments
next to the items say what each one is for. Times are written in hours (H = 3600 s).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from okr_builders import Org
from sqlalchemy.orm import Session

from sync.matching.item import MatchRules
from sync.matching.rematch import find_target, rematch_items, set_decision
from sync.reports.effort import Measure, cycle_window, effort_report, find_cycle
from sync.reports.orphans import list_orphans, orphan_rates
from sync.reports.trace import trace_item

H = 3600
RULES = MatchRules(base_url="https://ladder.example.com")


def day(month: int, dom: int, hour: int = 12, year: int = 2026) -> datetime:
    return datetime(year, month, dom, hour, tzinfo=UTC)


@pytest.fixture
def org(session: Session) -> Org:
    org = Org(session)
    org.north_star()
    s1, s2 = org.strategy("S1", "Win the mid-market"), org.strategy("S2", "Activate")
    org.cycle("2026-Q3", date(2026, 7, 1), date(2026, 9, 30))
    org.cycle("2026-Q4", date(2026, 10, 1), date(2026, 12, 31))
    org.objective("O1", "2026-Q4", strategy=s1)
    org.objective("O2", "2026-Q4", strategy=s1)
    org.objective("O3", "2026-Q4", strategy=s2)
    for kr, objective in [
        ("KR-1.1", "O1"),
        ("KR-1.2", "O1"),
        ("KR-2.1", "O2"),
        ("KR-2.2", "O2"),
        ("KR-3.1", "O3"),
        ("KR-3.2", "O3"),
    ]:
        org.kr(kr, objective)
    org.bet("checkout", {"KR-1.1": 1.0}, refs=["jira:PAY-1"])
    org.bet("wallet", {"KR-1.1": 3, "KR-1.2": 1})
    org.bet("search", ["KR-2.1"], refs=["linear:project:search-v2"])
    org.bet("recs", ["KR-2.1", "KR-2.2"])
    org.bet(
        "onboarding",
        ["KR-3.1"],
        refs=["https://docs.example.com/onboarding", "linear:initiative:Activation"],
    )
    org.bet("pricing", ["KR-3.2"], refs=["jira:PD-12"])
    org.bet("infra")  # serves no key result yet
    org.bet("mobile", ["KR-1.2", "KR-3.1"])

    item = org.item
    # Jira, project PAY: an epic that is a bet's ref, and its family.
    item("PAY-1", type="epic", status="in_progress", estimate=20, time_spent=1 * H)
    item("PAY-2", parent="PAY-1", status="done", resolved=day(10, 15), estimate=5, time_spent=4 * H)
    item("PAY-3", parent="PAY-1", status="in_progress", estimate=3, time_spent=2 * H)
    item("PAY-4", type="subtask", parent="PAY-3", status="done", resolved=day(11, 1), estimate=1,
         time_spent=1 * H)  # fmt: skip
    item("PAY-5", type="subtask", parent="PAY-3", estimate=2)
    item("PAY-6", parent="PAY-1")  # unestimated
    item("PAY-7", parent="PAY-1", status="done", resolved=day(9, 20), estimate=8, time_spent=10 * H)
    item("PAY-8", parent="PAY-1", status="canceled", estimate=5)
    item("PAY-9", parent="PAY-1", deleted=True, estimate=3)
    item("PAY-10", status="in_progress", labels=["bet:wallet"], estimate=5, time_spent=3 * H)
    item("PAY-11", type="subtask", parent="PAY-10", status="in_progress", time_spent=1 * H)
    item("PAY-12", labels=["bet:wallet", "bet:checkout"], estimate=4)  # split half and half
    item("PAY-13", type="bug", status="done", resolved=datetime(2026, 12, 31, 23, tzinfo=UTC),
         labels=["ktlo"], estimate=2, time_spent=2 * H)  # fmt: skip
    item("PAY-14", type="task", status="in_progress", labels=["no-okr"], time_spent=1 * H)
    item("PAY-15", estimate=3)  # orphan; its sub-task's estimate replaces its own
    item("PAY-16", type="subtask", parent="PAY-15", estimate=1)
    item("PAY-17", status="in_progress", time_spent=2 * H)  # orphan, unestimated
    item("PAY-18", status="done", resolved=day(10, 5), estimate=2, time_spent=1 * H)  # orphan
    item("PAY-19", status="done", resolved=day(6, 1), estimate=3)  # orphan done long ago
    item("PAY-20", type="epic", labels=["kr:KR-3.2"])
    item("PAY-21", parent="PAY-20", status="in_progress", estimate=3, time_spent=5 * H)
    item("PAY-22", linked_keys=["PD-12"], estimate=5)
    item("PAY-23", linked_urls=["https://ladder.example.com/bets/infra"], estimate=2,
         time_spent=1 * H)  # fmt: skip
    item("PAY-24", status="done", resolved=day(11, 20),
         linked_urls=["https://docs.example.com/onboarding/"], estimate=3,
         time_spent=2 * H)  # fmt: skip
    item("PAY-25", type="epic", status="in_progress", labels=["ktlo"])
    item("PAY-26", parent="PAY-25", estimate=2)  # non-OKR by inheritance
    item("PAY-27", status="in_progress", labels=["bet:mobile"], estimate=6, time_spent=4 * H)
    item("PAY-28", labels=["bet:typo"], estimate=1)  # a label naming no bet
    item("PAY-29", status="done", resolved=day(1, 2, year=2027), labels=["bet:checkout"],
         estimate=5)  # fmt: skip
    item("PAY-30", parent="PAY-20", labels=["no-okr"], estimate=1)  # inherits: rule 3 first
    # Jira, project GROW: manual decisions, an orphan epic.
    item("GROW-1", estimate=2)  # linked by hand below
    item("GROW-2", status="in_progress", labels=["bet:search"], estimate=3, time_spent=1 * H)
    item("GROW-3", status="done", resolved=day(10, 10), labels=["bet:recs"], estimate=1,
         time_spent=1 * H)  # fmt: skip
    item("GROW-4", type="epic")
    item("GROW-5", parent="GROW-4")
    item("GROW-6", type="subtask", parent="GROW-5", status="in_progress", estimate=2,
         time_spent=1 * H)  # fmt: skip
    item("GROW-7", labels=["bet:Recs"], estimate=2)
    item("GROW-8", parent="GROW-4", status="in_progress", labels=["bet:pricing"], estimate=3,
         time_spent=2 * H)  # fmt: skip
    # Linear, team ENG: projects as containers, sub-issues.
    linear = {"source": "linear", "project": "ENG"}
    search = ["linear:project:p-search", "linear:project:search-v2", "linear:team:ENG"]
    item("search-v2", type="project", status="in_progress", container_refs=search, **linear)
    item("ENG-1", parent="search-v2", status="in_progress", container_refs=search[:2],
         estimate=3, time_spent=2 * H, **linear)  # fmt: skip
    item("ENG-2", type="subtask", parent="ENG-1", status="done", resolved=day(10, 20),
         estimate=1, time_spent=1 * H, **linear)  # fmt: skip
    item("ENG-3", type="subtask", parent="ENG-1", estimate=2, **linear)
    item("ENG-4", parent="search-v2", container_refs=search[:1], **linear)
    item("ENG-5", parent="search-v2", status="canceled", estimate=5, **linear)
    activation = ["linear:project:p-act", "linear:initiative:i-1", "linear:initiative:Activation"]
    item("activation", type="project", container_refs=activation, **linear)
    item("ENG-6", parent="activation", status="in_progress", container_refs=activation[:1],
         estimate=5, time_spent=3 * H, **linear)  # fmt: skip
    item("ENG-7", type="bug", parent="activation", status="done", resolved=day(12, 1),
         labels=["Bug"], estimate=2, time_spent=1 * H, **linear)  # fmt: skip
    item("ENG-8", parent="activation", labels=["bet:recs"], estimate=3, **linear)
    item("ENG-9", labels=["KTLO"], estimate=1, **linear)
    item("ENG-10", status="in_progress", estimate=2, time_spent=2 * H, **linear)
    item("ENG-11", type="subtask", parent="ENG-10", status="done", resolved=day(11, 11),
         time_spent=1 * H, **linear)  # fmt: skip
    item("ENG-12", deleted=True, estimate=8, **linear)
    item("ENG-13", status="done", resolved=datetime(2026, 9, 30, 23, 59, tzinfo=UTC),
         labels=["bet:search"], estimate=3, **linear)  # fmt: skip
    item("ENG-14", type="subtask", parent="ENG-8", estimate=1, **linear)
    # Jira, project OPS: tasks.
    item("OPS-1", type="task", labels=["bet:infra"], estimate=1)
    item("OPS-2", type="task", status="done", resolved=day(10, 2),
         labels=["kr:KR-1.1", "bet:checkout"], estimate=4, time_spent=2 * H)  # fmt: skip
    item("OPS-3", type="task", status="in_progress", labels=["ktlo"], time_spent=6 * H)
    item("OPS-4", type="other", estimate=1)  # orphan
    item("OPS-5", type="task", estimate=4)  # linked by hand to two bets, weights 1 and 3
    item("OPS-6", type="task", status="canceled", labels=["bet:checkout"], estimate=2)
    assert len(org.items) == 60

    rematch_items(session, None, RULES)
    ids = {key: row.id for key, row in org.items.items()}
    set_decision(session, ids["GROW-1"], find_target(session, "bet", "recs"), "link", RULES)
    set_decision(session, ids["GROW-2"], find_target(session, "bet", "search"), "unlink", RULES)
    mobile, pricing = find_target(session, "bet", "mobile"), find_target(session, "bet", "pricing")
    set_decision(session, ids["OPS-5"], mobile, "link", RULES, weight=1)
    set_decision(session, ids["OPS-5"], pricing, "link", RULES, weight=3)
    return org


def numbers(done: float, in_progress: float, todo: float, grand: float) -> dict[str, float]:
    total = done + in_progress + todo
    return {
        "done": done,
        "in_progress": in_progress,
        "todo": todo,
        "total": total,
        "share": round(total / grand, 6),
    }


# (done, in_progress, todo) per row, worked out by hand; see the module docstring.
EXPECTED: dict[Measure, dict[str, object]] = {
    "points": {
        "O1": (10, 8, 6.5),
        "O2": (2, 0, 7),
        "O3": (5, 14, 9.5),
        None: (0, 0, 3),
        "orphan": (2, 7, 3),
        "non_okr": (2, 0, 3),
        "grand": 82,
        "unestimated": 5,
    },
    "count": {
        "O1": (2, 2.5, 2.125),
        "O2": (1, 1, 4),
        "O3": (2, 3.5, 2.875),
        None: (0, 0, 2),
        "orphan": (1, 3, 4),
        "non_okr": (1, 2, 2),
        "grand": 36,
        "unestimated": 5,
    },
    "time": {
        "O1": (7 * H, 9 * H, 0),
        "O2": (2 * H, 2 * H, 0),
        "O3": (3 * H, 12 * H, 0),
        None: (0, 0, 1 * H),
        "orphan": (2 * H, 6 * H, 0),
        "non_okr": (2 * H, 7 * H, 0),
        "grand": 53 * H,
        "unestimated": 5,
    },
}


@pytest.mark.parametrize("measure", ["points", "count", "time"])
def test_effort_by_objective_matches_the_hand_computation(
    org: Org, session: Session, measure: Measure
) -> None:
    expected = EXPECTED[measure]
    grand = float(expected["grand"])  # type: ignore[arg-type]
    report = effort_report(session, org.cycles["2026-Q4"], measure, "objective").as_dict()
    titles = {"O1": "Objective O1", "O2": "Objective O2", "O3": "Objective O3"}
    assert report == {
        "cycle": "2026-Q4",
        "measure": measure,
        "by": "objective",
        "rows": [
            {"key": key, "title": titles[key], **numbers(*expected[key], grand)}  # type: ignore[misc]
            for key in ("O1", "O2", "O3")
        ]
        + [
            {
                "key": None,
                "title": "Bets that serve no key result yet",
                **numbers(*expected[None], grand),  # type: ignore[misc]
            }
        ],
        "orphan": numbers(*expected["orphan"], grand),  # type: ignore[misc]
        "non_okr": numbers(*expected["non_okr"], grand),  # type: ignore[misc]
        "unestimated": expected["unestimated"],
        "alignment": round(
            sum(sum(expected[k]) for k in ("O1", "O2", "O3", None)) / grand,  # type: ignore[arg-type]
            6,
        ),
    }


def test_alignment_figures_in_words(org: Org, session: Session) -> None:
    cycle = org.cycles["2026-Q4"]
    assert effort_report(session, cycle, "points", "objective").alignment == pytest.approx(65 / 82)
    assert effort_report(session, cycle, "count", "objective").alignment == pytest.approx(23 / 36)
    assert effort_report(session, cycle, "time", "objective").alignment == pytest.approx(36 / 53)


def test_effort_by_team_kr_and_bet(org: Org, session: Session) -> None:
    cycle = org.cycles["2026-Q4"]
    team = effort_report(session, cycle, "points", "team").as_dict()
    assert [(r["key"], r["done"], r["in_progress"], r["todo"]) for r in team["rows"]] == [
        ("PAY", 9, 14, 14),
        ("ENG", 3, 5, 3),
        ("OPS", 4, 0, 5),
        ("GROW", 1, 3, 4),
    ]
    kr = effort_report(session, cycle, "points", "kr").as_dict()
    # wallet splits 3:1 between KR-1.1 and KR-1.2; recs and mobile split equally.
    assert [(r["key"], r["total"]) for r in kr["rows"]] == [
        ("KR-1.1", 5 + 1 + 2 + 2 + 2 + 2 + 3.75 + 1.5),  # checkout, OPS-2 direct, wallet 3/4
        ("KR-1.2", 1.25 + 0.5 + 3 + 0.5),  # wallet 1/4, mobile halves
        ("KR-2.1", 3 + 3),  # search, half of recs
        ("KR-2.2", 3),
        ("KR-3.1", 3 + 5 + 2 + 3 + 0.5),  # onboarding, half of mobile
        ("KR-3.2", 5 + 3 + 3 + 3 + 1),  # pricing, the KR-3.2 epic's family
        (None, 3),
    ]
    bet = effort_report(session, cycle, "points", "bet").as_dict()
    assert [(r["key"], r["total"]) for r in bet["rows"]] == [
        ("checkout", 5 + 1 + 2 + 2 + 2),
        ("wallet", 5 + 2),
        ("search", 3),
        ("recs", 6),
        ("onboarding", 10),
        ("pricing", 11),
        ("infra", 3),
        ("mobile", 6 + 1),
        (None, 2 + 3 + 1),  # straight to a KR: OPS-2's half, PAY-21, PAY-30
    ]
    assert team["alignment"] == kr["alignment"] == bet["alignment"] == round(65 / 82, 6)


def test_effort_as_csv(org: Org, session: Session) -> None:
    report = effort_report(session, org.cycles["2026-Q4"], "count", "objective")
    assert report.as_csv().splitlines() == [
        "kind,key,title,done,in_progress,todo,total,share",
        "objective,O1,Objective O1,2.0,2.5,2.125,6.625,0.184028",
        "objective,O2,Objective O2,1.0,1.0,4.0,6.0,0.166667",
        "objective,O3,Objective O3,2.0,3.5,2.875,8.375,0.232639",
        "objective,,Bets that serve no key result yet,0.0,0.0,2.0,2.0,0.055556",
        "orphan,,,1.0,3.0,4.0,8.0,0.222222",
        "non_okr,,,1.0,2.0,2.0,5.0,0.138889",
        "unestimated,,,,,,5,",
        "alignment,,,,,,,0.638889",
    ]


def test_an_earlier_cycle_counts_what_was_done_in_it(org: Org, session: Session) -> None:
    report = effort_report(session, org.cycles["2026-Q3"], "points", "objective").as_dict()
    # Open items count in every cycle; done ones only in theirs: PAY-7 (checkout, 8
    # points) and ENG-13 (search, 3) in Q3, the orphan PAY-19 in neither.
    assert report["rows"][0]["done"] == 8
    assert report["rows"][1]["done"] == 3
    assert report["orphan"]["done"] == 0
    assert [row["key"] for row in report["rows"]] == ["O1", "O2", "O3", None]


def test_the_orphan_list(org: Org, session: Session) -> None:
    def listed(**options: object) -> list[tuple[str, float]]:
        found, _ = list_orphans(session, **options)  # type: ignore[arg-type]
        return [(orphan.view.item.key, orphan.effort) for orphan in found]

    assert listed() == [
        ("GROW-2", 3),
        ("GROW-6", 2),
        ("ENG-10", 2),
        ("PAY-16", 1),
        ("PAY-28", 1),
        ("OPS-4", 1),
        ("PAY-15", 0),
        ("PAY-17", 0),
        ("GROW-4", 0),
        ("GROW-5", 0),
    ]
    window = cycle_window(org.cycles["2026-Q4"])
    assert listed(window=window)[:4] == [("GROW-2", 3), ("PAY-18", 2), ("GROW-6", 2), ("ENG-10", 2)]
    assert ("ENG-11", 0) in listed(window=window)
    # Roots only, with the effort of their orphan subtrees.
    assert listed(roots_only=True) == [
        ("GROW-2", 3),
        ("GROW-4", 2),
        ("ENG-10", 2),
        ("PAY-15", 1),
        ("PAY-28", 1),
        ("OPS-4", 1),
        ("PAY-17", 0),
    ]
    assert listed(roots_only=True, measure="time") == [
        ("PAY-17", 2 * H),
        ("ENG-10", 2 * H),
        ("GROW-2", 1 * H),
        ("GROW-4", 1 * H),
        ("PAY-15", 0),
        ("PAY-28", 0),
        ("OPS-4", 0),
    ]
    # Every root's subtree holds one work item (GROW-4's: GROW-5), so they go in id order.
    roots = ["PAY-15", "PAY-17", "PAY-18", "PAY-28", "GROW-2", "GROW-4", "ENG-10", "OPS-4"]
    assert listed(roots_only=True, window=window, measure="count") == [(k, 1) for k in roots]
    # Filters.
    assert listed(source="linear") == [("ENG-10", 2)]
    assert listed(project="OPS") == [("OPS-4", 1)]
    assert listed(status_category="in_progress") == [
        ("GROW-2", 3),
        ("GROW-6", 2),
        ("ENG-10", 2),
        ("PAY-17", 0),
    ]
    # Pages follow one another without gaps or repeats.
    first, cursor = list_orphans(session, limit=4)
    second, cursor2 = list_orphans(session, limit=4, cursor=cursor)
    third, end = list_orphans(session, limit=4, cursor=cursor2)
    keys = [o.view.item.key for o in first + second + third]
    assert keys == [key for key, _ in listed()] and end is None


def test_orphan_rate_per_team(org: Org, session: Session) -> None:
    rates = orphan_rates(session, cycle_window(org.cycles["2026-Q4"]), "points")
    assert [(r.team, r.effort, r.orphan_effort, r.items, r.orphans) for r in rates] == [
        ("GROW", 13, 5, 8, 4),
        ("ENG", 14, 2, 13, 2),
        ("OPS", 10, 1, 5, 1),
        ("PAY", 45, 4, 25, 5),
    ]
    assert [round(r.rate, 4) for r in rates] == [0.3846, 0.1429, 0.1, 0.0889]


def steps(org: Org, session: Session, key: str) -> list[list[tuple[str, str | None, str, str]]]:
    found = trace_item(session, org.items[key], RULES)
    return [
        [(s.level, s.key, s.origin, s.detail) for s in ladder.steps] for ladder in found.ladders
    ]


TOP_O1 = [
    ("key_result", "KR-1.1", "objective", "a key result of O1"),
    ("objective", "O1", "strategy", "pursues S1"),
    ("strategy", "S1", "north_star", "serves the north star"),
    ("north_star", None, "north_star", "the metric the whole org moves"),
]


def test_trace_of_an_inherited_sub_task(org: Org, session: Session) -> None:
    own = "its key PAY-1, listed in bet checkout's refs as jira:PAY-1"
    found = trace_item(session, org.items["PAY-4"], RULES)
    assert [ladder.weight for ladder in found.ladders] == [1.0]
    assert steps(org, session, "PAY-4") == [
        [
            ("item", "PAY-4", "inherited", f"inherited from PAY-1, which has {own}"),
            ("item", "PAY-3", "parent", "the parent of PAY-4 passes it down"),
            ("item", "PAY-1", "ref", own),
            ("bet", "checkout", "key_result", "serves KR-1.1 with 100% of its weight"),
            *TOP_O1,
        ]
    ]
    assert found.explanation == "PAY-4 serves bet checkout (100%)."


def test_trace_of_a_multi_path_item(org: Org, session: Session) -> None:
    found = trace_item(session, org.items["OPS-2"], RULES)
    assert sorted(ladder.weight for ladder in found.ladders) == [0.5, 0.5]
    assert sorted(steps(org, session, "OPS-2")) == [
        [
            ("item", "OPS-2", "label", "label bet:checkout"),
            ("bet", "checkout", "key_result", "serves KR-1.1 with 100% of its weight"),
            *TOP_O1,
        ],
        [("item", "OPS-2", "label", "label kr:KR-1.1"), *TOP_O1],
    ]
    mobile = trace_item(session, org.items["PAY-27"], RULES)
    assert [(ladder.weight, ladder.steps[2].key) for ladder in mobile.ladders] == [
        (0.5, "KR-1.2"),
        (0.5, "KR-3.1"),
    ]
    assert [s.key for s in mobile.ladders[1].steps] == [
        "PAY-27",
        "mobile",
        "KR-3.1",
        "O3",
        "S2",
        None,
    ]


def test_trace_of_a_bet_without_key_results(org: Org, session: Session) -> None:
    assert steps(org, session, "PAY-23") == [
        [
            (
                "item",
                "PAY-23",
                "link",
                "a link to https://ladder.example.com/bets/infra, the bet's page in Ladder",
            ),
            ("bet", "infra", "no_key_result", "serves no key result yet"),
        ]
    ]


def test_traces_explain_orphans_and_non_okr_work(org: Org, session: Session) -> None:
    def why(key: str) -> str:
        return trace_item(session, org.items[key], RULES).explanation

    no_match = (
        "is an orphan: no label bet:<bet> or kr:<key result>, no link to a bet's Ladder page"
        " or refs, and no matched ancestor."
    )
    how = "Link it with a label such as bet:<bet key>, or mark deliberate non-OKR work with"
    assert why("PAY-28") == (
        f"PAY-28 {no_match} Label bet:typo names no bet or key result. {how} ktlo or no-okr."
    )
    assert why("PAY-16") == (
        f"PAY-16 {no_match} Its parent PAY-15 is an orphan too: linking it links both."
        f" {how} ktlo or no-okr."
    )
    assert why("GROW-2") == (
        f"GROW-2 {no_match} Manual unlinks removed: bet search. {how} ktlo or no-okr."
    )
    assert why("PAY-26") == "PAY-26 is non-OKR work: its ancestor PAY-25 has label ktlo."
    assert why("ENG-9") == "ENG-9 is deliberate non-OKR work: label KTLO."
    assert (
        why("OPS-6") == "OPS-6 serves bet checkout (100%). It is canceled, so it counts no effort."
    )
    assert trace_item(session, org.items["PAY-28"], RULES).ladders == []


def test_the_default_cycle_is_the_current_one(org: Org, session: Session) -> None:
    assert find_cycle(session, None, date(2026, 11, 5)).key == "2026-Q4"
    with pytest.raises(Exception, match="no cycle covers 2027-02-01"):
        find_cycle(session, None, date(2027, 2, 1))
    with pytest.raises(Exception, match="no cycle with key '2031-Q1'"):
        find_cycle(session, "2031-Q1", date(2026, 11, 5))


def test_cycle_days_start_in_the_configured_time_zone(org: Org, session: Session) -> None:
    from zoneinfo import ZoneInfo

    # PAY-13 was resolved at 23:00 UTC on 31 December: 1 January already in Berlin.
    berlin = effort_report(
        session, org.cycles["2026-Q4"], "points", "objective", ZoneInfo("Europe/Berlin")
    )
    assert berlin.non_okr.done == 0
    assert effort_report(session, org.cycles["2026-Q4"], "points", "objective").non_okr.done == 2
