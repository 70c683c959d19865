"""Database: pragmas, migrations and transactions, on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage.database import (
    Database,
    MigrationError,
    SchemaTooNewError,
    default_migrations,
    load_migrations,
    split_statements,
)

SHIPPED = load_migrations()
LATEST = SHIPPED[-1].version
NEXT = f"{LATEST + 1:04d}"  # the number a test's extra migration takes
TABLES = {
    "guilds",
    "requests",
    "favourites",
    "favourite_totals",
    "styles",
    "style_defaults",
    "guild_settings",
    "member_prefs",
}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "atelier.sqlite3")
    yield database
    await database.close()


def migrations_with(tmp_path: Path, extra: dict[str, str]) -> Path:
    """A migrations folder: the shipped files plus ``extra`` (name -> SQL)."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for entry in default_migrations().iterdir():
        if entry.name.endswith(".sql"):
            (folder / entry.name).write_text(entry.read_text(encoding="utf-8"))
    for name, sql in extra.items():
        (folder / name).write_text(sql)
    return folder


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def names(db: Database, kind: str) -> set[str]:
    rows = await db.fetch_all(
        "SELECT name FROM sqlite_schema WHERE type = ? AND name NOT LIKE 'sqlite_%'", (kind,)
    )
    return {row["name"] for row in rows}


async def test_migrates_from_zero_into_new_folders(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there.sqlite3"
    async with await Database.open(path) as db:
        assert await db.schema_version() == LATEST == 2
        assert await names(db, "table") == TABLES
        assert await names(db, "index") == {
            "guilds_left_at",
            "requests_guild",
            "requests_guild_user",
            "requests_guild_command",
            "requests_undelivered",
            "requests_unfinished",
            "favourites_guild_user",
            "favourite_totals_recent",
            "favourite_totals_author_recent",
            "favourite_totals_command_recent",
            "favourite_totals_fame",
            "favourite_totals_command_fame",
            "favourite_totals_taste",
        }
    assert user_version(path) == LATEST


async def test_pragmas(db: Database) -> None:
    async def pragma(name: str) -> object:
        row = await db.fetch_one(f"PRAGMA {name}")
        assert row is not None
        return row[0]

    assert await pragma("journal_mode") == "wal"
    assert await pragma("foreign_keys") == 1
    assert await pragma("synchronous") == 1  # NORMAL
    assert await pragma("busy_timeout") == 5000


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute(
            "INSERT INTO requests (guild_id, channel_id, user_id, command, created_at)"
            " VALUES (999, 1, 1, 'poem', '2025-01-01T00:00:00.000000+00:00')"
        )


async def test_reopening_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await Database.open(path) as db:
        await db.execute("INSERT INTO guilds (id, joined_at) VALUES (1, 'x')")
    for _ in range(2):
        async with await Database.open(path) as db:
            assert await db.schema_version() == LATEST
            assert len(await db.fetch_all("SELECT * FROM guilds")) == 1


async def test_failing_migration_rolls_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await Database.open(path) as db:
        await db.execute("INSERT INTO guilds (id, joined_at) VALUES (1, 'x')")
    broken = migrations_with(
        tmp_path,
        {
            f"{NEXT}_broken.sql": """
                CREATE TABLE extra (x INTEGER);
                INSERT INTO extra VALUES (1);
                ALTER TABLE guilds ADD COLUMN note TEXT;
                DELETE FROM guilds;
                SELECT * FROM no_such_table;  -- fails here
            """
        },
    )
    with pytest.raises(MigrationError, match=rf"{NEXT}_broken.*version {LATEST}.*no_such_table"):
        await Database.open(path, migrations=broken)

    assert user_version(path) == LATEST
    async with await Database.open(path) as db:
        assert await names(db, "table") == TABLES
        rows = await db.fetch_all("SELECT * FROM guilds")
        assert [tuple(row.keys()) for row in rows] == [("id", "joined_at", "left_at")]


async def test_later_migration_applies_on_top(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await Database.open(path):
        pass
    folder = migrations_with(
        tmp_path, {f"{NEXT}_notes.sql": "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"}
    )
    async with await Database.open(path, migrations=folder) as db:
        assert await db.schema_version() == LATEST + 1
        assert "notes" in await names(db, "table")
        # foreign keys are back on after migrating with them off
        row = await db.fetch_one("PRAGMA foreign_keys")
        assert row is not None and row[0] == 1


async def test_migration_breaking_foreign_keys_is_refused(tmp_path: Path) -> None:
    folder = migrations_with(
        tmp_path,
        {
            f"{NEXT}_orphan.sql": "INSERT INTO requests (guild_id, channel_id, user_id, command,"
            " created_at) VALUES (42, 1, 1, 'poem', 'x');"
        },
    )
    path = tmp_path / "db.sqlite3"
    with pytest.raises(MigrationError, match="foreign key"):
        await Database.open(path, migrations=folder)
    assert user_version(path) == LATEST


async def test_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await Database.open(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 5}")
    with pytest.raises(SchemaTooNewError, match=rf"version {LATEST + 5}.*up to {LATEST}"):
        await Database.open(path)
    assert user_version(path) == LATEST + 5


@pytest.mark.parametrize(
    "files",
    [
        {f"{LATEST + 2:04d}_gap.sql": "SELECT 1;"},
        {f"{NEXT}_a.sql": "SELECT 1;", f"{NEXT}_b.sql": "SELECT 1;"},
        {f"{LATEST:04d}_again.sql": "SELECT 1;"},
        {"2_short.sql": "SELECT 1;"},
    ],
)
def test_malformed_migration_sets_are_rejected(tmp_path: Path, files: dict[str, str]) -> None:
    with pytest.raises(MigrationError):
        load_migrations(migrations_with(tmp_path, files))


def test_statement_splitting_respects_sql_syntax() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE t (x TEXT DEFAULT 'a;b');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN
            UPDATE t SET x = 'c;d';
            DELETE FROM t WHERE 0;
        END;
        SELECT 1
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(MigrationError, match="unterminated"):
        split_statements("SELECT 'open")


async def test_transaction_commits_or_rolls_back(db: Database) -> None:
    async with db.transaction():
        await db.execute("INSERT INTO guilds (id, joined_at) VALUES (1, 'x')")
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.execute("INSERT INTO guilds (id, joined_at) VALUES (2, 'x')")
            raise RuntimeError("boom")
    rows = await db.fetch_all("SELECT id FROM guilds")
    assert [row["id"] for row in rows] == [1]


async def test_nested_transaction_is_a_savepoint(db: Database) -> None:
    async with db.transaction():
        await db.execute("INSERT INTO guilds (id, joined_at) VALUES (1, 'x')")
        with pytest.raises(RuntimeError):
            async with db.transaction():
                await db.execute("INSERT INTO guilds (id, joined_at) VALUES (2, 'x')")
                raise RuntimeError("inner only")
        async with db.transaction():
            await db.execute("INSERT INTO guilds (id, joined_at) VALUES (3, 'x')")
    rows = await db.fetch_all("SELECT id FROM guilds ORDER BY id")
    assert [row["id"] for row in rows] == [1, 3]


async def test_other_tasks_never_see_inside_an_open_transaction(db: Database) -> None:
    inserted = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        with pytest.raises(RuntimeError):
            async with db.transaction():
                await db.execute("INSERT INTO guilds (id, joined_at) VALUES (1, 'x')")
                inserted.set()
                await release.wait()
                raise RuntimeError("roll back")

    writing = asyncio.create_task(writer())
    await inserted.wait()
    # On the shared connection this read would otherwise run inside the writer's
    # transaction and see its uncommitted row.
    reading = asyncio.create_task(db.fetch_all("SELECT id FROM guilds"))
    await asyncio.sleep(0.05)
    assert not reading.done()
    release.set()
    await writing
    assert await reading == []


async def test_close_is_idempotent(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite3")
    await asyncio.gather(db.close(), db.close())
    await db.close()
