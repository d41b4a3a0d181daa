"""Outbox repository: events written with each state change, read and marked by the relay.

An event's ``payload`` is the serialized CloudEvent exactly as the relay publishes it (the message,
not a value for Python to read): it is written once here and sent byte for byte.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from ..events.cloudevents import make_event
from ..ids import utcnow
from . import schema
from .database import Database

O = schema.outbox  # noqa: E741 - the one-letter table alias the catalogue modules use


class PendingEvent(NamedTuple):
    seq: int
    event_id: str
    type: str
    key: str
    payload: str  # the CloudEvent as published (JSON text)


class StoredEvent(NamedTuple):
    type: str
    payload: str  # the CloudEvent as published (JSON text)


def emit(conn: Connection, kind: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
    """Write one event to the outbox inside the caller's transaction; returns the CloudEvent."""
    event = make_event(kind, key, data)
    conn.execute(
        O.insert().values(
            event_id=event["id"],
            type=event["type"],
            key=key,
            payload=json.dumps(event, separators=(",", ":"), allow_nan=False),
            created_at=utcnow(),
        )
    )
    return event


class OutboxRepo:
    def __init__(self, db: Database):
        self.db = db

    def pending_events(self, limit: int = 500) -> list[PendingEvent]:
        """Unsent events in commit order (``seq``)."""
        with self.db.ro() as conn:
            return [
                PendingEvent(*r)
                for r in conn.execute(
                    select(O.c.seq, O.c.event_id, O.c.type, O.c.key, O.c.payload)
                    .where(O.c.sent_at.is_(None))
                    .order_by(O.c.seq)
                    .limit(limit)
                )
            ]

    def mark_sent(self, seqs: list[int]) -> None:
        if seqs:
            with self.db.tx() as conn:
                conn.execute(update(O).where(O.c.seq.in_(seqs)).values(sent_at=utcnow()))

    def pending_count(self) -> int:
        with self.db.ro() as conn:
            return int(conn.execute(select(func.count()).select_from(O).where(O.c.sent_at.is_(None))).scalar_one())

    def events_for(self, key: str) -> list[StoredEvent]:
        with self.db.ro() as conn:
            return [
                StoredEvent(*r)
                for r in conn.execute(select(O.c.type, O.c.payload).where(O.c.key == key).order_by(O.c.seq))
            ]
