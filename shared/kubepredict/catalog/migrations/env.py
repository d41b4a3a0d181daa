"""Alembic environment: uses the connection handed in by ``migrate.upgrade`` (or the URL for the CLI)."""

from alembic import context
from sqlalchemy import create_engine

from kubepredict.catalog.schema import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=conn.dialect.name == "sqlite")
    context.run_migrations()


if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url to the catalogue's database URL")
    with create_engine(url).begin() as conn:
        _run(conn)
