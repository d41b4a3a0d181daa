"""The online path's one read per request: a model's id, status and digest, on a raw per-thread connection.

A SQLAlchemy Core round trip costs ~10x the query itself (statement compilation cache, pool checkout,
result machinery). Online serving asks one tiny indexed question per request — is this model still
there, still ready, still this artifact, still the newest ready version of its name? — so it asks it
on a plain DB-API cursor of a connection owned by the calling thread (detached from the pool, so
request threads never starve the pool). Reads only: nothing on the online path writes.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ..errors import BackendUnavailable

_COLS = "model_id, status, artifact_sha256, job_id"
_BY_ID = f"SELECT {_COLS} FROM models WHERE model_id = ?"
_BY_VERSION = f"SELECT {_COLS} FROM models WHERE name = ? AND version = ?"
_NEWEST_READY = f"SELECT {_COLS} FROM models WHERE name = ? AND status = 'ready' ORDER BY version DESC LIMIT 1"
_NEWEST = f"SELECT {_COLS} FROM models WHERE name = ? ORDER BY version DESC LIMIT 1"
_BY_ALIAS = (
    "SELECT m.model_id, m.status, m.artifact_sha256, m.job_id FROM model_aliases a"
    " JOIN models m ON m.model_id = a.model_id WHERE a.name = ? AND a.alias = ?"
)
#: What a bare name means: its ``champion`` alias when it has one (catalog/aliases.py), else its newest
#: ready version, else its newest (to say "not ready") — one statement, one round trip.
_BARE = (
    f"SELECT {_COLS} FROM ("
    f"SELECT {_COLS}, 0 AS pick FROM models WHERE model_id ="
    " (SELECT model_id FROM model_aliases WHERE name = ? AND alias = ?)"
    f" UNION ALL SELECT {_COLS}, 1 FROM ({_NEWEST_READY}) r"
    f" UNION ALL SELECT {_COLS}, 2 FROM ({_NEWEST}) n"
    ") c ORDER BY pick LIMIT 1"
)


class Head(NamedTuple):
    model_id: str
    status: str
    sha256: str | None
    job_id: str | None


class HeadReader:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.paramstyle_pg = engine.dialect.name == "postgresql"
        self._local = threading.local()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.paramstyle_pg else sql

    def _connection(self) -> Any:  # the driver's own connection (sqlite3 or psycopg)
        conn: Any = getattr(self._local, "conn", None)
        if conn is None:
            proxied = self.engine.raw_connection()
            conn = proxied.driver_connection
            proxied.detach()  # ours for this thread's life; never returned to (or counted by) the pool
            if self.paramstyle_pg:
                conn.autocommit = True  # no idle-in-transaction between requests
            self._local.conn = conn
        return conn

    def _one(self, sql: str, params: tuple[object, ...]) -> Head | None:
        for attempt in (1, 2):
            try:
                cur = self._connection().cursor()
                try:
                    cur.execute(self._sql(sql), params)
                    row = cur.fetchone()
                finally:
                    cur.close()
                return Head(*row) if row else None
            except Exception as exc:  # a broken connection is replaced once, then reported
                self.close_thread()
                if attempt == 2 or not _is_db_error(exc):
                    raise BackendUnavailable(f"database unavailable: {exc}") from exc
        return None

    def by_id(self, model_id: str) -> Head | None:
        return self._one(_BY_ID, (model_id,))

    def by_name(self, name: str, version: int | None = None) -> Head | None:
        """``name`` at ``version``; else its champion, else its newest ready version, else its newest."""
        if version is not None:
            return self._one(_BY_VERSION, (name, version))
        return self._one(_BARE, (name, "champion", name, name))

    def by_alias(self, name: str, alias: str) -> Head | None:
        """The version ``name@alias`` points at."""
        return self._one(_BY_ALIAS, (name, alias))

    def close_thread(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a connection already broken needs no clean close
                pass


def _is_db_error(exc: Exception) -> bool:
    if isinstance(exc, DBAPIError):
        return True
    module = type(exc).__module__ or ""
    return module.startswith(("sqlite3", "psycopg"))
