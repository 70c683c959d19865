"""The SQLite connection: pragmas, versioned migrations and transactions.

One aiosqlite connection serves the whole bot. aiosqlite runs every statement on its
own thread in order, so the event loop never waits on the disk. Because that one
connection is shared by every coroutine, an ``asyncio.Lock`` keeps a transaction's
statements from interleaving with another task's: while one task is inside
``db.transaction()``, other tasks' statements wait for it to end.

Migrations are numbered files ``NNNN_name.sql`` shipped in ``bot/storage/migrations``.
Each is applied in one transaction together with ``PRAGMA user_version``, so a failure
leaves the database exactly at the previous version. Never edit a shipped migration:
add the next number instead. A migration file must not contain BEGIN/COMMIT itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Self

import aiosqlite

log = logging.getLogger(__name__)

# Long enough to ride out another process's checkpoint or a CLI purge, short enough
# that a stuck lock surfaces as an error instead of a silently hung command.
DEFAULT_BUSY_TIMEOUT_MS = 5_000

Params = Sequence[Any] | Mapping[str, Any]
Row = sqlite3.Row

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# Which Database (if any) the current task is inside a transaction of. A context var
# rather than an attribute, so only code running inside the transaction (the task that
# opened it) skips the lock; every other task waits its turn.
_inside: ContextVar[Database | None] = ContextVar("atelier_db_transaction", default=None)


class DatabaseError(Exception):
    """The database cannot be used as it is; the message says why and what to do."""


class SchemaTooNewError(DatabaseError):
    """The database was migrated by a newer Atelier than this one."""


class MigrationError(DatabaseError):
    """A migration is malformed or failed; the database stays at its previous version."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def default_migrations() -> Traversable:
    # importlib.resources works from a wheel or zip too, not only a source checkout.
    return resources.files("bot.storage") / "migrations"


def load_migrations(source: Traversable | None = None) -> list[Migration]:
    """Read ``NNNN_name.sql`` files, numbered 1, 2, 3... without gaps or duplicates."""
    folder = source if source is not None else default_migrations()
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match[1])
        if version in found:
            raise MigrationError(f"two migrations share number {version:04d}")
        found[version] = Migration(version, match[2], entry.read_text(encoding="utf-8"))
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration numbers must run 1, 2, 3... without gaps: {versions}")
    return [found[v] for v in versions]


