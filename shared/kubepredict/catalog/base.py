"""Shared plumbing of the catalogue repositories: engines, JSON columns, error translation, outbox writes."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, InterfaceError

from ..errors import BackendUnavailable, Conflict, InsufficientStorage
from ..events.cloudevents import make_event
from ..ids import utcnow
from . import schema

logger = logging.getLogger(__name__)


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), allow_nan=False)


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def refuse_if_in_use(conn: Connection, column, value: str, what: str, code: str) -> None:
    """409 ``code`` while a queued or running job refers to ``value`` through ``column`` of the jobs table."""
    j = schema.jobs
    busy = conn.execute(select(j.c.job_id).where(column == value, j.c.status.in_(schema.ACTIVE))).first()
    if busy is not None:
        raise Conflict(f"{what} {value} is used by job {busy.job_id}, which is still active", code=code,
                       details={"job_id": busy.job_id})


SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def _unavailable(exc) -> Exception:
    """A database error as the API's: a full disk is InsufficientStorage (507), anything else 503."""
    orig = exc.orig
    if getattr(orig, "sqlite_errorcode", None) == SQLITE_FULL or getattr(orig, "sqlstate", None) == PG_DISK_FULL:
        return InsufficientStorage(f"the database's disk is full ({orig}); free some space and retry",
                                   details={"where": "database"})
    return BackendUnavailable(f"database unavailable: {orig}")


class CatalogBase:
    """Owns the engines; repositories mix in their verbs."""

    dialect: str

    def __init__(self, write_engine: Engine, read_engine: Engine | None = None):
        self.engine = write_engine
        self.read_engine = read_engine or write_engine
        self.dialect = write_engine.dialect.name

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE); database outages become BackendUnavailable."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            raise _unavailable(exc) from exc

    @contextmanager
    def ro(self) -> Iterator[Connection]:
        try:
            with self.read_engine.connect() as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            raise _unavailable(exc) from exc

    @staticmethod
    def _emit(conn: Connection, kind: str, key: str, data: dict) -> dict:
        """Write one event to the outbox inside the caller's transaction."""
        event = make_event(kind, key, data)
        conn.execute(schema.outbox.insert().values(
            event_id=event["id"], type=event["type"], key=key, payload=dumps(event), created_at=utcnow()))
        return event

    def singleton(self, name: str):
        """Try to become the only holder of ``name`` across processes; a handle with ``release()``, or None.

        PostgreSQL: a session advisory lock on a dedicated connection. SQLite: an exclusive ``flock`` on a
        file beside the database. Used so that one relay publishes while the others stand by.
        """
        import hashlib

        if self.dialect == "postgresql":
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            conn = self.engine.connect()
            from sqlalchemy import text

            if conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.commit()

                def release() -> None:
                    # The connection goes back to the pool, so the session lock must be dropped explicitly.
                    try:
                        conn.execute(text("select pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
                    finally:
                        conn.close()

                return _Held(release)
            conn.close()
            return None
        database = self.engine.url.database
        if self.dialect == "sqlite" and database and database != ":memory:":
            import fcntl

            f = open(f"{database}.{name}.lock", "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                return None
            return _Held(f.close)
        return _Held(lambda: None)

    def ping(self) -> None:
        from sqlalchemy import text

        with self.ro() as conn:
            conn.execute(text("select 1"))

    def create_schema(self) -> None:
        from .migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


class _Held:
    def __init__(self, release):
        self.release = release
