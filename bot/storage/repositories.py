"""Repositories: the only code that knows table and column names.

They take and return domain objects (``bot.domain``), never rows. Every read of
per-server data is scoped by guild, so one server can never see another's; in direct
messages (guild_id None) reads are scoped by member too, since a DM is private.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from bot.domain import GuildRecord, NewRequest, RequestRecord, RequestStatus, utcnow
from bot.storage.database import Database, Row

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def to_db_time(moment: datetime) -> str:
    """Aware datetime -> the fixed-width UTC text every table stores (see 0001)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive datetime could be local time; guessing would corrupt ordering.
        raise ValueError(f"naive datetime {moment!r}: pass an aware (UTC) datetime")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_db_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def required_time(text: str) -> datetime:
    moment = from_db_time(text)
    assert moment is not None
    return moment


def _check_scope(guild_id: int | None, user_id: int | None) -> None:
    if guild_id is None and user_id is None:
        # Without a member, "guild_id IS NULL" would match every member's DMs.
        raise ValueError("direct-message requests must be scoped by user_id")


def request_from_row(row: Row) -> RequestRecord:
    """A ``requests`` row (other columns may ride along: they are ignored) -> record."""
    inputs: dict[str, Any] = json.loads(row["inputs"])
    return RequestRecord(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        command=row["command"],
        inputs=inputs,
        status=RequestStatus(row["status"]),
        output=row["output"],
        error=row["error"],
        created_at=required_time(row["created_at"]),
        started_at=from_db_time(row["started_at"]),
        finished_at=from_db_time(row["finished_at"]),
        generated_tokens=row["generated_tokens"],
        first_token_ms=row["first_token_ms"],
        application_id=row["application_id"],
        interaction_token=row["interaction_token"],
        message_id=row["message_id"],
        delivered_at=from_db_time(row["delivered_at"]),
    )


def _guild(row: Row) -> GuildRecord:
    return GuildRecord(
        id=row["id"],
        joined_at=required_time(row["joined_at"]),
        left_at=from_db_time(row["left_at"]),
    )


async def ensure_guild(db: Database, guild_id: int, now: str) -> None:
    """Register a server that per-server rows are about to reference (foreign key).

    The bot may have joined while offline, so any per-server write is proof enough.
    """
    await db.execute(
        "INSERT INTO guilds (id, joined_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
        (guild_id, now),
    )


