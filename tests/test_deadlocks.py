"""Writers that deadlock on PostgreSQL: the one it aborts runs again and nothing is lost."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sync.store.db import make_engine, retry_deadlocks, session_factory, transaction
from sync.store.models import AppState

KEYS = ("deadlock-a", "deadlock-b")


def test_the_transaction_that_loses_a_deadlock_is_run_again(postgres_database: str) -> None:
    engine = make_engine(postgres_database)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        session.query(AppState).filter(AppState.key.in_(KEYS)).delete()
        session.add_all(AppState(key=key, value="") for key in KEYS)
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts: Counter[str] = Counter()
    errors: list[BaseException] = []

    def lock(session: Session, key: str) -> None:
        session.execute(select(AppState.key).where(AppState.key == key).with_for_update())

    def writer(first: str, second: str) -> None:
        def work() -> None:
            attempts[first] += 1
            with transaction(sessions) as session:
                lock(session, first)
                if attempts[first] == 1:
                    both_hold_one.wait()  # then each asks for the row the other holds
                lock(session, second)
                session.execute(
                    update(AppState).where(AppState.key.in_(KEYS)).values(value=f"by {first}")
                )

        try:
            retry_deadlocks(work)
        except BaseException as exc:  # reported below, where pytest sees it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=order) for order in (KEYS, KEYS[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(attempts.values()) == [1, 2]  # PostgreSQL aborted one; it ran again
    (loser,) = [key for key, count in attempts.items() if count == 2]
    with sessions() as session:
        values = set(session.scalars(select(AppState.value).where(AppState.key.in_(KEYS))))
    assert values == {f"by {loser}"}  # the retry committed last
    engine.dispose()
