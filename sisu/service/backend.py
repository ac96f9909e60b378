"""A process's handle on the database for the service layer: one pooled SQLAlchemy engine, used
both for sisu's own SQL (through its psycopg connection) and by a DBOS client for enqueueing —
so a run row and its workflow can be written in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from sisu import engine as sisu_engine
from sisu import names
from sisu.db.url import redact, sqlalchemy_url
from sisu.errors import DatabaseUnavailable
from sisu.service.policy import QueuePolicy

if TYPE_CHECKING:
    import sqlalchemy as sa
    from dbos import DBOSClient

    from sisu.config import Settings

Cursor = psycopg.Cursor[dict[str, Any]]


class Backend:
    def __init__(
        self,
        url: str,
        *,
        app_version: str,
        run_policy: dict[str, Any] | None = None,
        queue_policy: QueuePolicy | None = None,
        pool_size: int = 5,
        pooled: bool = True,
    ) -> None:
        self.url = url
        # A one-shot process (a CLI command) reads on a plain psycopg connection: no pool to
        # warm up, and no SQLAlchemy to import, which is most of a read command's start-up.
        self.pooled = pooled
        self.app_version = app_version
        # Passed to every new run's workflow: how often and how patiently a step is retried.
        self.run_policy = run_policy or {
            "maxAttempts": names.DEFAULT_STEP_MAX_ATTEMPTS,
            "backoffSeconds": names.DEFAULT_STEP_BACKOFF_SECONDS,
        }
        self.queue_policy = queue_policy or QueuePolicy()
        self.pool_size = pool_size

    @classmethod
    def from_settings(
        cls, url: str, settings: Settings, *, pool_size: int = 5, pooled: bool = True
    ) -> Backend:
        return cls(
            url,
            app_version=settings.app_version,
            run_policy={
                "maxAttempts": settings.step_max_attempts,
                "backoffSeconds": settings.step_backoff_seconds,
            },
            queue_policy=QueuePolicy.from_settings(settings),
            pool_size=pool_size,
            pooled=pooled,
        )

    @cached_property
    def engine(self) -> sa.Engine:
        import sqlalchemy as sa

        return sa.create_engine(
            sqlalchemy_url(self.url),
            pool_size=self.pool_size,
            max_overflow=self.pool_size,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5, "application_name": "sisu"},
        )

    @cached_property
    def client(self) -> DBOSClient:
        sisu_engine.quiet_dbos_logs()
        from dbos import DBOSClient

        return DBOSClient(
            system_database_engine=self.engine,
            dbos_system_schema=sisu_engine.DBOS_SCHEMA,
            application_name=sisu_engine.APP_NAME,
            lazy=True,
            retry_connection_errors=False,
        )

    @contextmanager
    def _translated(self) -> Iterator[None]:
        import sqlalchemy.exc

        try:
            yield
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            raise DatabaseUnavailable(
                f"database {redact(self.url)} unavailable: {' '.join(str(exc.orig).split())}"
            ) from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"database {redact(self.url)} unavailable: {' '.join(str(exc).split())}"
            ) from exc

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        if not self.pooled and "engine" not in self.__dict__:
            try:
                direct = psycopg.connect(self.url, connect_timeout=5, application_name="sisu")
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(
                    f"database {redact(self.url)} unavailable: {' '.join(str(exc).split())}"
                ) from exc
            try:
                with direct, direct.cursor(row_factory=dict_row) as cur:
                    yield cur
            except psycopg.OperationalError as exc:
                # The server went away mid-read (a restart): the same error as failing to
                # connect, so a command that keeps reading (`sisu top`) can wait it out.
                raise DatabaseUnavailable(
                    f"database {redact(self.url)} unavailable: {' '.join(str(exc).split())}"
                ) from exc
            return
        with self._translated(), self.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.cursor(row_factory=dict_row) as cur:
                yield cur

    @contextmanager
    def autocommit(self) -> Iterator[Cursor]:
        """A cursor whose statements each commit on their own: for a write that is a single
        statement, atomic by itself, it spares the BEGIN and COMMIT round trips."""
        with self._translated(), self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.cursor(row_factory=dict_row) as cur:
                yield cur

    @contextmanager
    def transaction(self) -> Iterator[tuple[sa.Connection, Cursor]]:
        """One transaction: `sa.Connection` for DBOS calls, a cursor on the same connection for
        sisu's queries. Commits on a clean exit."""
        with self._translated(), self.engine.begin() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.cursor(row_factory=dict_row) as cur:
                yield conn, cur

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.destroy()
        if "engine" in self.__dict__:
            self.engine.dispose()
