"""Repositories for each server's library and rules: favourites, styles, settings.

Like ``bot.storage.repositories`` they hand out domain records, and every method takes
the server's id and touches only that server's rows: an id from another server reads
as missing and is never changed. Favourites exist only inside a server (never in direct
messages), so ``guild_id`` is always an ``int`` here.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import types
import typing
from collections.abc import Mapping
from typing import Any

from bot.domain import FavouriteEntry, GuildSettings, RequestRecord, RequestStatus, Style, utcnow
from bot.storage.database import Database, Row
from bot.storage.repositories import (
    Clock,
    ensure_guild,
    from_db_time,
    request_from_row,
    required_time,
    to_db_time,
)

log = logging.getLogger(__name__)

# A server-wide style default is stored under this channel id (see 0002).
_WHOLE_SERVER = 0


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError("limit must be at least 1")


def _entry(row: Row) -> FavouriteEntry:
    return FavouriteEntry(
        request=request_from_row(row),
        stars=row["fav_stars"],
        last_starred_at=required_time(row["fav_last_starred_at"]),
    )


# The request's columns, plus its totals under names no request column has.
_ENTRY_SELECT = (
    "SELECT r.*, t.stars AS fav_stars, t.last_starred_at AS fav_last_starred_at"
    " FROM favourite_totals AS t JOIN requests AS r ON r.id = t.request_id"
)


class FavouriteRepository:
    """Members' stars on a server's creations: the anthology and the hall of fame.

    Per-creation totals live in ``favourite_totals``, kept by triggers on every insert
    and delete of a star (including cascades), so listings never aggregate.
    """

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    async def toggle(self, guild_id: int, request_id: int, user_id: int) -> tuple[bool, int] | None:
        """Star the creation for this member, or unstar it if they had: (starred now,
        total stars). None if it is not a finished ('done') creation of this server.
        """
        async with self._db.transaction():
            row = await self._db.fetch_one(
                "SELECT 1 FROM requests WHERE id = ? AND guild_id = ? AND status = ?",
                (request_id, guild_id, RequestStatus.DONE.value),
            )
            if row is None:
                return None
            removed = await self._db.execute(
                "DELETE FROM favourites WHERE request_id = ? AND user_id = ?",
                (request_id, user_id),
            )
            if not removed:
                await self._db.execute(
                    "INSERT INTO favourites (guild_id, request_id, user_id, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (guild_id, request_id, user_id, to_db_time(self._clock())),
                )
            total = await self.stars(guild_id, request_id)
        return not removed, total

    async def stars(self, guild_id: int, request_id: int) -> int:
        row = await self._db.fetch_one(
            "SELECT stars FROM favourite_totals WHERE request_id = ? AND guild_id = ?",
            (request_id, guild_id),
        )
        return 0 if row is None else int(row["stars"])

    async def starred_by(self, guild_id: int, request_id: int, user_id: int) -> bool:
        row = await self._db.fetch_one(
            "SELECT 1 FROM favourites WHERE request_id = ? AND user_id = ? AND guild_id = ?",
            (request_id, user_id, guild_id),
        )
        return row is not None

    async def anthology(
        self,
        guild_id: int,
        *,
        author_id: int | None = None,
        command: str | None = None,
        before: tuple[str, int] | None = None,
        limit: int = 10,
    ) -> list[FavouriteEntry]:
        """Creations with at least one star, newest star first.

        For the next page pass ``before`` = (the last entry's ``last_starred_at`` as
        ``to_db_time`` text, its request id). Keyset pagination: every page costs the
        same however deep, and a star arriving meanwhile never makes an entry repeat or
        shifts later pages (a creation starred again moves to the front, where the next
        walk from the top finds it).
        """
        _check_limit(limit)
        sql = _ENTRY_SELECT + " WHERE t.guild_id = ?"
        params: list[Any] = [guild_id]
        if author_id is not None:
            sql += " AND t.author_id = ?"
            params.append(author_id)
        if command is not None:
            sql += " AND t.command = ?"
            params.append(command)
        if before is not None:
            # A row value: ties on the timestamp are broken by request id, like the order.
            sql += " AND (t.last_starred_at, t.request_id) < (?, ?)"
            params.extend(before)
        sql += " ORDER BY t.last_starred_at DESC, t.request_id DESC LIMIT ?"
        params.append(limit)
        return [_entry(row) for row in await self._db.fetch_all(sql, params)]

    async def hall_of_fame(
        self, guild_id: int, *, command: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[FavouriteEntry]:
        """The most-starred creations, ties newest creation first."""
        _check_limit(limit)
        if offset < 0:
            raise ValueError("offset must not be negative")
        # The offset is skipped inside the covering index alone (request_id is in it);
        # only the page's rows are then joined. Joining first would read every skipped
        # creation's row: ~40x slower at page 500 (bench/library_bench.py).
        page = "SELECT request_id FROM favourite_totals WHERE guild_id = ?"
        params: list[Any] = [guild_id]
        if command is not None:
            page += " AND command = ?"
            params.append(command)
        page += " ORDER BY stars DESC, request_id DESC LIMIT ? OFFSET ?"
        params.extend((limit, offset))
        rows = await self._db.fetch_all(
            _ENTRY_SELECT + f" WHERE t.request_id IN ({page})"
            " ORDER BY t.stars DESC, t.request_id DESC",
            params,
        )
        return [_entry(row) for row in rows]

    async def examples(
        self, guild_id: int, command: str, style: str | None, limit: int
    ) -> list[RequestRecord]:
        """The server's most-starred finished creations for this command written in this
        style (``None``: with no style), best first: community taste for the prompt.

        Continuations are left out: their output only makes sense after their parent's.
        """
        _check_limit(limit)
        # The partial index favourite_totals_taste: the first ``limit`` entries are the
        # answer ("continuation = 0" must be spelled as in the index's WHERE).
        rows = await self._db.fetch_all(
            "SELECT r.* FROM favourite_totals AS t JOIN requests AS r ON r.id = t.request_id"
            " WHERE t.guild_id = ? AND t.command = ? AND t.style IS ? AND t.continuation = 0"
            " AND r.status = ? ORDER BY t.stars DESC, t.request_id DESC LIMIT ?",
            (guild_id, command, style, RequestStatus.DONE.value, limit),
        )
        return [request_from_row(row) for row in rows]

    async def forget_member(self, guild_id: int, user_id: int) -> int:
        """Remove the stars this member gave in this server. Returns how many."""
        return await self._db.execute(
            "DELETE FROM favourites WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )


def _style(row: Row) -> Style:
    return Style(
        guild_id=row["guild_id"],
        name=row["name"],
        description=row["description"],
        instructions=row["instructions"],
        example=row["example"],
        commands=frozenset(json.loads(row["commands"])),
        mature=bool(row["mature"]),
        disabled=bool(row["disabled"]),
        updated_by=row["updated_by"],
        updated_at=from_db_time(row["updated_at"]),
    )


class StyleRepository:
    """A server's own styles and overrides of built-ins, and its default styles."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    async def get(self, guild_id: int, name: str) -> Style | None:
        row = await self._db.fetch_one(
            "SELECT * FROM styles WHERE guild_id = ? AND name = ?", (guild_id, name)
        )
        return None if row is None else _style(row)

    async def list(self, guild_id: int) -> builtins.list[Style]:
        """The server's rows only (built-ins are config, merged by the StyleService)."""
        rows = await self._db.fetch_all(
            "SELECT * FROM styles WHERE guild_id = ? ORDER BY name", (guild_id,)
        )
        return [_style(row) for row in rows]

    async def upsert(self, style: Style) -> Style:
        """Create or replace the server's style of that name; returns it as stored
        (``updated_at`` now unless the style carries one)."""
        if style.guild_id is None:
            raise ValueError("only a server's styles are stored; built-ins live in config")
        updated_at = to_db_time(style.updated_at if style.updated_at is not None else self._clock())
        async with self._db.transaction():
            await ensure_guild(self._db, style.guild_id, to_db_time(self._clock()))
            await self._db.execute(
                "INSERT INTO styles (guild_id, name, description, instructions, example,"
                " commands, mature, disabled, updated_by, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (guild_id, name) DO UPDATE SET"
                " description = excluded.description, instructions = excluded.instructions,"
                " example = excluded.example, commands = excluded.commands,"
                " mature = excluded.mature, disabled = excluded.disabled,"
                " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                (
                    style.guild_id,
                    style.name,
                    style.description,
                    style.instructions,
                    style.example,
                    json.dumps(sorted(style.commands)),
                    int(style.mature),
                    int(style.disabled),
                    style.updated_by,
                    updated_at,
                ),
            )
        # As get() will return it: UTC, microseconds.
        return dataclasses.replace(style, updated_at=required_time(updated_at))

    async def remove(self, guild_id: int, name: str) -> bool:
        """Delete the server's row of that name. False if it had none."""
        changed = await self._db.execute(
            "DELETE FROM styles WHERE guild_id = ? AND name = ?", (guild_id, name)
        )
        return changed == 1

    async def set_default(
        self, guild_id: int, command: str, channel_id: int | None, name: str | None
    ) -> None:
        """Set the style ``command`` uses in one channel (``channel_id`` None: the whole
        server) when the member picks none; ``name`` None clears it."""
        channel = _WHOLE_SERVER if channel_id is None else channel_id
        if name is None:
            await self._db.execute(
                "DELETE FROM style_defaults WHERE guild_id = ? AND command = ? AND channel_id = ?",
                (guild_id, command, channel),
            )
            return
        async with self._db.transaction():
            await ensure_guild(self._db, guild_id, to_db_time(self._clock()))
            await self._db.execute(
                "INSERT INTO style_defaults (guild_id, command, channel_id, style_name)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (guild_id, command, channel_id)"
                " DO UPDATE SET style_name = excluded.style_name",
                (guild_id, command, channel, name),
            )

    async def defaults(self, guild_id: int) -> dict[tuple[str, int | None], str]:
        """(command, channel id or None for server-wide) -> style name."""
        rows = await self._db.fetch_all(
            "SELECT command, channel_id, style_name FROM style_defaults WHERE guild_id = ?",
            (guild_id,),
        )
        return {
            (row["command"], None if row["channel_id"] == _WHOLE_SERVER else row["channel_id"]): (
                row["style_name"]
            )
            for row in rows
        }