def split_statements(script: str) -> list[str]:
    """Split an SQL script into statements, respecting quotes, comments and triggers.

    Needed because ``executescript`` commits any open transaction first, which would
    break the one-transaction-per-migration rule. SQLite's own tokenizer
    (``complete_statement``) decides where a statement ends.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if _has_code(buffer):
        raise MigrationError(f"unterminated SQL statement: {buffer.strip()[:80]!r}")
    return statements


def _has_code(sql: str) -> bool:
    lines = (line.split("--", 1)[0] for line in sql.splitlines())
    return any(line.strip(" \t;") for line in lines)


class Database:
    """The bot's SQLite database. Create it with ``await Database.open(path)``."""

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self._conn = connection
        self.path = path
        self._lock = asyncio.Lock()
        self._depth = 0  # nesting level of the open transaction (savepoints)
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        migrations: Traversable | None = None,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> Self:
        """Open (creating folders and file as needed), configure and migrate."""
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: sqlite3 opens no hidden transactions; we issue BEGIN.
        connection = await aiosqlite.connect(path, isolation_level=None)
        db = cls(connection, path)
        try:
            await db._configure(busy_timeout_ms)
            await db._migrate(load_migrations(migrations))
            # Off during migrations (see _migrate); on for everything the bot does.
            await connection.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            await connection.close()
            raise
        return db

    async def _configure(self, busy_timeout_ms: int) -> None:
        conn = self._conn
        conn.row_factory = sqlite3.Row
        # First, so that switching to WAL also waits for another process's lock.
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        async with conn.execute("PRAGMA journal_mode = WAL") as cursor:
            row = await cursor.fetchone()
        mode = str(row[0]) if row is not None else "?"
        if mode.lower() != "wal":  # e.g. ":memory:" databases cannot use WAL
            log.warning("SQLite journal_mode is %s, not WAL, for %s", mode, self.path)
        # Safe with WAL: a power cut may lose the last commits but never corrupts.
        await conn.execute("PRAGMA synchronous = NORMAL")

    async def _migrate(self, migrations: list[Migration]) -> None:
        known = migrations[-1].version if migrations else 0
        current = await self.schema_version()
        if current > known:
            raise SchemaTooNewError(
                f"database {self.path} has schema version {current}, but this Atelier "
                f"only knows versions up to {known}; run a newer Atelier or restore a "
                "backup (refusing to touch it)"
            )
        pending = [m for m in migrations if m.version > current]
        if not pending:
            return
        # A later migration that rebuilds a table (SQLite's create-copy-drop-rename)
        # would otherwise cascade deletes into child tables when it drops the old one.
        # Integrity is checked with foreign_key_check before each commit instead.
        await self._conn.execute("PRAGMA foreign_keys = OFF")
        for migration in pending:
            await self._apply(migration)

    async def _apply(self, migration: Migration) -> None:
        conn = self._conn
        # IMMEDIATE takes the write lock now: two processes starting at once migrate
        # one after the other instead of both trying.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            if await self.schema_version() >= migration.version:
                await conn.execute("ROLLBACK")  # the other process got here first
                return
            for statement in split_statements(migration.sql):
                await conn.execute(statement)
            async with conn.execute("PRAGMA foreign_key_check") as cursor:
                broken = list(await cursor.fetchall())
            if broken:
                raise MigrationError(f"leaves {len(broken)} broken foreign keys")
            # user_version lives in the file header and is part of this transaction.
            await conn.execute(f"PRAGMA user_version = {migration.version}")
            await conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            if isinstance(exc, Exception):
                raise MigrationError(
                    f"migration {migration.label} failed, database {self.path} left at "
                    f"version {migration.version - 1}: {exc}"
                ) from exc
            raise
        log.info("applied migration %s to %s", migration.label, self.path)

    async def schema_version(self) -> int:
        """The number of the last migration applied (``PRAGMA user_version``)."""
        async with self._conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def close(self) -> None:
        """Wait for any open transaction, then close. Safe to call twice."""
        if self._closed:
            return
        async with self._turn():
            if self._closed:  # a concurrent close() got the lock first
                return
            self._closed = True
            # Recommended by SQLite before closing a long-lived connection: cheap, and
            # keeps query plans good as tables grow.
            await self._conn.execute("PRAGMA optimize")
            await self._conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- statements ----------------------------------------------------------

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Run outside of other tasks' transactions; inside our own, run straight away."""
        if _inside.get() is self:
            yield
        else:
            async with self._lock:
                yield

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        async with self._turn(), self._conn.execute(sql, params) as cursor:
            return cursor.rowcount

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> int:
        async with self._turn(), self._conn.executemany(sql, rows) as cursor:
            return cursor.rowcount

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        # fetchall, not fetchone: a RETURNING statement must run to completion.
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._turn(), self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Group statements: all of them commit, or (on any exception) none do.

        Nested use becomes a SAVEPOINT, so a repository method that opens its own
        transaction composes into a caller's. Keep transactions short and free of
        network awaits: other tasks' database calls wait while one is open.
        """
        if _inside.get() is self:
            async with self._savepoint():
                yield
            return
        async with self._lock:
            # IMMEDIATE: take the write lock up front so another process can never make
            # us fail half way with SQLITE_BUSY when a read would upgrade to a write.
            await self._conn.execute("BEGIN IMMEDIATE")
            token = _inside.set(self)
            try:
                yield
            except BaseException:
                # SQLite rolls back by itself on some errors (disk full, I/O); a second
                # ROLLBACK would then raise and hide the real error.
                if self._conn.in_transaction:
                    await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")
            finally:
                _inside.reset(token)

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        self._depth += 1
        name = f"atelier_sp_{self._depth}"
        await self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:
                await self._conn.execute(f"ROLLBACK TO {name}")
                await self._conn.execute(f"RELEASE {name}")
            raise
        else:
            await self._conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1
