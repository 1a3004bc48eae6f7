"""PostgreSQL metadata: the connection pool, versioned migrations and advisory locks.

Every process of a region (or of the directory) shares one database. A store connects on
first use: it creates its pool, then brings the schema up to date under an advisory
lock, so processes starting together never run a migration twice.

The stores themselves are in :mod:`geodrop.metadata.postgres_transfers` and
:mod:`geodrop.metadata.postgres_inbox`; their schemas in
:mod:`geodrop.metadata.postgres_schema`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from geodrop.errors import ConfigError
from geodrop.metadata.locks import KeyedLocks
from geodrop.metadata.postgres_schema import Migration

logger = logging.getLogger(__name__)

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# Advisory lock namespaces (the first int of PostgreSQL's two-int lock key; the second is
# hashtext(key)), so that an upload, a sender and a job of the same name never share a
# lock. Two keys of one namespace whose hashes collide (one chance in 2**32) only
# serialise each other, which is safe.
MIGRATION_LOCKS: Final = 0x6764_0001
UPLOAD_LOCKS: Final = 0x6764_0002
SENDER_LOCKS: Final = 0x6764_0003
JOB_LOCKS: Final = 0x6764_0004

# How often a lock another process holds is asked for again: from the first figure,
# doubling up to the second.
POLL_FIRST_SECONDS: Final = 0.005
POLL_MOST_SECONDS: Final = 0.05

# Errors that mean the connection itself is gone (the server restarted, the network broke).
CONNECTION_ERRORS: Final = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
)


def describe(dsn: str) -> str:
    """The DSN without its credentials, for messages and logs."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def migrate(
    connection: Connection, component: str, migrations: tuple[Migration, ...], where: str
) -> None:
    """Upgrade ``component``'s tables to the last of ``migrations``, one transaction per step.

    Runs under one advisory lock for every component of the database, so processes
    starting at once wait for each other instead of racing (even ``CREATE TABLE IF NOT
    EXISTS`` may fail when two sessions run it together). The lock is a session lock: a
    process that dies while migrating releases it. A step that fails leaves the
    version before it.

    Raises:
        ConfigError: the database holds a newer version than this geodrop knows.
    """
    await connection.execute("SELECT pg_advisory_lock($1::int4, 0)", MIGRATION_LOCKS)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        latest = len(migrations)
        while True:
            async with connection.transaction():
                version: int = (
                    await connection.fetchval(
                        "SELECT version FROM schema_version WHERE component = $1", component
                    )
                    or 0
                )
                if version > latest:
                    raise ConfigError(
                        f"{where}: metadata schema version {version} of {component!r} is newer than"
                        f" this geodrop knows ({latest}); upgrade geodrop or use another"
                        " database"
                    )
                if version == latest:
                    return
                for statement in migrations[version]:
                    await connection.execute(statement)
                await connection.execute(
                    "INSERT INTO schema_version (component, version) VALUES ($1, $2)"
                    " ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
                    component,
                    version + 1,
                )
            logger.info("metadata %s: schema version %d", component, version + 1)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1::int4, 0)", MIGRATION_LOCKS)


