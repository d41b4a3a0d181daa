"""The one database object every catalogue repository is built on: engines, transactions, dialect."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from ..errors import BackendUnavailable, Conflict, InsufficientStorage
from . import schema

SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def _unavailable(exc: OperationalError | InterfaceError) -> Exception:
    """A database error as the API's: a full disk is InsufficientStorage (507), anything else 503."""
    orig = exc.orig
    if getattr(orig, "sqlite_errorcode", None) == SQLITE_FULL or getattr(orig, "sqlstate", None) == PG_DISK_FULL:
        return InsufficientStorage(
            f"the database's disk is full ({orig}); free some space and retry", details={"where": "database"}
        )
    return BackendUnavailable(f"database unavailable: {orig}")


class Database:
    """A write engine and a read engine (the same one on PostgreSQL) over one catalogue database."""

    def __init__(self, write_engine: Engine, read_engine: Engine | None = None):
        self.engine = write_engine
        self.read_engine = read_engine or write_engine
        self.dialect: str = write_engine.dialect.name

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE).

        Database outages become BackendUnavailable (503), a full disk InsufficientStorage (507).
        """
        try:
            with self.engine.begin() as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            raise _unavailable(exc) from exc

    @contextmanager
    def ro(self) -> Iterator[Connection]:
        """A read-only connection (the read engine); errors translated as in ``tx``."""
        try:
            with self.read_engine.connect() as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            raise _unavailable(exc) from exc

    def singleton(self, name: str) -> Held | None:
        """Try to become the only holder of ``name`` across processes; a handle with ``release()``, or None.

        PostgreSQL: a session advisory lock on a dedicated connection. SQLite: an exclusive ``flock`` on a
        file beside the database. Used so that one relay publishes while the others stand by.
        """
        if self.dialect == "postgresql":
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            conn = self.engine.connect()
            if conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.commit()

                def release() -> None:
                    # The connection goes back to the pool, so the session lock must be dropped explicitly.
                    try:
                        conn.execute(text("select pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
                    finally:
                        conn.close()

                return Held(release)
            conn.close()
            return None
        database = self.engine.url.database
        if self.dialect == "sqlite" and database and database != ":memory:":
            import fcntl

            f = open(f"{database}.{name}.lock", "a")  # noqa: SIM115 - held open until release()
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                return None
            return Held(f.close)
        return Held(lambda: None)

    def ping(self) -> None:
        with self.ro() as conn:
            conn.execute(text("select 1"))

    def create_schema(self) -> None:
        from .migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


class Held:
    """A lock taken by ``Database.singleton``; ``release()`` gives it up."""

    def __init__(self, release: Callable[[], Any]):
        self.release = release


def refuse_if_in_use(conn: Connection, column: Any, value: str, what: str, code: str) -> None:
    """409 ``code`` while a queued or running job refers to ``value`` through ``column`` of the jobs table."""
    j = schema.jobs
    busy = conn.execute(select(j.c.job_id).where(column == value, j.c.status.in_(schema.ACTIVE))).first()
    if busy is not None:
        raise Conflict(
            f"{what} {value} is used by job {busy.job_id}, which is still active",
            code=code,
            details={"job_id": busy.job_id},
        )
