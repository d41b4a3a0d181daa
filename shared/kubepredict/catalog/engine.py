"""Build SQLAlchemy engines: SQLite (WAL, busy timeout, immediate write transactions) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url

from ..errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 60_000


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    u = make_url(url)
    if u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(u, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so we can issue BEGIN IMMEDIATE ourselves:
        # a deferred transaction that later writes can fail with SQLITE_BUSY without waiting.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_engines(url: str) -> tuple[Engine, Engine]:
    """Return ``(write_engine, read_engine)`` for a database URL."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, immediate=True), _sqlite_engine(url, immediate=False)
    if url.startswith("postgresql"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        # Small pools: functions and job pods are many short-lived processes.
        engine = create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True, pool_recycle=300)
        return engine, engine
    raise ConfigError(f"unknown database URL {url.split(':')[0]!r}; use sqlite:///path or postgresql://…")
