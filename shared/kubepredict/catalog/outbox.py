"""Outbox repository: events written with each state change, read and marked by the relay."""

from __future__ import annotations

from sqlalchemy import func, select, update

from ..ids import utcnow
from . import schema

O = schema.outbox


class OutboxRepo:
    def pending_events(self, limit: int = 500) -> list:
        """Unsent events in commit order (``seq``)."""
        with self.ro() as conn:
            return conn.execute(select(O.c.seq, O.c.event_id, O.c.type, O.c.key, O.c.payload)
                                .where(O.c.sent_at.is_(None)).order_by(O.c.seq).limit(limit)).all()

    def mark_sent(self, seqs: list[int]) -> None:
        if seqs:
            with self.tx() as conn:
                conn.execute(update(O).where(O.c.seq.in_(seqs)).values(sent_at=utcnow()))

    def pending_count(self) -> int:
        with self.ro() as conn:
            return conn.execute(select(func.count()).select_from(O).where(O.c.sent_at.is_(None))).scalar_one()

    def events_for(self, key: str) -> list:
        with self.ro() as conn:
            return conn.execute(select(O.c.type, O.c.payload).where(O.c.key == key).order_by(O.c.seq)).all()
