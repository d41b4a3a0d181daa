"""Model aliases: per name, movable pointers (``champion``, ``staging``…) to one of its versions.

Every move is a compare-and-set inside one transaction: the row changes only if it still points where
the mover last saw it (an insert when there was no row; the primary key refuses a second insert), so
two concurrent promotions cannot both win, and the loser re-decides against the new holder.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, InvalidInput, ModelNotFound, NotFound
from ..ids import iso, utcnow
from . import schema
from .database import Database
from .outbox import emit

A = schema.model_aliases
M = schema.models
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: The alias a bare model name means, when the name has it.
CHAMPION = "champion"


def event_key(name: str) -> str:
    """The Kafka key of a name's alias events: the name (cut to the outbox's key size), so that one
    name's moves — promotions, roll-backs, removals — stay in one partition, in order."""
    return name[:80]


class AliasNotFound(NotFound):
    code = "alias_not_found"


class AliasMoved(Conflict):
    """The alias no longer points where the mover saw it (a concurrent move won)."""

    code = "alias_moved"


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise InvalidInput(
            "an alias is 1-63 characters: a lower-case letter, then lower-case letters, digits, '-' or '_'",
            code="invalid_alias",
            details={"alias": alias if isinstance(alias, str) else None, "pattern": ALIAS.pattern},
        )
    return alias


def current(conn: Connection, name: str, alias: str) -> str | None:
    """The model id ``name@alias`` points at, or None."""
    return conn.execute(select(A.c.model_id).where(A.c.name == name, A.c.alias == alias)).scalar()


def compare_and_set(conn: Connection, name: str, alias: str, model_id: str, expected: str | None) -> bool:
    """Point ``name@alias`` at ``model_id`` if it still points at ``expected`` (None: has no row); in ``conn``'s
    transaction. False when someone else moved it first (nothing changed)."""
    now = utcnow()
    if expected is None:
        try:
            with conn.begin_nested():  # a savepoint: a lost insert race must not abort the caller's transaction
                conn.execute(A.insert().values(name=name, alias=alias, model_id=model_id, updated_at=now))
        except IntegrityError:
            return False
        return True
    res = conn.execute(
        update(A)
        .where(A.c.name == name, A.c.alias == alias, A.c.model_id == expected)
        .values(model_id=model_id, updated_at=now)
    )
    return res.rowcount == 1


def apply_decision(conn: Connection, name: str, decision: dict[str, Any], expected: str | None) -> bool:
    """Commit a promotion ``decision`` made against holder ``expected`` (in ``conn``'s transaction).

    Moves the alias when the decision says so, with ``model.promoted``; either way refuses (AliasMoved,
    nothing changed) when the alias no longer points at ``expected``. True when the alias moved.
    """
    alias, model_id = decision["alias"], decision["challenger"]["model_id"]
    if not decision["promoted"]:
        if current(conn, name, alias) != expected:
            raise AliasMoved(f"{name}@{alias} moved while deciding", details={"name": name, "alias": alias})
        return False
    if not compare_and_set(conn, name, alias, model_id, expected):
        raise AliasMoved(f"{name}@{alias} moved while deciding", details={"name": name, "alias": alias})
    emit(
        conn,
        "model.promoted",
        event_key(name),
        {
            "name": name,
            "alias": alias,
            "model_id": model_id,
            "version": decision["challenger"].get("version"),
            "previous_model_id": expected,
            "metric": decision["metric"],
            "score": decision["challenger"]["score"],
            "previous_score": (decision.get("champion") or {}).get("score"),
        },
    )
    return True


def aliases_by_model(conn: Connection, model_ids: list[str]) -> dict[str, list[str]]:
    """``{model_id: [alias, …]}`` for the given models (those without aliases left out)."""
    if not model_ids:
        return {}
    rows = conn.execute(select(A.c.model_id, A.c.alias).where(A.c.model_id.in_(model_ids)).order_by(A.c.alias)).all()
    out: dict[str, list[str]] = {}
    for model_id, alias in rows:
        out.setdefault(model_id, []).append(alias)
    return out


