"""Repositories against a real SQLite file: round trips, scoping, delivery, purging."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.domain import NewRequest, RequestRecord, RequestStatus
from bot.storage.database import Database
from bot.storage.repositories import GuildRepository, RequestRepository
from tests.clock import T0, Clock


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
def guilds(db: Database, clock: Clock) -> GuildRepository:
    return GuildRepository(db, clock=clock)


def new(
    guild_id: int | None = 1, user_id: int = 10, command: str = "poem", **extra: Any
) -> NewRequest:
    return NewRequest(
        guild_id=guild_id,
        channel_id=100,
        user_id=user_id,
        command=command,
        inputs=extra.pop("inputs", {"theme": "the sea"}),
        **extra,
    )


async def test_create_and_get_round_trip(requests: RequestRepository) -> None:
    created = await requests.create(
        new(
            inputs={"theme": "été à Kyōto 🌸", "lines": 4, "tags": ["a", None]},
            application_id=555,
            interaction_token="tok-secret",
        )
    )
    assert created.status is RequestStatus.QUEUED
    assert created.created_at == T0 and created.created_at.tzinfo is not None
    assert created.inputs == {"theme": "été à Kyōto 🌸", "lines": 4, "tags": ["a", None]}
    assert created.interaction_token == "tok-secret"
    assert created.application_id == 555
    assert (created.started_at, created.finished_at, created.delivered_at) == (None, None, None)
    assert (created.generated_tokens, created.first_token_ms, created.message_id) == (0, None, None)
    assert await requests.get(1, created.id) == created
    assert "tok-secret" not in repr(created)
    assert "tok-secret" not in repr(new(interaction_token="tok-secret"))
    assert hash(created) == hash(await requests.get(1, created.id))


async def test_ids_are_never_reused(requests: RequestRepository) -> None:
    first = await requests.create(new())
    await requests.forget_member(1, 10)
    assert (await requests.create(new())).id > first.id


async def test_lifecycle(requests: RequestRepository, clock: Clock) -> None:
    record = await requests.create(new())
    started = clock.advance(seconds=1)
    assert await requests.mark_running(record.id)
    assert not await requests.mark_running(record.id)
    finished = clock.advance(seconds=2)
    assert await requests.finish(
        record.id, RequestStatus.DONE, output="waves", generated_tokens=42, first_token_ms=80
    )
    # a late cancel loses the race
    assert not await requests.finish(record.id, RequestStatus.CANCELLED)
    assert await requests.attach_message(record.id, 777)
    done = await requests.get(1, record.id)
    assert done is not None
    assert (done.status, done.output, done.error) == (RequestStatus.DONE, "waves", None)
    assert (done.started_at, done.finished_at) == (started, finished)
    assert (done.generated_tokens, done.first_token_ms, done.message_id) == (42, 80, 777)
    assert done.is_finished and not done.is_delivered

    with pytest.raises(ValueError, match="terminal"):
        await requests.finish(record.id, RequestStatus.RUNNING)


async def test_cancelled_before_start_never_runs(requests: RequestRepository) -> None:
    record = await requests.create(new())
    assert await requests.finish(record.id, RequestStatus.CANCELLED, error="member cancelled")
    assert not await requests.mark_running(record.id)


async def test_naive_datetimes_are_refused(requests: RequestRepository) -> None:
    record = await requests.create(new())
    with pytest.raises(ValueError, match="naive"):
        await requests.mark_running(record.id, datetime(2025, 1, 1))


async def test_guild_scoping(requests: RequestRepository) -> None:
    a = await requests.create(new(guild_id=1))
    b = await requests.create(new(guild_id=2))
    assert await requests.get(2, a.id) is None
    assert await requests.get(1, b.id) is None
    assert [r.id for r in await requests.recent(1)] == [a.id]
    assert [r.id for r in await requests.recent(2)] == [b.id]
    assert await requests.recent(3) == []
    # Guild requests never show up as DMs, and the other way round.
    dm = await requests.create(new(guild_id=None, user_id=10))
    assert await requests.get(1, dm.id) is None
    assert await requests.get(None, a.id, user_id=10) is None


async def test_direct_messages_are_private_to_their_member(
    requests: RequestRepository,
) -> None:
    mine = await requests.create(new(guild_id=None, user_id=10))
    theirs = await requests.create(new(guild_id=None, user_id=11))
    assert await requests.get(None, mine.id, user_id=10) == mine
    assert await requests.get(None, theirs.id, user_id=10) is None
    assert [r.id for r in await requests.recent(None, user_id=10)] == [mine.id]
    with pytest.raises(ValueError, match="user_id"):
        await requests.get(None, mine.id)
    with pytest.raises(ValueError, match="user_id"):
        await requests.recent(None)


async def test_keyset_pagination_is_ordered_and_complete(
    db: Database, requests: RequestRepository
) -> None:
    expected: dict[tuple[int, int | None, str | None], list[int]] = {}
    async with db.transaction():  # one commit instead of 300: keeps the test fast
        for i in range(300):
            guild, user, command = 1 + i % 2, 10 + i % 3, ("poem", "critique")[i % 5 == 0]
            record = await requests.create(new(guild_id=guild, user_id=user, command=command))
            keys: list[tuple[int, int | None, str | None]] = [
                (guild, None, None),
                (guild, user, None),
                (guild, None, command),
            ]
            for key in keys:
                expected.setdefault(key, []).append(record.id)

    async def walk(guild: int, user: int | None, command: str | None) -> list[RequestRecord]:
        seen: list[RequestRecord] = []
        before: int | None = None
        while page := await requests.recent(
            guild, user_id=user, command=command, limit=7, before_id=before
        ):
            assert len(page) <= 7
            seen += page
            before = page[-1].id
        return seen

    for key, ids in expected.items():
        seen = await walk(*key)
        assert [r.id for r in seen] == sorted(ids, reverse=True)
        assert all(r.guild_id == key[0] for r in seen)
    assert len(await requests.recent(1, limit=1000)) == 150
    with pytest.raises(ValueError):
        await requests.recent(1, limit=0)


async def test_mark_delivered_is_exactly_once(requests: RequestRepository) -> None:
    record = await requests.create(new(interaction_token="tok"))
    await requests.finish(record.id, RequestStatus.DONE, output="x")
    assert await requests.mark_delivered(record.id, message_id=9)
    assert not await requests.mark_delivered(record.id, message_id=10)
    delivered = await requests.get(1, record.id)
    assert delivered is not None and delivered.is_delivered
    assert delivered.interaction_token is None
    assert delivered.message_id == 9


async def test_concurrent_deliveries_only_one_wins(
    tmp_path: Path, db: Database, requests: RequestRepository
) -> None:
    record = await requests.create(new(interaction_token="tok"))
    results = await asyncio.gather(*(requests.mark_delivered(record.id) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]

    # Two connections (as two processes would have) racing on another job.
    other = await requests.create(new(interaction_token="tok"))
    async with await Database.open(tmp_path / "atelier.sqlite3") as second:
        rivals = [requests, RequestRepository(second)]
        results = await asyncio.gather(
            *(repo.mark_delivered(other.id) for _ in range(4) for repo in rivals)
        )
    assert sorted(results) == [False] * 7 + [True]


async def test_undelivered_is_what_a_restart_must_redo(
    requests: RequestRepository, clock: Clock
) -> None:
    queued = await requests.create(new())
    running = await requests.create(new(guild_id=2))
    await requests.mark_running(running.id)
    finished = await requests.create(new(guild_id=None, user_id=5))
    await requests.finish(finished.id, RequestStatus.FAILED, error="model crashed")
    delivered = await requests.create(new())
    await requests.finish(delivered.id, RequestStatus.DONE, output="x")
    await requests.mark_delivered(delivered.id)

    pending = await requests.undelivered()
    assert [r.id for r in pending] == [queued.id, running.id, finished.id]
    assert [r.status for r in pending] == [
        RequestStatus.QUEUED,
        RequestStatus.RUNNING,
        RequestStatus.FAILED,
    ]

    assert await requests.requeue_interrupted() == 1
    again = await requests.get(2, running.id)
    assert again is not None and again.status is RequestStatus.QUEUED
    assert again.started_at is None
    assert await requests.mark_running(running.id)


async def test_expired_tokens_are_forgotten(requests: RequestRepository, clock: Clock) -> None:
    old = await requests.create(new(interaction_token="old"))
    clock.advance(minutes=20)
    fresh = await requests.create(new(interaction_token="fresh"))
    assert await requests.expire_tokens(clock.now - timedelta(minutes=15)) == 1
    tokens = [(await requests.get(1, r.id)) for r in (old, fresh)]
    assert [t.interaction_token if t else "?" for t in tokens] == [None, "fresh"]


async def test_forget_member(requests: RequestRepository) -> None:
    for guild, user in [(1, 10), (1, 10), (1, 11), (2, 10), (None, 10)]:
        await requests.create(new(guild_id=guild, user_id=user))
    assert await requests.forget_member(1, 10) == 2
    assert await requests.recent(1, user_id=10) == []
    assert len(await requests.recent(1)) == 1
    assert len(await requests.recent(2)) == 1
    assert len(await requests.recent(None, user_id=10)) == 1
    assert await requests.forget_member(None, 10) == 1


async def test_guild_membership(guilds: GuildRepository, clock: Clock) -> None:
    await guilds.joined(1)
    first = await guilds.get(1)
    assert first is not None and first.is_member and first.joined_at == T0

    left_at = clock.advance(days=1)
    await guilds.left(1)
    clock.advance(days=1)
    await guilds.left(1)  # a repeated event keeps the first departure time
    gone = await guilds.get(1)
    assert gone is not None and gone.left_at == left_at and not gone.is_member

    await guilds.joined(1)
    back = await guilds.get(1)
    assert back is not None and back.is_member and back.joined_at == T0
    assert await guilds.get(2) is None


async def test_a_request_registers_its_guild(
    requests: RequestRepository, guilds: GuildRepository
) -> None:
    await requests.create(new(guild_id=77))
    record = await guilds.get(77)
    assert record is not None and record.is_member


async def test_sync_records_changes_made_while_offline(
    guilds: GuildRepository, clock: Clock
) -> None:
    await guilds.joined(1)
    await guilds.joined(2)
    await guilds.sync({2, 3})
    states = [await guilds.get(i) for i in (1, 2, 3)]
    assert [g.is_member if g else None for g in states] == [False, True, True]
    await guilds.sync([])
    assert all(g is not None and not g.is_member for g in [await guilds.get(i) for i in (2, 3)])


async def test_purge_deletes_departed_guilds_data(
    requests: RequestRepository, guilds: GuildRepository, clock: Clock
) -> None:
    for guild in (1, 2, 3):
        await requests.create(new(guild_id=guild))
        await requests.create(new(guild_id=guild, user_id=11))
    await guilds.left(1)
    clock.advance(days=40)
    await guilds.left(2)  # left recently: still within the grace period
    cutoff = clock.now - timedelta(days=30)

    assert await guilds.purge_left_before(cutoff) == 1
    assert await guilds.get(1) is None
    assert await requests.recent(1) == []
    assert len(await requests.recent(2)) == 2
    assert len(await requests.recent(3)) == 2
    assert await guilds.purge_left_before(cutoff) == 0


async def test_delete_is_scoped_and_never_frees_the_id(requests: RequestRepository) -> None:
    mine = await requests.create(new(guild_id=1))
    assert not await requests.delete(2, mine.id)  # another server cannot delete it
    assert not await requests.delete(None, mine.id, user_id=10)  # nor a DM lookup
    assert await requests.get(1, mine.id) is not None
    assert await requests.delete(1, mine.id)
    assert await requests.get(1, mine.id) is None
    assert not await requests.delete(1, mine.id)
    assert (await requests.create(new(guild_id=1))).id > mine.id

    dm = await requests.create(new(guild_id=None, user_id=10))
    assert not await requests.delete(1, dm.id)
    assert not await requests.delete(None, dm.id, user_id=11)  # someone else's DM
    assert await requests.delete(None, dm.id, user_id=10)


async def test_pending_counts(requests: RequestRepository) -> None:
    assert await requests.pending_counts(1, 10) == (0, 0)
    queued = [await requests.create(new()) for _ in range(3)]
    await requests.mark_running(queued[0].id)
    done = await requests.create(new())
    await requests.finish(done.id, RequestStatus.DONE, output="x")
    await requests.finish(queued[2].id, RequestStatus.CANCELLED)
    # Other members, servers and DMs do not count.
    await requests.create(new(user_id=11))
    await requests.create(new(guild_id=2))
    await requests.create(new(guild_id=None))
    assert await requests.pending_counts(1, 10) == (1, 1)
    assert await requests.pending_counts(None, 10) == (1, 0)
    assert await requests.pending_counts(1, 12) == (0, 0)


async def test_last_created_at(requests: RequestRepository, clock: Clock) -> None:
    assert await requests.last_created_at(1, 10) is None
    await requests.create(new())
    later = clock.advance(seconds=30)
    latest = await requests.create(new())
    await requests.finish(latest.id, RequestStatus.FAILED, error="x")  # still counts
    clock.advance(seconds=5)
    await requests.create(new(user_id=11))
    await requests.create(new(guild_id=2))
    assert await requests.last_created_at(1, 10) == later
    assert await requests.last_created_at(2, 10) == clock.now
    assert await requests.last_created_at(None, 10) is None