class PostgresDatabase:
    """One component's view of a PostgreSQL database: a lazily created pool, migrated once.

    Args:
        dsn: a ``postgresql://`` URL.
        pool_size: the most connections the pool opens (dedicated connections for
            locks and notifications come on top).
        component: the name its schema version is recorded under.
        migrations: the component's migrations, oldest first.
    """

    def __init__(
        self, dsn: str, pool_size: int, component: str, migrations: tuple[Migration, ...]
    ) -> None:
        self.dsn = dsn
        self._pool_size = pool_size
        self._component = component
        self._migrations = migrations
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        # Created on first use, inside the event loop that uses it.
        self._opening: asyncio.Lock | None = None

    async def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        """The pool, created (and the schema migrated) by the first caller.

        Raises:
            ConfigError: the database is of a newer schema than this geodrop.
        """
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self._pool_size)
                try:
                    async with pool.acquire() as connection:
                        await migrate(
                            connection, self._component, self._migrations, describe(self.dsn)
                        )
                except BaseException:
                    pool.terminate()
                    raise
                self._pool = pool
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection of the pool for the block (statements commit one by one)."""
        pool = await self.pool()
        async with pool.acquire() as connection:
            yield connection

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[Connection]:
        """A connection of the pool in a transaction that commits when the block ends.

        Args:
            durable: the commit returns once it is on disk (the server's own setting).
                False: without waiting for that (``synchronous_commit = off`` for this
                transaction only): a crash of the database server may undo it, never
                its consistency. For the bookkeeping SQLite commits lazily too
                (geodrop.metadata.sqlite).
        """
        pool = await self.pool()
        async with pool.acquire() as connection, connection.transaction():
            if not durable:
                await connection.execute("SET LOCAL synchronous_commit = off")
            yield connection

    async def connect(self) -> asyncpg.Connection[asyncpg.Record]:
        """A connection of its own (not from the pool), to a migrated database."""
        await self.pool()
        return await asyncpg.connect(self.dsn)

    async def close(self) -> None:
        """Close the pool (a later call opens it again)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


class LockWaitExpired(TimeoutError):
    """A lock was not free within the time its holder was willing to wait."""


class AdvisoryLocks:
    """Session advisory locks of one process, all held on one connection of their own.

    A lock held for a block keeps no pool connection busy (a PATCH may stream for
    minutes, and the block's own queries need the pool). One session may hold many locks;
    since a session takes a lock it already holds again (PostgreSQL counts them), tasks of
    this process first queue on an in-process lock per key, then ask the database. A lock
    is never waited for in the database (that would block the shared connection): it is
    asked for again and again with ``pg_try_advisory_lock``.

    If the connection is lost, PostgreSQL releases its locks at once; a block then in
    progress finishes without them.
    """

    def __init__(self, database: PostgresDatabase) -> None:
        self._database = database
        self._session: asyncpg.Connection[asyncpg.Record] | None = None
        self._using: asyncio.Lock | None = None  # one statement at a time on the session
        self._local = KeyedLocks()
        self._tried: set[tuple[int, str]] = set()
        self._releasing: set[asyncio.Task[None]] = set()

    async def _call(
        self,
        query: str,
        namespace: int,
        key: str,
        session: asyncpg.Connection[asyncpg.Record] | None = None,
    ) -> tuple[bool, asyncpg.Connection[asyncpg.Record]]:
        """Run a lock statement on the session; returns its answer and the session asked.

        Given a ``session``, the statement runs only if that session is still the current
        one (answer False otherwise: its locks are gone with it). Without, a lost session
        is replaced and the statement asked once more.
        """
        if self._using is None:
            self._using = asyncio.Lock()
        async with self._using:
            if session is not None:
                if session is not self._session or session.is_closed():
                    return False, session
                return await self._ask(query, namespace, key), session
            try:
                return await self._ask(query, namespace, key), self._current()
            except CONNECTION_ERRORS:
                return await self._ask(query, namespace, key), self._current()

    def _current(self) -> asyncpg.Connection[asyncpg.Record]:
        assert self._session is not None
        return self._session

    async def _ask(self, query: str, namespace: int, key: str) -> bool:
        if self._session is None or self._session.is_closed():
            self._session = await self._database.connect()
        session = self._session
        try:
            return bool(await session.fetchval(query, namespace, key))
        except CONNECTION_ERRORS:
            session.terminate()
            self._session = None
            raise

    async def _try_lock(
        self, namespace: int, key: str
    ) -> asyncpg.Connection[asyncpg.Record] | None:
        """The session now holding the lock, or None if another process holds it.

        Cancelled while the database answers, the lock may be taken regardless: the
        statement is left to finish and what it took is given back.
        """
        attempt = asyncio.ensure_future(
            self._call("SELECT pg_try_advisory_lock($1::int4, hashtext($2))", namespace, key)
        )
        try:
            taken, session = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            self._spawn(self._give_back(attempt, namespace, key))
            raise
        return session if taken else None

    async def _give_back(
        self,
        attempt: asyncio.Future[tuple[bool, asyncpg.Connection[asyncpg.Record]]],
        namespace: int,
        key: str,
    ) -> None:
        try:
            taken, session = await attempt
        except Exception:  # the statement failed: nothing was taken
            return
        if taken:
            await self._unlock(namespace, key, session)

    async def _unlock(
        self, namespace: int, key: str, session: asyncpg.Connection[asyncpg.Record]
    ) -> None:
        try:
            await self._call(
                "SELECT pg_advisory_unlock($1::int4, hashtext($2))", namespace, key, session
            )
        except CONNECTION_ERRORS:
            logger.warning("advisory lock %s: connection lost while releasing", key)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
        return task

    async def _release(
        self, namespace: int, key: str, session: asyncpg.Connection[asyncpg.Record]
    ) -> None:
        # Shielded: a cancelled holder still gives the lock back.
        await asyncio.shield(self._spawn(self._unlock(namespace, key, session)))

    @asynccontextmanager
    async def hold(self, namespace: int, key: str, within: float | None) -> AsyncIterator[None]:
        """Hold the lock of ``key`` in ``namespace`` across every process while the block runs.

        Raises:
            LockWaitExpired: it was not free within ``within`` seconds (None: wait forever).
        """
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        queued = False
        try:
            async with self._local.hold(f"{namespace}:{key}", within):
                queued = True
                session = await self._acquire(namespace, key, deadline)
                try:
                    yield
                finally:
                    await self._release(namespace, key, session)
        except TimeoutError as exc:
            # A TimeoutError of the block itself passes through unchanged.
            if queued or isinstance(exc, LockWaitExpired):
                raise
            raise LockWaitExpired(key) from None

    async def _acquire(
        self, namespace: int, key: str, deadline: float | None
    ) -> asyncpg.Connection[asyncpg.Record]:
        loop = asyncio.get_running_loop()
        delay = POLL_FIRST_SECONDS
        while (session := await self._try_lock(namespace, key)) is None:
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise LockWaitExpired(key)
                delay = min(delay, left)
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MOST_SECONDS)
        return session

    @asynccontextmanager
    async def try_hold(self, namespace: int, key: str) -> AsyncIterator[bool]:
        """Hold the lock of ``key`` if it is free now; yields whether it was. Never waits."""
        local = (namespace, key)
        if local in self._tried:
            yield False
            return
        self._tried.add(local)
        try:
            session = await self._try_lock(namespace, key)
            if session is None:
                yield False
                return
            try:
                yield True
            finally:
                await self._release(namespace, key, session)
        finally:
            self._tried.discard(local)

    async def close(self) -> None:
        """Give back every lock (by closing the session)."""
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