class RequestRepository:
    """Generation requests: their lifecycle, delivery, listing and deletion."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    def _now(self, moment: datetime | None) -> str:
        return to_db_time(moment if moment is not None else self._clock())

    async def create(self, new: NewRequest) -> RequestRecord:
        """Store a request as queued, created now."""
        now = self._now(None)
        # sort_keys: the same options always serialise the same way (dedup, tests).
        inputs = json.dumps(dict(new.inputs), ensure_ascii=False, sort_keys=True)
        async with self._db.transaction():
            if new.guild_id is not None:
                await ensure_guild(self._db, new.guild_id, now)
            row = await self._db.fetch_one(
                "INSERT INTO requests (guild_id, channel_id, user_id, command, inputs,"
                " status, created_at, application_id, interaction_token)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (
                    new.guild_id,
                    new.channel_id,
                    new.user_id,
                    new.command,
                    inputs,
                    RequestStatus.QUEUED.value,
                    now,
                    new.application_id,
                    new.interaction_token,
                ),
            )
        assert row is not None
        return request_from_row(row)

    async def mark_running(self, request_id: int, started_at: datetime | None = None) -> bool:
        """queued -> running. False if it is not queued (cancelled meanwhile, or gone)."""
        changed = await self._db.execute(
            "UPDATE requests SET status = 'running', started_at = ?"
            " WHERE id = ? AND status = 'queued'",
            (self._now(started_at), request_id),
        )
        return changed == 1

    async def finish(
        self,
        request_id: int,
        status: RequestStatus,
        *,
        output: str | None = None,
        error: str | None = None,
        generated_tokens: int = 0,
        first_token_ms: int | None = None,
        finished_at: datetime | None = None,
    ) -> bool:
        """Record the outcome. Only the first call wins (e.g. a cancel racing 'done')."""
        if not status.is_finished:
            raise ValueError(f"finish() needs a terminal status, not {status.value!r}")
        changed = await self._db.execute(
            "UPDATE requests SET status = ?, output = ?, error = ?, generated_tokens = ?,"
            " first_token_ms = ?, finished_at = ? WHERE id = ? AND finished_at IS NULL",
            (
                status.value,
                output,
                error,
                generated_tokens,
                first_token_ms,
                self._now(finished_at),
                request_id,
            ),
        )
        return changed == 1

    async def attach_message(self, request_id: int, message_id: int) -> bool:
        """Remember the reply message, so a restart edits it instead of posting again."""
        changed = await self._db.execute(
            "UPDATE requests SET message_id = ? WHERE id = ?", (message_id, request_id)
        )
        return changed == 1

    async def mark_delivered(
        self,
        request_id: int,
        *,
        message_id: int | None = None,
        delivered_at: datetime | None = None,
    ) -> bool:
        """Mark the final answer sent and drop the token. True only for the one call
        that did it: the conditional UPDATE is atomic in SQLite, so of two racing
        deliveries (tasks or processes) exactly one gets True and the other must not send.
        """
        changed = await self._db.execute(
            "UPDATE requests SET delivered_at = ?, interaction_token = NULL,"
            " message_id = coalesce(?, message_id)"
            " WHERE id = ? AND delivered_at IS NULL",
            (self._now(delivered_at), message_id, request_id),
        )
        return changed == 1

    async def get(
        self, guild_id: int | None, request_id: int, *, user_id: int | None = None
    ) -> RequestRecord | None:
        """A request of this server (or, with guild_id None, this member's DMs)."""
        _check_scope(guild_id, user_id)
        sql = "SELECT * FROM requests WHERE id = ? AND guild_id IS ?"
        params: list[Any] = [request_id, guild_id]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        row = await self._db.fetch_one(sql, params)
        return None if row is None else request_from_row(row)

    async def recent(
        self,
        guild_id: int | None,
        *,
        user_id: int | None = None,
        command: str | None = None,
        limit: int = 10,
        before_id: int | None = None,
    ) -> list[RequestRecord]:
        """Newest first. For the next page pass ``before_id`` = the last id returned:
        keyset pagination stays fast and never skips or repeats rows as new ones arrive.
        """
        _check_scope(guild_id, user_id)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        # "IS ?" matches NULL for DMs and still uses the (guild_id, ...) indexes.
        sql = "SELECT * FROM requests WHERE guild_id IS ?"
        params: list[Any] = [guild_id]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        if command is not None:
            sql += " AND command = ?"
            params.append(command)
        if before_id is not None:
            sql += " AND id < ?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [request_from_row(row) for row in await self._db.fetch_all(sql, params)]

    async def undelivered(self) -> list[RequestRecord]:
        """Everything accepted but not yet answered, oldest first: what a restart redoes.

        Queued and running jobs (to run again) and finished ones whose answer was never
        sent. Across all servers: this is for the bot itself, never shown to a member.
        """
        rows = await self._db.fetch_all(
            "SELECT * FROM requests WHERE delivered_at IS NULL ORDER BY id"
        )
        return [request_from_row(row) for row in rows]

    async def requeue_interrupted(self) -> int:
        """After a restart, put jobs left 'running' back to 'queued' so they can run."""
        return await self._db.execute(
            "UPDATE requests SET status = 'queued', started_at = NULL"
            " WHERE status = 'running' AND delivered_at IS NULL"
        )

    async def expire_tokens(self, issued_before: datetime) -> int:
        """Forget interaction tokens from before ``issued_before`` (Discord's are valid
        15 minutes): an expired credential is useless, so it should not sit on disk.
        """
        return await self._db.execute(
            "UPDATE requests SET interaction_token = NULL"
            " WHERE interaction_token IS NOT NULL AND created_at < ?",
            (to_db_time(issued_before),),
        )

    async def pending_counts(self, guild_id: int | None, user_id: int) -> tuple[int, int]:
        """(queued, running): this member's unfinished requests in that server (or DMs)."""
        # "finished_at IS NULL" (same as queued or running, see 0001) picks the partial
        # index requests_unfinished: a few rows, however long the member's history.
        row = await self._db.fetch_one(
            "SELECT coalesce(sum(status = 'queued'), 0), coalesce(sum(status = 'running'), 0)"
            " FROM requests WHERE guild_id IS ? AND user_id = ? AND finished_at IS NULL",
            (guild_id, user_id),
        )
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    async def last_created_at(self, guild_id: int | None, user_id: int) -> datetime | None:
        """When this member last asked for something in that server (or DMs): cooldowns."""
        # The newest id is the newest request (AUTOINCREMENT): one index step, where
        # max(created_at) would read all of the member's rows.
        row = await self._db.fetch_one(
            "SELECT created_at FROM requests WHERE guild_id IS ? AND user_id = ?"
            " ORDER BY id DESC LIMIT 1",
            (guild_id, user_id),
        )
        return None if row is None else required_time(row["created_at"])

    async def delete(
        self, guild_id: int | None, request_id: int, *, user_id: int | None = None
    ) -> bool:
        """Delete one creation of this server (or a DM's; ``user_id`` narrows it to that
        member's). Its favourites go by cascade; its id is never reused. False if there
        was no such row here.
        """
        sql = "DELETE FROM requests WHERE id = ? AND guild_id IS ?"
        params: list[Any] = [request_id, guild_id]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        return await self._db.execute(sql, params) == 1

    async def forget_member(self, guild_id: int | None, user_id: int) -> int:
        """Delete a member's requests in one server (or their DMs). Returns the count.

        Stars others gave them go by cascade; their own stars on others' creations are
        ``FavouriteRepository.forget_member``'s job.
        """
        return await self._db.execute(
            "DELETE FROM requests WHERE guild_id IS ? AND user_id = ?", (guild_id, user_id)
        )


class GuildRepository:
    """Which servers the bot is in, so data of servers it left can be purged later."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    def _now(self, moment: datetime | None) -> str:
        return to_db_time(moment if moment is not None else self._clock())

    async def joined(self, guild_id: int, at: datetime | None = None) -> None:
        """The bot is in this server. Rejoining cancels a pending purge."""
        await self._db.execute(
            "INSERT INTO guilds (id, joined_at) VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET left_at = NULL",
            (guild_id, self._now(at)),
        )

    async def left(self, guild_id: int, at: datetime | None = None) -> None:
        """The bot left (or was removed from) this server; its data may be purged later."""
        now = self._now(at)
        await self._db.execute(
            "INSERT INTO guilds (id, joined_at, left_at) VALUES (?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET left_at = excluded.left_at"
            " WHERE guilds.left_at IS NULL",  # keep the first departure time
            (guild_id, now, now),
        )

    async def sync(self, present: Collection[int], at: datetime | None = None) -> None:
        """Reconcile with the servers the bot is in now (e.g. on ready): joins and
        departures that happened while it was offline produce no events.
        """
        now = self._now(at)
        async with self._db.transaction():
            rows = await self._db.fetch_all("SELECT id FROM guilds WHERE left_at IS NULL")
            gone = {row["id"] for row in rows} - set(present)
            if present:
                await self._db.execute_many(
                    "INSERT INTO guilds (id, joined_at) VALUES (?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET left_at = NULL",
                    [(guild_id, now) for guild_id in present],
                )
            if gone:
                await self._db.execute_many(
                    "UPDATE guilds SET left_at = ? WHERE id = ?",
                    [(now, guild_id) for guild_id in gone],
                )

    async def get(self, guild_id: int) -> GuildRecord | None:
        row = await self._db.fetch_one("SELECT * FROM guilds WHERE id = ?", (guild_id,))
        return None if row is None else _guild(row)

    async def purge_left_before(self, cutoff: datetime) -> int:
        """Delete servers left before ``cutoff`` with all their data (by cascade).
        Returns the number of servers purged.
        """
        async with self._db.transaction():
            requests = await self._db.fetch_one(
                "SELECT count(*) FROM requests WHERE guild_id IN"
                " (SELECT id FROM guilds WHERE left_at < ?)",
                (to_db_time(cutoff),),
            )
            purged = await self._db.execute(
                "DELETE FROM guilds WHERE left_at < ?", (to_db_time(cutoff),)
            )
        if purged:
            log.info(
                "purged %d departed servers (%d requests)", purged, requests[0] if requests else 0
            )
        return purged
