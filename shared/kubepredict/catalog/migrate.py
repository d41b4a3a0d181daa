"""Run the Alembic migrations in ``catalog/migrations`` programmatically (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest revision in ``migrations/versions`` (a unit test keeps it equal to Alembic's head).
#: Knowing it lets a process that finds the schema current skip Alembic entirely: a Kubeless call
#: runs in a fresh child process, where importing Alembic and reading the scripts costs ~150 ms.
HEAD_REVISION = "0005"
_PG_LOCK = 727_001  # advisory lock id: one migrator at a time across pods


def alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("select version_num from alembic_version")).scalar()
    except DBAPIError:  # no alembic_version table yet
        return None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe when several processes start at once."""
    if revision == "head" and current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
