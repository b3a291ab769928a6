"""Making sure that, of several processes sharing one store, exactly one does a given thing.

Two tools for two needs:

- `exclusive(engine, name)` holds a lock for as long as a piece of work runs (a sync of one
  source). On PostgreSQL it is a session-level advisory lock; on SQLite, which lives on one
  host, an `flock` on a file beside the database. Both vanish with the process that holds
  them, so a crashed or killed sync never blocks the next one.
- `claim(session, name, holder, until)` takes a lease row in the `leases` table until a given
  time, even after the work is done. The scheduler claims each tick of a job this way, so a
  second process that fires the same tick a moment later finds it taken.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, text, update
from sqlalchemy.orm import Session

from sync.store.items import dialect_insert
from sync.store.models import Lease, utcnow

_memory_locks: dict[str, threading.Lock] = {}
_memory_guard = threading.Lock()


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[bool]:
    """Try to take the lock `name` without waiting; yield whether it was taken.

    The lock is released when the block ends (or when the process dies).
    """
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, name) as taken:
            yield taken
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with _memory_lock(name) as taken:
            yield taken
        return
    with _file_lock(Path(database), name) as taken:
        yield taken


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_try_advisory_lock`."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def _advisory_lock(engine: Engine, name: str) -> Iterator[bool]:
    # A connection of its own, in autocommit, held for the duration: the lock belongs to
    # the database session, and the session must not sit idle inside a transaction.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        key = _lock_key(name)
        taken = bool(connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        try:
            yield taken
        finally:
            if taken:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


@contextmanager
def _file_lock(database: Path, name: str) -> Iterator[bool]:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    path = database.with_name(f"{database.name}.{safe}.lock")
    # flock belongs to the open file, so two threads of one process exclude each other too.
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


@contextmanager
def _memory_lock(name: str) -> Iterator[bool]:
    with _memory_guard:
        lock = _memory_locks.setdefault(name, threading.Lock())
    taken = lock.acquire(blocking=False)
    try:
        yield taken
    finally:
        if taken:
            lock.release()


def claim(
    session: Session, name: str, holder: str, until: datetime, now: datetime | None = None
) -> bool:
    """Take the lease `name` for `holder` until `until`, unless someone holds it still.

    Atomic on both backends: of concurrent claimers exactly one succeeds. The caller
    commits right away so the others see it.
    """
    now = now or utcnow()
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.expires_at <= now)
        .values(holder=holder, expires_at=until)
        .returning(Lease.name)
    ).first()
    if taken is not None:
        return True
    created = session.execute(
        dialect_insert(session, Lease.__table__)  # type: ignore[arg-type]
        .values(name=name, holder=holder, expires_at=until)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Lease.name)
    ).first()
    return created is not None
