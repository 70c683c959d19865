"""Favourites, styles and settings repositories against a real SQLite file."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.domain import (
    FavouriteEntry,
    GuildSettings,
    NewRequest,
    RequestRecord,
    RequestStatus,
    Style,
)
from bot.storage.database import Database, default_migrations
from bot.storage.library import FavouriteRepository, SettingsRepository, StyleRepository
from bot.storage.repositories import GuildRepository, RequestRepository, to_db_time
from tests.clock import T0, Clock

GUILD, OTHER = 1, 2
AUTHOR, FAN, CRITIC = 10, 20, 30


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "atelier.sqlite3")
    yield database
    await database.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def requests(db: Database, clock: Clock) -> RequestRepository:
    return RequestRepository(db, clock=clock)


@pytest.fixture
def favourites(db: Database, clock: Clock) -> FavouriteRepository:
    return FavouriteRepository(db, clock=clock)


@pytest.fixture
def styles(db: Database, clock: Clock) -> StyleRepository:
    return StyleRepository(db, clock=clock)


@pytest.fixture
def settings(db: Database, clock: Clock) -> SettingsRepository:
    return SettingsRepository(db, clock=clock)


@pytest.fixture
def guilds(db: Database, clock: Clock) -> GuildRepository:
    return GuildRepository(db, clock=clock)


async def creation(
    requests: RequestRepository,
    *,
    guild_id: int | None = GUILD,
    user_id: int = AUTHOR,
    command: str = "poem",
    inputs: dict[str, Any] | None = None,
    status: RequestStatus = RequestStatus.DONE,
) -> RequestRecord:
    """A stored request, finished with ``status`` (left queued for QUEUED)."""
    record = await requests.create(
        NewRequest(
            guild_id=guild_id,
            channel_id=100,
            user_id=user_id,
            command=command,
            inputs={"theme": "rain"} if inputs is None else inputs,
        )
    )
    if status.is_finished:
        await requests.finish(record.id, status, output=f"output of {record.id}")
    found = await requests.get(guild_id, record.id, user_id=user_id)
    assert found is not None
    return found


def ids(entries: list[FavouriteEntry]) -> list[int]:
    return [entry.request.id for entry in entries]


def cursor(entry: FavouriteEntry) -> tuple[str, int]:
    return (to_db_time(entry.last_starred_at), entry.request.id)


async def count(db: Database, table: str, guild_id: int) -> int:
    row = await db.fetch_one(f"SELECT count(*) FROM {table} WHERE guild_id = ?", (guild_id,))
    assert row is not None
    return int(row[0])


async def totals_match_stars(db: Database) -> bool:
    """The trigger-kept totals equal a fresh GROUP BY of the stars."""
    kept = await db.fetch_all(
        "SELECT request_id, guild_id, stars, last_starred_at FROM favourite_totals"
        " ORDER BY request_id"
    )
    fresh = await db.fetch_all(
        "SELECT request_id, guild_id, count(*), max(created_at) FROM favourites"
        " GROUP BY request_id ORDER BY request_id"
    )
    return [tuple(row) for row in kept] == [tuple(row) for row in fresh]


# -- favourites -----------------------------------------------------------------------


async def test_toggle_stars_and_unstars(
    favourites: FavouriteRepository, requests: RequestRepository, clock: Clock
) -> None:
    poem = await creation(requests)
    assert await favourites.stars(GUILD, poem.id) == 0
    assert not await favourites.starred_by(GUILD, poem.id, FAN)

    assert await favourites.toggle(GUILD, poem.id, FAN) == (True, 1)
    assert await favourites.toggle(GUILD, poem.id, AUTHOR) == (True, 2)  # own work too
    assert await favourites.starred_by(GUILD, poem.id, FAN)
    assert await favourites.stars(GUILD, poem.id) == 2

    assert await favourites.toggle(GUILD, poem.id, FAN) == (False, 1)
    assert not await favourites.starred_by(GUILD, poem.id, FAN)
    assert await favourites.starred_by(GUILD, poem.id, AUTHOR)
    assert await favourites.toggle(GUILD, poem.id, AUTHOR) == (False, 0)
    assert await favourites.stars(GUILD, poem.id) == 0
    assert await favourites.anthology(GUILD) == []


@pytest.mark.parametrize(
    "status", [RequestStatus.QUEUED, RequestStatus.FAILED, RequestStatus.CANCELLED]
)
async def test_only_finished_creations_can_be_starred(
    favourites: FavouriteRepository, requests: RequestRepository, status: RequestStatus
) -> None:
    unfinished = await creation(requests, status=status)
    assert await favourites.toggle(GUILD, unfinished.id, FAN) is None
    assert await favourites.stars(GUILD, unfinished.id) == 0
    assert await favourites.toggle(GUILD, 987_654, FAN) is None  # no such creation


async def test_direct_messages_cannot_be_starred(
    favourites: FavouriteRepository, requests: RequestRepository, db: Database
) -> None:
    dm = await creation(requests, guild_id=None)
    assert await favourites.toggle(GUILD, dm.id, FAN) is None
    with pytest.raises(sqlite3.IntegrityError):  # not even by writing the row directly
        await db.execute(
            "INSERT INTO favourites (guild_id, request_id, user_id, created_at)"
            " VALUES (?, ?, ?, 'x')",
            (GUILD, dm.id, FAN),
        )


async def test_the_schema_keeps_stars_inside_their_server(
    favourites: FavouriteRepository, requests: RequestRepository, db: Database
) -> None:
    theirs = await creation(requests, guild_id=OTHER)
    await creation(requests, guild_id=GUILD)
    with pytest.raises(sqlite3.IntegrityError, match="finished creation of that guild"):
        await db.execute(
            "INSERT INTO favourites (guild_id, request_id, user_id, created_at)"
            " VALUES (?, ?, ?, 'x')",
            (GUILD, theirs.id, FAN),
        )
    assert await favourites.toggle(OTHER, theirs.id, FAN) == (True, 1)
    with pytest.raises(sqlite3.IntegrityError, match="unstar and star again"):
        await db.execute("UPDATE favourites SET guild_id = ?", (GUILD,))


async def test_a_second_server_cannot_touch_the_first_ones_favourites(
    favourites: FavouriteRepository, requests: RequestRepository, db: Database
) -> None:
    poem = await creation(requests, inputs={"theme": "rain", "style": "noir"})
    assert await favourites.toggle(GUILD, poem.id, FAN) == (True, 1)
    # A member of the other server (the same person, even) with the first server's id.
    assert await favourites.toggle(OTHER, poem.id, FAN) is None
    assert await favourites.toggle(OTHER, poem.id, CRITIC) is None
    assert await favourites.stars(OTHER, poem.id) == 0
    assert not await favourites.starred_by(OTHER, poem.id, FAN)
    assert await favourites.anthology(OTHER) == []
    assert await favourites.anthology(OTHER, author_id=AUTHOR, command="poem") == []
    assert await favourites.hall_of_fame(OTHER) == []
    assert await favourites.examples(OTHER, "poem", "noir", 5) == []
    assert await favourites.forget_member(OTHER, FAN) == 0
    assert not await requests.delete(OTHER, poem.id)
    # The first server still has all of it.
    assert await favourites.stars(GUILD, poem.id) == 1
    assert await favourites.starred_by(GUILD, poem.id, FAN)
    assert ids(await favourites.anthology(GUILD)) == [poem.id]
    assert [r.id for r in await favourites.examples(GUILD, "poem", "noir", 5)] == [poem.id]
    assert await count(db, "favourites", OTHER) == 0


async def test_anthology_newest_star_first_with_filters(
    favourites: FavouriteRepository, requests: RequestRepository, clock: Clock
) -> None:
    poem = await creation(requests)
    script = await creation(requests, command="script", inputs={"premise": "soup"})
    friends = await creation(requests, user_id=FAN)
    await creation(requests)  # never starred

    first = clock.advance(minutes=1)
    await favourites.toggle(GUILD, poem.id, FAN)
    clock.advance(minutes=1)
    await favourites.toggle(GUILD, script.id, FAN)
    clock.advance(minutes=1)
    await favourites.toggle(GUILD, friends.id, AUTHOR)
    clock.advance(minutes=1)
    newest = clock.advance(minutes=1)
    await favourites.toggle(GUILD, poem.id, CRITIC)  # the poem is starred again: to the front

    entries = await favourites.anthology(GUILD)
    assert ids(entries) == [poem.id, friends.id, script.id]
    assert (entries[0].stars, entries[0].last_starred_at) == (2, newest)
    assert entries[0].request == poem  # the whole record comes back
    assert ids(await favourites.anthology(GUILD, author_id=AUTHOR)) == [poem.id, script.id]
    assert ids(await favourites.anthology(GUILD, command="script")) == [script.id]
    assert ids(await favourites.anthology(GUILD, author_id=FAN, command="poem")) == [friends.id]
    assert await favourites.anthology(GUILD, author_id=FAN, command="script") == []

    # Taking the newest star back moves it to its previous place.
    await favourites.toggle(GUILD, poem.id, CRITIC)
    entries = await favourites.anthology(GUILD)
    assert ids(entries) == [friends.id, script.id, poem.id]
    assert (entries[-1].stars, entries[-1].last_starred_at) == (1, first)
    with pytest.raises(ValueError):
        await favourites.anthology(GUILD, limit=0)


async def walk(favourites: FavouriteRepository, limit: int, **filters: Any) -> list[FavouriteEntry]:
    seen: list[FavouriteEntry] = []
    before: tuple[str, int] | None = None
    while page := await favourites.anthology(GUILD, before=before, limit=limit, **filters):
        assert len(page) <= limit
        seen += page
        before = cursor(page[-1])
    return seen


async def test_keyset_pages_are_complete_even_with_equal_timestamps(
    favourites: FavouriteRepository, requests: RequestRepository, db: Database, clock: Clock
) -> None:
    expected: dict[tuple[int | None, str | None], list[tuple[datetime, int]]] = {}
    async with db.transaction():  # one commit, not hundreds
        for i in range(120):
            author, command = (AUTHOR, FAN)[i % 2], ("poem", "script", "critique")[i % 3]
            record = await creation(requests, user_id=author, command=command)
            if i % 4 == 0:
                clock.advance(seconds=1)  # otherwise several stars share one timestamp
            await favourites.toggle(GUILD, record.id, CRITIC)
            for key in [(None, None), (author, None), (None, command), (author, command)]:
                expected.setdefault(key, []).append((clock.now, record.id))
    for (author_id, command_name), keys in expected.items():
        seen = await walk(favourites, 7, author_id=author_id, command=command_name)
        assert [(e.last_starred_at, e.request.id) for e in seen] == sorted(keys, reverse=True)


async def test_pagination_never_repeats_or_skips_as_new_stars_arrive(
    favourites: FavouriteRepository, requests: RequestRepository, db: Database, clock: Clock
) -> None:
    async with db.transaction():
        records = [await creation(requests) for _ in range(60)]
        for record in records:
            clock.advance(seconds=1)
            await favourites.toggle(GUILD, record.id, FAN)
    newest_first = [r.id for r in reversed(records)]

    seen: list[int] = []
    moved: set[int] = set()
    before: tuple[str, int] | None = None
    while page := await favourites.anthology(GUILD, before=before, limit=8):
        seen += ids(page)
        before = cursor(page[-1])
        # Meanwhile members keep starring: a brand-new creation, one already shown, and
        # one further down (it moves to the front, ahead of where this walk is).
        clock.advance(seconds=1)
        fresh = await creation(requests)
        await favourites.toggle(GUILD, fresh.id, FAN)
        await favourites.toggle(GUILD, seen[0], CRITIC)
        ahead = [i for i in newest_first if i not in seen and i not in moved]
        if ahead:
            moved.add(ahead[-1])
            await favourites.toggle(GUILD, ahead[-1], CRITIC)

    assert len(moved) > 3 and len(seen) > 30
    assert len(seen) == len(set(seen))  # nothing twice
    # Everything that was there and did not move to the front was seen, in order.
    assert seen == [i for i in newest_first if i not in moved]
    # A walk from the top now finds the moved ones first.
    assert set(ids(await favourites.anthology(GUILD, limit=100))) >= moved


async def test_hall_of_fame_most_stars_then_newest(
    favourites: FavouriteRepository, requests: RequestRepository
) -> None:
    old, middle, new, script = [await creation(requests) for _ in range(3)] + [
        await creation(requests, command="script", inputs={"premise": "x"})
    ]
    for record, fans in [(old, 2), (middle, 3), (new, 2), (script, 1)]:
        for fan in range(fans):
            await favourites.toggle(GUILD, record.id, 100 + fan)
    fame = await favourites.hall_of_fame(GUILD)
    assert [(e.request.id, e.stars) for e in fame] == [
        (middle.id, 3),
        (new.id, 2),
        (old.id, 2),
        (script.id, 1),
    ]
    assert ids(await favourites.hall_of_fame(GUILD, limit=2, offset=1)) == [new.id, old.id]
    assert ids(await favourites.hall_of_fame(GUILD, command="script")) == [script.id]
    assert await favourites.hall_of_fame(GUILD, offset=4) == []
    with pytest.raises(ValueError):
        await favourites.hall_of_fame(GUILD, offset=-1)
    with pytest.raises(ValueError):
        await favourites.hall_of_fame(GUILD, limit=0)


async def test_examples_are_the_most_starred_of_that_command_and_style(
    favourites: FavouriteRepository, requests: RequestRepository
) -> None:
    noir = {"theme": "rain", "style": "noir"}
    best = await creation(requests, inputs=noir)
    good = await creation(requests, inputs=noir)
    plain = await creation(requests)  # no style
    continued = await creation(
        requests, inputs={**noir, "continue_of": best.id, "previous": "output"}
    )
    script = await creation(requests, command="script", inputs={"premise": "x", **noir})
    unstarred = await creation(requests, inputs=noir)
    for record, fans in [(best, 3), (good, 1), (plain, 2), (continued, 5), (script, 4)]:
        for fan in range(fans):
            await favourites.toggle(GUILD, record.id, 100 + fan)

    assert [r.id for r in await favourites.examples(GUILD, "poem", "noir", 5)] == [
        best.id,
        good.id,
    ]
    assert [r.id for r in await favourites.examples(GUILD, "poem", "noir", 1)] == [best.id]
    assert [r.id for r in await favourites.examples(GUILD, "poem", None, 5)] == [plain.id]
    assert [r.id for r in await favourites.examples(GUILD, "script", "noir", 5)] == [script.id]
    assert await favourites.examples(GUILD, "poem", "gothic", 5) == []
    examples = await favourites.examples(GUILD, "poem", "noir", 5)
    assert unstarred.id not in [r.id for r in examples]
    assert all(r.output and r.status is RequestStatus.DONE for r in examples)

    # Odd stored inputs (hand-edited, an older version's) never stop a star.
    odd = await creation(requests, inputs={"style": 7, "continue_of": None})
    assert await favourites.toggle(GUILD, odd.id, FAN) == (True, 1)
    assert [r.id for r in await favourites.examples(GUILD, "poem", None, 5)] == [plain.id, odd.id]


async def test_forgetting_a_member_removes_their_stars_and_the_stars_they_got(
    favourites: FavouriteRepository, requests: RequestRepository, db: Database
) -> None:
    theirs = await creation(requests, user_id=FAN)
    mine = await creation(requests)
    also_mine = await creation(requests)
    elsewhere = await creation(requests, guild_id=OTHER)
    await favourites.toggle(GUILD, theirs.id, AUTHOR)
    await favourites.toggle(GUILD, theirs.id, CRITIC)
    await favourites.toggle(GUILD, mine.id, FAN)
    await favourites.toggle(GUILD, also_mine.id, AUTHOR)
    await favourites.toggle(OTHER, elsewhere.id, FAN)

    assert await favourites.forget_member(GUILD, FAN) == 1
    assert await favourites.stars(GUILD, mine.id) == 0
    assert await favourites.stars(OTHER, elsewhere.id) == 1  # the other server keeps it
    assert await requests.forget_member(GUILD, FAN) == 1  # their creation, with its stars
    assert await favourites.stars(GUILD, theirs.id) == 0
    assert ids(await favourites.anthology(GUILD)) == [also_mine.id]
    assert await totals_match_stars(db)


async def test_deleting_a_creation_deletes_its_stars(
    favourites: FavouriteRepository, requests: RequestRepository, db: Database
) -> None:
    doomed = await creation(requests)
    kept = await creation(requests)
    for fan in (FAN, CRITIC):
        await favourites.toggle(GUILD, doomed.id, fan)
        await favourites.toggle(GUILD, kept.id, fan)
    assert await requests.delete(GUILD, doomed.id)
    assert await favourites.stars(GUILD, doomed.id) == 0
    assert not await favourites.starred_by(GUILD, doomed.id, FAN)
    assert ids(await favourites.anthology(GUILD)) == [kept.id]
    assert ids(await favourites.hall_of_fame(GUILD)) == [kept.id]
    assert await count(db, "favourites", GUILD) == 2
    assert await totals_match_stars(db)


async def test_totals_always_match_the_stars(
    favourites: FavouriteRepository, requests: RequestRepository, db: Database, clock: Clock
) -> None:
    rng = random.Random(5)
    records = [await creation(requests, user_id=rng.choice([AUTHOR, FAN])) for _ in range(12)]
    for step in range(300):
        clock.advance(seconds=rng.choice([0, 1, 60]))  # 0: equal timestamps happen too
        if step % 50 == 49:
            await favourites.forget_member(GUILD, rng.choice([FAN, CRITIC]))
        elif step % 70 == 69:
            await requests.delete(GUILD, records.pop(rng.randrange(len(records))).id)
        else:
            await favourites.toggle(GUILD, rng.choice(records).id, rng.randrange(100, 106))
    assert await totals_match_stars(db)
    row = await db.fetch_one("SELECT count(*) FROM favourite_totals")
    assert row is not None and row[0] > 0


# -- styles ---------------------------------------------------------------------------


def style(name: str = "noir", guild_id: int | None = GUILD, **changes: Any) -> Style:
    base = Style(
        guild_id=guild_id,
        name=name,
        description="hard-boiled",
        instructions="Short sentences. Rain.",
        example="The city slept badly.",
        commands=frozenset({"poem", "script"}),
        mature=True,
        disabled=False,
        updated_by=AUTHOR,
    )
    return replace(base, **changes)


async def test_style_round_trip(
    styles: StyleRepository, clock: Clock, guilds: GuildRepository
) -> None:
    saved = await styles.upsert(style())
    assert saved.updated_at == T0  # stamped when the style carries no time
    assert await styles.get(GUILD, "noir") == saved
    plain = await styles.upsert(
        style("plain", example=None, commands=frozenset(), mature=False, disabled=True)
    )
    assert await styles.get(GUILD, "plain") == plain
    assert plain.applies_to("critique") and plain.disabled and plain.example is None
    assert await guilds.get(GUILD) is not None  # the style registered its server

    edited_at = clock.advance(hours=1)
    edited = await styles.upsert(style(description="softer", updated_by=FAN))
    assert (edited.description, edited.updated_by, edited.updated_at) == ("softer", FAN, edited_at)
    assert await styles.get(GUILD, "noir") == edited
    assert [s.name for s in await styles.list(GUILD)] == ["noir", "plain"]

    assert await styles.remove(GUILD, "noir")
    assert not await styles.remove(GUILD, "noir")
    assert await styles.get(GUILD, "noir") is None


async def test_styles_are_validated_by_the_schema(styles: StyleRepository) -> None:
    with pytest.raises(ValueError, match="built-ins"):
        await styles.upsert(style(guild_id=None))
    for bad in ["Noir", "with space", "", "x" * 33, "ünï"]:
        with pytest.raises(sqlite3.IntegrityError):
            await styles.upsert(style(bad))
    assert await styles.list(GUILD) == []


async def test_style_defaults(styles: StyleRepository, guilds: GuildRepository) -> None:
    assert await styles.defaults(GUILD) == {}
    await styles.set_default(GUILD, "poem", None, "noir")
    await styles.set_default(GUILD, "poem", 555, "gothic")
    await styles.set_default(GUILD, "script", 555, "noir")
    await styles.set_default(GUILD, "poem", None, "romantic")  # replaces
    assert await styles.defaults(GUILD) == {
        ("poem", None): "romantic",
        ("poem", 555): "gothic",
        ("script", 555): "noir",
    }
    await styles.set_default(GUILD, "poem", 555, None)
    await styles.set_default(GUILD, "critique", None, None)  # nothing to clear: fine
    assert await styles.defaults(GUILD) == {("poem", None): "romantic", ("script", 555): "noir"}
    assert await guilds.get(GUILD) is not None


async def test_a_second_server_cannot_touch_the_first_ones_styles(
    styles: StyleRepository,
) -> None:
    mine = await styles.upsert(style())
    await styles.set_default(GUILD, "poem", None, "noir")
    assert await styles.get(OTHER, "noir") is None
    assert await styles.list(OTHER) == []
    assert not await styles.remove(OTHER, "noir")
    assert await styles.defaults(OTHER) == {}
    await styles.set_default(OTHER, "poem", None, None)
    # Its own style of the same name is its own row.
    theirs = await styles.upsert(style(guild_id=OTHER, description="theirs"))
    await styles.set_default(OTHER, "poem", None, "gothic")
    assert await styles.get(GUILD, "noir") == mine
    assert await styles.get(OTHER, "noir") == theirs
    assert await styles.defaults(GUILD) == {("poem", None): "noir"}
    assert await styles.remove(OTHER, "noir")
    assert await styles.get(GUILD, "noir") == mine


# -- settings and preferences -----------------------------------------------------------

CUSTOM = GuildSettings(
    allowed_channel_ids=frozenset({555, 444}),
    cooldown_s=30,
    max_in_flight=3,
    max_queued=1,
    max_input_chars=500,
    blocked_words=("zut", "flûte"),
    mature_only_in_age_restricted=False,
    critique_opt_in=False,
    community_taste=True,
    moderator_role_id=999,
)


async def stored_settings(db: Database, guild_id: int) -> dict[str, Any]:
    row = await db.fetch_one("SELECT data FROM guild_settings WHERE guild_id = ?", (guild_id,))
    assert row is not None
    data: dict[str, Any] = json.loads(row["data"])
    return data


async def test_settings_default_then_round_trip(
    settings: SettingsRepository, db: Database, guilds: GuildRepository
) -> None:
    assert await settings.get(GUILD) == GuildSettings()
    await settings.save(GUILD, CUSTOM)
    assert await settings.get(GUILD) == CUSTOM
    assert await guilds.get(GUILD) is not None
    data = await stored_settings(db, GUILD)
    assert data["allowed_channel_ids"] == [444, 555]
    assert data["blocked_words"] == ["zut", "flûte"]

    # Only what differs from a new server is stored, so changed defaults reach it.
    await settings.save(GUILD, GuildSettings(cooldown_s=5))
    assert await stored_settings(db, GUILD) == {"cooldown_s": 5}
    await settings.save(GUILD, GuildSettings())
    assert await stored_settings(db, GUILD) == {}
    assert await settings.get(GUILD) == GuildSettings()


async def test_settings_tolerate_other_versions_json(
    settings: SettingsRepository, db: Database
) -> None:
    await settings.save(GUILD, GuildSettings())
    await db.execute(
        "UPDATE guild_settings SET data = ? WHERE guild_id = ?",
        (
            json.dumps(
                {
                    "cooldown_s": 12,
                    "from_a_newer_atelier": {"x": 1},  # unknown: ignored
                    "max_queued": "three",  # wrong shape: the default
                    "community_taste": 1,  # an int is not a bool
                    "moderator_role_id": None,
                    "blocked_words": ["a", 2],
                }
            ),
            GUILD,
        ),
    )
    assert await settings.get(GUILD) == GuildSettings(cooldown_s=12)
    # Saving keeps the keys this version does not know.
    await settings.save(GUILD, GuildSettings(max_queued=4))
    assert await stored_settings(db, GUILD) == {"from_a_newer_atelier": {"x": 1}, "max_queued": 4}


async def test_critique_opt_in(settings: SettingsRepository, guilds: GuildRepository) -> None:
    assert not await settings.critique_opt_in(GUILD, AUTHOR)  # never asked: no
    await settings.set_critique_opt_in(GUILD, AUTHOR, True)
    assert await settings.critique_opt_in(GUILD, AUTHOR)
    assert not await settings.critique_opt_in(GUILD, FAN)
    assert await guilds.get(GUILD) is not None
    await settings.set_critique_opt_in(GUILD, AUTHOR, False)
    assert not await settings.critique_opt_in(GUILD, AUTHOR)
    await settings.set_critique_opt_in(GUILD, AUTHOR, True)
    await settings.forget_member(GUILD, AUTHOR)
    assert not await settings.critique_opt_in(GUILD, AUTHOR)


async def test_a_second_server_cannot_touch_the_first_ones_settings(
    settings: SettingsRepository,
) -> None:
    await settings.save(GUILD, CUSTOM)
    await settings.set_critique_opt_in(GUILD, AUTHOR, True)
    assert await settings.get(OTHER) == GuildSettings()
    assert not await settings.critique_opt_in(OTHER, AUTHOR)
    await settings.save(OTHER, GuildSettings(cooldown_s=1))
    await settings.forget_member(OTHER, AUTHOR)
    await settings.set_critique_opt_in(OTHER, AUTHOR, False)
    assert await settings.get(GUILD) == CUSTOM
    assert await settings.critique_opt_in(GUILD, AUTHOR)


# -- purging and migrating ------------------------------------------------------------

PER_SERVER = [
    "requests",
    "favourites",
    "favourite_totals",
    "styles",
    "style_defaults",
    "guild_settings",
    "member_prefs",
]


async def test_purging_a_server_deletes_its_whole_library(
    db: Database,
    requests: RequestRepository,
    favourites: FavouriteRepository,
    styles: StyleRepository,
    settings: SettingsRepository,
    guilds: GuildRepository,
    clock: Clock,
) -> None:
    for guild in (GUILD, OTHER):
        poem = await creation(requests, guild_id=guild)
        await favourites.toggle(guild, poem.id, FAN)
        await styles.upsert(style(guild_id=guild))
        await styles.set_default(guild, "poem", None, "noir")
        await settings.save(guild, CUSTOM)
        await settings.set_critique_opt_in(guild, AUTHOR, True)
    await guilds.left(GUILD)
    clock.advance(days=40)
    assert await guilds.purge_left_before(clock.now - timedelta(days=30)) == 1
    assert [await count(db, table, GUILD) for table in PER_SERVER] == [0] * len(PER_SERVER)
    assert [await count(db, table, OTHER) for table in PER_SERVER] == [1] * len(PER_SERVER)


async def test_upgrading_a_version_1_database_keeps_its_rows(tmp_path: Path) -> None:
    only_v1 = tmp_path / "v1-migrations"
    only_v1.mkdir()
    for entry in default_migrations().iterdir():
        if entry.name.startswith("0001_"):
            (only_v1 / entry.name).write_text(entry.read_text(encoding="utf-8"))
    path = tmp_path / "atelier.sqlite3"
    async with await Database.open(path, migrations=only_v1) as old:
        assert await old.schema_version() == 1
        old_requests = RequestRepository(old)
        made = [await creation(old_requests, user_id=AUTHOR + i % 2) for i in range(5)]
        waiting = await creation(old_requests, status=RequestStatus.QUEUED)
    shutil.copy(path, tmp_path / "backup.sqlite3")  # as an operator would first

    async with await Database.open(path) as db:
        assert await db.schema_version() == 2
        repo = RequestRepository(db)
        assert [await repo.get(GUILD, r.id) for r in made] == made
        assert await repo.pending_counts(GUILD, AUTHOR) == (1, 0)
        assert waiting.id not in [r.id for r in await repo.recent(GUILD, user_id=AUTHOR + 1)]
        # The old creations join the new library straight away.
        favourites = FavouriteRepository(db)
        assert await favourites.toggle(GUILD, made[0].id, FAN) == (True, 1)
        assert await favourites.toggle(GUILD, waiting.id, FAN) is None
        assert ids(await favourites.anthology(GUILD)) == [made[0].id]
        assert await SettingsRepository(db).get(GUILD) == GuildSettings()