def _view(row: Any) -> dict[str, Any]:
    return {
        "alias": row.alias,
        "name": row.name,
        "model_id": row.model_id,
        "version": row.version,
        "updated_at": iso(row.updated_at) if isinstance(row.updated_at, datetime) else row.updated_at,
    }


_COLS = (A.c.alias, A.c.name, A.c.model_id, M.c.version, A.c.updated_at)


class AliasesRepo:
    def __init__(self, db: Database):
        self.db = db

    def holder(self, name: str, alias: str) -> str | None:
        """The model id ``name@alias`` points at now, or None."""
        with self.db.ro() as conn:
            return current(conn, name, alias)

    def list_aliases(self, name: str) -> list[dict[str, Any]]:
        """Every alias of ``name`` (404 when no model has that name)."""
        with self.db.ro() as conn:
            if conn.execute(select(M.c.model_id).where(M.c.name == name).limit(1)).first() is None:
                raise ModelNotFound(f"no model named {name!r}", details={"name": name})
            rows = conn.execute(
                select(*_COLS).join(M, M.c.model_id == A.c.model_id).where(A.c.name == name).order_by(A.c.alias)
            ).all()
        return [_view(r) for r in rows]

    def set_alias(
        self, name: str, alias: str, *, version: int | None = None, model_id: str | None = None
    ) -> dict[str, Any]:
        """Point ``name@alias`` at ``version`` (or ``model_id``) of that name; returns the alias and where it was.

        404: no such version; 409: the model is of another name, or not ready. Nothing changes on error.
        """
        check_alias(alias)
        for _ in range(20):
            with self.db.tx() as conn:
                target = _target(conn, name, version, model_id)
                before = current(conn, name, alias)
                if not compare_and_set(conn, name, alias, target.model_id, before):
                    continue  # a concurrent move: read again
                emit(
                    conn,
                    "model.alias_set",
                    event_key(name),
                    {
                        "name": name,
                        "alias": alias,
                        "model_id": target.model_id,
                        "version": target.version,
                        "previous_model_id": before,
                    },
                )
                return {
                    "alias": alias,
                    "name": name,
                    "model_id": target.model_id,
                    "version": target.version,
                    "previous_model_id": before,
                }
        raise AliasMoved(f"alias {name}@{alias} kept moving; retry", details={"name": name, "alias": alias})

    def delete_alias(self, name: str, alias: str) -> None:
        check_alias(alias)
        with self.db.tx() as conn:
            before = current(conn, name, alias)
            if before is None:
                raise AliasNotFound(f"model {name!r} has no alias {alias!r}", details={"name": name, "alias": alias})
            conn.execute(A.delete().where(A.c.name == name, A.c.alias == alias))
            emit(conn, "model.alias_deleted", event_key(name), {"name": name, "alias": alias, "model_id": before})


def _target(conn: Connection, name: str, version: int | None, model_id: str | None) -> Any:
    if model_id is not None:
        row = conn.execute(
            select(M.c.model_id, M.c.name, M.c.version, M.c.status).where(M.c.model_id == model_id)
        ).first()
        what = f"id {model_id}"
    else:
        row = conn.execute(
            select(M.c.model_id, M.c.name, M.c.version, M.c.status).where(M.c.name == name, M.c.version == version)
        ).first()
        what = f"{name!r} version {version}"
    if row is None:
        raise ModelNotFound(f"no model {what}", details={"name": name, "version": version, "model_id": model_id})
    if row.name != name:
        raise Conflict(
            f"model {row.model_id} is version {row.version} of {row.name!r}, not of {name!r}; "
            "an alias points at a version of its own name",
            code="alias_wrong_name",
            details={"name": name, "model_name": row.name, "model_id": row.model_id},
        )
    if row.status != "ready":
        raise Conflict(
            f"model {row.model_id} is {row.status}, not ready; an alias points at ready versions only",
            code="model_not_ready",
            details={"model_id": row.model_id, "status": row.status},
        )
    return row
