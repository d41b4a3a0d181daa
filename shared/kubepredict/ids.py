"""Opaque ids with readable prefixes, and UTC timestamps in one format."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import overload


def new_id(prefix: str) -> str:
    """``ds_…``, ``mdl_…``, ``job_…``: prefix + 16 random hex chars (unguessable, DNS-1123 friendly)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@overload
def iso(ts: datetime) -> str: ...
@overload
def iso(ts: None) -> None: ...
def iso(ts: datetime | None) -> str | None:
    """Format a naive-UTC timestamp as ``2026-11-28T21:40:00.123Z``."""
    if ts is None:
        return None
    return ts.isoformat(timespec="milliseconds") + "Z"
