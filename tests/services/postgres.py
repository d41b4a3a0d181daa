"""PostgreSQL 15 throwaway cluster on 127.0.0.1 (Debian's postgresql package).

``initdb`` refuses to run as root, so as root initdb and the server run as the
``postgres`` system user (Popen ``user=``); as any other user, as that user. Trust
auth, no fsync: a test database, nothing more.

    with PostgresServer() as pg:
        url = pg.create_database()          # postgresql+psycopg://postgres@127.0.0.1:PORT/tXXXX
        ...
        pg.drop_database(url)
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

from . import LOOPBACK, SETUP_HINT, Service, ServiceUnavailable, free_port, unique_name, wait_until

PG_VERSION = os.environ.get("KUBEPREDICT_PG_VERSION", "15")
PG_BIN = Path(os.environ.get("KUBEPREDICT_PG_BIN", f"/usr/lib/postgresql/{PG_VERSION}/bin"))
SUPERUSER = "postgres"


class PostgresServer(Service):
    name = "postgres"
    start_timeout = 60.0

    def __init__(self, port: int | None = None) -> None:
        super().__init__()
        self.port = port
        self.host = LOOPBACK
        self._user: str | None = None  # run initdb/postgres as this user (when root)
        self._data: Path | None = None

    # -- availability ------------------------------------------------------
    def check_available(self) -> None:
        for tool in ("initdb", "postgres"):
            if not (PG_BIN / tool).exists():
                raise ServiceUnavailable(
                    f"PostgreSQL {PG_VERSION} not installed ({PG_BIN / tool} missing): "
                    f"{SETUP_HINT} or apt-get install postgresql"
                )
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailable(
                    f"running as root but there is no 'postgres' user to run initdb as: {SETUP_HINT}"
                ) from None
            self._user = "postgres"
        try:
            import psycopg  # noqa: F401 - only: is it installed?
        except ImportError:
            raise ServiceUnavailable("psycopg not installed: pip install -r requirements.txt") from None

    # -- lifecycle -----------------------------------------------------------
    def _as_user(self) -> dict:
        if not self._user:
            return {}
        pw = pwd.getpwnam(self._user)
        return {
            "user": pw.pw_uid,
            "group": pw.pw_gid,
            "extra_groups": [],
            "env": {**os.environ, "HOME": pw.pw_dir, "USER": self._user, "LOGNAME": self._user},
        }

    def _start(self) -> None:
        assert self.tmpdir is not None and self.log_path is not None
        if self._user:
            pw = pwd.getpwnam(self._user)
            os.chmod(self.tmpdir, 0o700)
            os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
        self._data = self.tmpdir / "data"
        with open(self.log_path, "ab") as log:
            subprocess.run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self._data),
                    "-U",
                    SUPERUSER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "-N",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=True,
                timeout=120,
                cwd=self.tmpdir,
                **self._as_user(),
            )
        self.port = self.port or free_port()
        # the postmaster runs in the foreground as our child (not daemonized by pg_ctl), so it
        # gets the parent-death signal and is stopped even if the test process is killed
        proc = self._spawn(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self._data),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-p",
                str(self.port),
                "-k",
                str(self.tmpdir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=32MB",
            ],
            cwd=self.tmpdir,
            **self._as_user(),
        )
        wait_until(self._select_1, timeout=self.start_timeout, what="PostgreSQL `select 1`", alive=self._alive(proc))

    def _select_1(self) -> bool:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
            return conn.execute("select 1").fetchone() == (1,)

    def _stop(self) -> None:
        # SIGQUIT = immediate shutdown (SIGTERM, the default, would wait for clients)
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self._data = None

    # -- URLs and per-test cleaning ------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        """libpq connection string (for psycopg.connect)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL using psycopg 3."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def _admin(self):
        import psycopg

        return psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=5)

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        name = name or unique_name("t")
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name_or_url: str) -> None:
        name = name_or_url.rsplit("/", 1)[-1].split("?", 1)[0]
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def reset_schema(self, name_or_url: str, schema: str = "public") -> None:
        """Drop and recreate a schema in an existing database (cheaper than a new DB)."""
        import psycopg

        name = name_or_url.rsplit("/", 1)[-1].split("?", 1)[0]
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