# --- settings as JSON ---------------------------------------------------------------

_SETTING_TYPES: dict[str, Any] = typing.get_type_hints(GuildSettings)
_DEFAULT_SETTINGS = GuildSettings()


def _encode_setting(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(value)  # sorted: the same settings always store the same text
    if isinstance(value, tuple):
        return list(value)
    return value


def _decode_setting(value: Any, hint: Any) -> Any:
    """A JSON value -> the field's type, or ValueError if it does not fit."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _decode_setting(value, inner)
    if origin in (frozenset, tuple):
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return origin(_decode_setting(element, item) for element in value)
    # bool is an int to Python; JSON keeps them apart, and so must we.
    if hint in (bool, int, str) and type(value) is hint:
        return value
    raise ValueError(f"expected {hint}, got {value!r}")


def settings_to_json(settings: GuildSettings) -> dict[str, Any]:
    """The values that differ from a new server's: only those are stored."""
    return {
        field.name: _encode_setting(getattr(settings, field.name))
        for field in dataclasses.fields(GuildSettings)
        if getattr(settings, field.name) != getattr(_DEFAULT_SETTINGS, field.name)
    }


def settings_from_json(data: Mapping[str, Any]) -> GuildSettings:
    """Stored JSON -> settings. Unknown keys (a removed setting, or a newer Atelier's)
    are ignored; missing ones keep the default; a value of the wrong shape falls back
    to the default with a warning rather than locking the server out of the bot."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(GuildSettings):
        if field.name not in data:
            continue
        try:
            values[field.name] = _decode_setting(data[field.name], _SETTING_TYPES[field.name])
        except ValueError as exc:
            log.warning("ignoring stored setting %s: %s", field.name, exc)
    return GuildSettings(**values)


class SettingsRepository:
    """A server's settings (one JSON object) and its members' preferences."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    async def get(self, guild_id: int) -> GuildSettings:
        """The server's settings; a new server's defaults when it never changed any."""
        row = await self._db.fetch_one(
            "SELECT data FROM guild_settings WHERE guild_id = ?", (guild_id,)
        )
        return GuildSettings() if row is None else settings_from_json(json.loads(row["data"]))

    async def save(self, guild_id: int, settings: GuildSettings) -> None:
        known = {field.name for field in dataclasses.fields(GuildSettings)}
        async with self._db.transaction():
            await ensure_guild(self._db, guild_id, to_db_time(self._clock()))
            row = await self._db.fetch_one(
                "SELECT data FROM guild_settings WHERE guild_id = ?", (guild_id,)
            )
            # Keep keys this version does not know: after running a newer Atelier and
            # going back, saving here must not wipe what the newer one stored.
            stored: dict[str, Any] = {} if row is None else json.loads(row["data"])
            data = {key: value for key, value in stored.items() if key not in known}
            data.update(settings_to_json(settings))
            await self._db.execute(
                "INSERT INTO guild_settings (guild_id, data) VALUES (?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET data = excluded.data",
                (guild_id, json.dumps(data, ensure_ascii=False, sort_keys=True)),
            )

    async def critique_opt_in(self, guild_id: int, user_id: int) -> bool:
        """Whether the member lets others ask for critiques of their messages here.
        Never asked: no."""
        row = await self._db.fetch_one(
            "SELECT critique_opt_in FROM member_prefs WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
        )
        return row is not None and row["critique_opt_in"] == 1

    async def set_critique_opt_in(self, guild_id: int, user_id: int, value: bool) -> None:
        async with self._db.transaction():
            await ensure_guild(self._db, guild_id, to_db_time(self._clock()))
            await self._db.execute(
                "INSERT INTO member_prefs (guild_id, user_id, critique_opt_in) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id, user_id)"
                " DO UPDATE SET critique_opt_in = excluded.critique_opt_in",
                (guild_id, user_id, int(value)),
            )

    async def forget_member(self, guild_id: int, user_id: int) -> None:
        """Delete the member's preferences in this server."""
        await self._db.execute(
            "DELETE FROM member_prefs WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )
