"""Favourites at scale: the anthology and hall of fame queries against the naive ways.

Fills a real SQLite file (the bot's schema, through its migrations and triggers) with
requests spread over several servers and members and ``--favourites`` stars in the
measured server, then times, as the bot runs them (``FavouriteRepository`` on the
bot's aiosqlite connection), side by side with naive queries on the same connection:

  index    the repository: keyset cursor over the trigger-kept ``favourite_totals``
           indexes (anthology), LIMIT/OFFSET on the totals index (hall of fame)
  offset   anthology page N by OFFSET on the same totals index (keyset's gain alone)
  naive    GROUP BY over every star of the server, then ORDER BY and OFFSET: what the
           queries cost without the totals table and the cursor

Each figure is the median of ``--repeats`` runs; every naive page is checked to hold the
same creations as the repository's before anything is timed. Usage:

    .venv/bin/python bench/library_bench.py [--favourites 10000] [--requests 20000]
        [--guilds 4] [--members 60] [--page 500] [--repeats 25] [--keep PATH]

See bench/README.md for the measured figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.domain import FavouriteEntry
from bot.storage.database import Database
from bot.storage.library import FavouriteRepository
from bot.storage.repositories import to_db_time

GUILD = 1  # the measured server
PAGE = 10  # entries per page, as /favourites shows them
START = datetime(2024, 1, 1, tzinfo=UTC)
STYLES = (None, "noir", "romantic", "gothic")
COMMANDS = ("poem", "poem", "poem", "script", "critique")

NAIVE_ANTHOLOGY = (
    "SELECT f.request_id, count(*) AS stars, max(f.created_at) AS last_starred_at"
    " FROM favourites AS f WHERE f.guild_id = ? GROUP BY f.request_id"
    " ORDER BY last_starred_at DESC, f.request_id DESC LIMIT ? OFFSET ?"
)
NAIVE_FAME = (
    "SELECT f.request_id, count(*) AS stars FROM favourites AS f WHERE f.guild_id = ?"
    " GROUP BY f.request_id ORDER BY stars DESC, f.request_id DESC LIMIT ? OFFSET ?"
)
NAIVE_EXAMPLES = (
    "SELECT r.id, count(*) AS stars FROM favourites AS f JOIN requests AS r"
    " ON r.id = f.request_id WHERE f.guild_id = ? AND r.command = ? AND r.status = 'done'"
    " AND json_extract(r.inputs, '$.style') IS ?"
    " AND json_extract(r.inputs, '$.continue_of') IS NULL"
    " GROUP BY r.id ORDER BY stars DESC, r.id DESC LIMIT ?"
)
OFFSET_ANTHOLOGY = (
    "SELECT r.*, t.stars, t.last_starred_at FROM favourite_totals AS t JOIN requests AS r"
    " ON r.id = t.request_id WHERE t.guild_id = ?"
    " ORDER BY t.last_starred_at DESC, t.request_id DESC LIMIT ? OFFSET ?"
)


def fill(path: Path, args: argparse.Namespace) -> dict[str, int]:
    """Requests and stars through plain sqlite3 (fast), into the migrated schema: the
    insert triggers keep ``favourite_totals`` exactly as the bot's toggles would."""
    rng = random.Random(args.seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN")
    guilds = range(1, args.guilds + 1)
    conn.executemany(
        "INSERT INTO guilds (id, joined_at) VALUES (?, ?)",
        [(g, to_db_time(START)) for g in guilds],
    )
    # 60% of the requests in the measured server, the rest spread over the others.
    done: dict[int, list[int]] = {g: [] for g in guilds}
    for i in range(args.requests):
        guild = GUILD if i % 5 < 3 or args.guilds == 1 else rng.choice(guilds[1:])
        command = rng.choice(COMMANDS)
        inputs: dict[str, Any] = {"theme": f"theme {i}"}
        if (style := rng.choice(STYLES)) is not None:
            inputs["style"] = style
        if done[guild] and rng.random() < 0.1:
            inputs["continue_of"] = rng.choice(done[guild])
        created = START + timedelta(minutes=i)
        failed = rng.random() < 0.05
        cursor = conn.execute(
            "INSERT INTO requests (guild_id, channel_id, user_id, command, inputs, status,"
            " output, created_at, finished_at, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?)",
            (
                guild,
                100 + guild,
                1000 + rng.randrange(args.members),
                command,
                json.dumps(inputs),
                "failed" if failed else "done",
                None if failed else f"output {i} " * 20,
                to_db_time(created),
                to_db_time(created + timedelta(seconds=20)),
                to_db_time(created + timedelta(seconds=21)),
            ),
        )
        if not failed and cursor.lastrowid is not None:
            done[guild].append(cursor.lastrowid)

    def star(guild: int, wanted: int) -> int:
        # A few creations collect many stars, most get one or two (Zipf-like).
        pool, given, seen = done[guild], 0, set()
        stars = []
        while given < wanted:
            request_id = pool[min(int(rng.paretovariate(1.1)) - 1, len(pool) - 1)]
            if rng.random() < 0.7:
                request_id = rng.choice(pool)
            user_id = 1000 + rng.randrange(args.members)
            if (request_id, user_id) in seen:
                continue
            seen.add((request_id, user_id))
            moment = START + timedelta(seconds=rng.randrange(365 * 86_400))
            stars.append((guild, request_id, user_id, to_db_time(moment)))
            given += 1
        conn.executemany(
            "INSERT INTO favourites (guild_id, request_id, user_id, created_at)"
            " VALUES (?, ?, ?, ?)",
            stars,
        )
        return given

    star(GUILD, args.favourites)
    for guild in guilds[1:]:
        star(guild, args.favourites // 10)
    conn.execute("COMMIT")
    conn.execute("PRAGMA optimize")  # as Database.close() does on every shutdown
    counts = {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("requests", "favourites", "favourite_totals")
    }
    counts["starred here"] = conn.execute(
        "SELECT count(*) FROM favourite_totals WHERE guild_id = ?", (GUILD,)
    ).fetchone()[0]
    counts["stars here"] = conn.execute(
        "SELECT count(*) FROM favourites WHERE guild_id = ?", (GUILD,)
    ).fetchone()[0]
    conn.close()
    return counts


async def median_ms(run: Callable[[], Awaitable[object]], repeats: int) -> float:
    await run()  # warm the page cache and the statement cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def entry_ids(entries: list[FavouriteEntry]) -> list[int]:
    return [entry.request.id for entry in entries]


async def measure(db: Database, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    favourites = FavouriteRepository(db)
    deep = args.page
    offset = (deep - 1) * PAGE

    # The cursor for page ``deep``, found as a member would: page after page.
    walk_start = time.perf_counter()
    before: tuple[str, int] | None = None
    for _ in range(deep - 1):
        page = await favourites.anthology(GUILD, before=before, limit=PAGE)
        before = (to_db_time(page[-1].last_starred_at), page[-1].request.id)
    walk_ms = (time.perf_counter() - walk_start) * 1000

    async def naive(sql: str, *params: Any) -> list[int]:
        return [row[0] for row in await db.fetch_all(sql, params)]

    # The naive queries must answer the same question, or comparing them means nothing.
    first = await favourites.anthology(GUILD, limit=PAGE)
    deep_page = await favourites.anthology(GUILD, before=before, limit=PAGE)
    assert len(deep_page) == PAGE, "not enough starred creations for that page"
    assert entry_ids(first) == await naive(NAIVE_ANTHOLOGY, GUILD, PAGE, 0)
    assert entry_ids(deep_page) == await naive(NAIVE_ANTHOLOGY, GUILD, PAGE, offset)
    assert entry_ids(deep_page) == await naive(OFFSET_ANTHOLOGY, GUILD, PAGE, offset)
    fame = await favourites.hall_of_fame(GUILD, limit=PAGE)
    assert entry_ids(fame) == await naive(NAIVE_FAME, GUILD, PAGE, 0)
    deep_fame = await favourites.hall_of_fame(GUILD, limit=PAGE, offset=offset)
    assert entry_ids(deep_fame) == await naive(NAIVE_FAME, GUILD, PAGE, offset)
    examples = await favourites.examples(GUILD, "poem", "noir", 3)
    assert [r.id for r in examples] == await naive(NAIVE_EXAMPLES, GUILD, "poem", "noir", 3)

    r = args.repeats
    rows = [
        (
            "anthology page 1",
            await median_ms(lambda: favourites.anthology(GUILD, limit=PAGE), r),
            await median_ms(lambda: naive(NAIVE_ANTHOLOGY, GUILD, PAGE, 0), r),
        ),
        (
            f"anthology page {deep} (cursor)",
            await median_ms(lambda: favourites.anthology(GUILD, before=before, limit=PAGE), r),
            await median_ms(lambda: naive(NAIVE_ANTHOLOGY, GUILD, PAGE, offset), r),
        ),
        (
            f"anthology page {deep}, OFFSET on totals",
            await median_ms(lambda: naive(OFFSET_ANTHOLOGY, GUILD, PAGE, offset), r),
            float("nan"),
        ),
        (
            "hall of fame page 1",
            await median_ms(lambda: favourites.hall_of_fame(GUILD, limit=PAGE), r),
            await median_ms(lambda: naive(NAIVE_FAME, GUILD, PAGE, 0), r),
        ),
        (
            f"hall of fame page {deep} (offset)",
            await median_ms(lambda: favourites.hall_of_fame(GUILD, limit=PAGE, offset=offset), r),
            await median_ms(lambda: naive(NAIVE_FAME, GUILD, PAGE, offset), r),
        ),
        (
            "taste examples (poem, noir, 3)",
            await median_ms(lambda: favourites.examples(GUILD, "poem", "noir", 3), r),
            await median_ms(lambda: naive(NAIVE_EXAMPLES, GUILD, "poem", "noir", 3), r),
        ),
        (
            # Worst case: no starred poem has this style, so every one is looked at.
            "taste examples, a style nobody starred",
            await median_ms(lambda: favourites.examples(GUILD, "poem", "unstarred", 3), r),
            await median_ms(lambda: naive(NAIVE_EXAMPLES, GUILD, "poem", "unstarred", 3), r),
        ),
        (
            "toggle a star on and off (2 writes)",
            await median_ms(lambda: toggle_twice(favourites, first[0].request.id), r),
            float("nan"),
        ),
    ]
    rows.append((f"walk pages 1..{deep - 1} by cursor (once)", walk_ms, float("nan")))
    return rows


async def toggle_twice(favourites: FavouriteRepository, request_id: int) -> None:
    for _ in range(2):
        await favourites.toggle(GUILD, request_id, 999_999)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(args.keep) if args.keep else Path(scratch) / "library.sqlite3"
        path.unlink(missing_ok=True)
        async with await Database.open(path):  # create the schema through the migrations
            pass
        start = time.perf_counter()
        counts = fill(path, args)
        fill_s = time.perf_counter() - start
        async with await Database.open(path) as db:
            rows = await measure(db, args)
        size_mb = path.stat().st_size / 1e6

    print(
        f"library_bench: {counts['requests']:,} requests in {args.guilds} servers, "
        f"{counts['favourites']:,} favourites ({counts['stars here']:,} in the measured "
        f"server, on {counts['starred here']:,} creations); SQLite {sqlite3.sqlite_version}; "
        f"filled in {fill_s:.1f} s, file {size_mb:.1f} MB; median of {args.repeats}, "
        f"page size {PAGE}"
    )
    print()
    print(f"| {'query':<40} | {'index ms':>9} | {'naive ms':>9} | {'naive/index':>11} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 11}|{'-' * 13}|")
    for name, ours, theirs in rows:
        naive = "" if theirs != theirs else f"{theirs:9.3f}"  # NaN: no naive line
        ratio = "" if theirs != theirs else f"{theirs / ours:10.1f}x"
        print(f"| {name:<40} | {ours:9.3f} | {naive:>9} | {ratio:>11} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--favourites", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--guilds", type=int, default=4)
    parser.add_argument("--members", type=int, default=60)
    parser.add_argument("--page", type=int, default=500, help="the deep page to time")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", help="write the database here instead of a temp dir")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
