"""A server's library: its history, its favourites anthology, exports, and forgetting.

Every call names the server, and the repositories scope every query by it, so one
server can never see, star, delete or export another's creations. Deleting the Discord
message of a deleted creation is the cog's job; this module knows nothing of Discord.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.domain import FavouriteEntry, RequestRecord, RequestStatus, utcnow
from bot.errors import InvalidInput, UserFacingError
from bot.fountain import title_page, to_fountain
from bot.services.styles import CREATIVE_COMMANDS
from bot.storage.repositories import to_db_time
from bot.text import defuse_mentions

if TYPE_CHECKING:
    from bot.storage.library import FavouriteRepository, SettingsRepository
    from bot.storage.repositories import GuildRepository, RequestRepository

log = logging.getLogger(__name__)

PAGE_MAX = 25  # Discord shows at most 25 fields or options; no page needs more
EXPORT_MAX_ENTRIES = 1000  # keeps an export well under Discord's attachment limit
ANTHOLOGY_FILE = "anthology.md"
SCRIPTS_FILE = "scripts.fountain"

_COMMAND_TITLES = {"poem": "Poem", "script": "Scene", "critique": "Critique"}
# The member's own words that say what a creation is about, by command.
_SUBJECT_INPUTS = {"poem": "theme", "script": "premise"}
_BACKTICKS = re.compile(r"`+")


def _check_page(limit: int, command: str | None, offset: int = 0) -> None:
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidInput(f"A page shows from 1 to {PAGE_MAX} creations.")
    if offset < 0:
        raise InvalidInput("The page number can't be negative.")
    if command is not None and command not in CREATIVE_COMMANDS:
        raise InvalidInput(f"Pick one of {', '.join(CREATIVE_COMMANDS)}.")


def not_found(request_id: int) -> UserFacingError:
    return UserFacingError(f"I can't find creation #{request_id} in this server.")


class LibraryService:
    def __init__(
        self,
        requests: RequestRepository,
        favourites: FavouriteRepository,
        guilds: GuildRepository,
        settings: SettingsRepository,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._requests = requests
        self._favourites = favourites
        self._guilds = guilds
        self._settings = settings
        self._clock = clock

    async def history(
        self,
        guild_id: int | None,
        *,
        user_id: int | None = None,
        command: str | None = None,
        before_id: int | None = None,
        limit: int = 10,
    ) -> list[RequestRecord]:
        """The server's requests, newest first; pass the last id as ``before_id`` for
        the next page. In DMs (guild None) only the member's own, so ``user_id`` is
        required there."""
        _check_page(limit, command)
        if guild_id is None and user_id is None:
            raise ValueError("direct-message history must name the member")
        return await self._requests.recent(
            guild_id, user_id=user_id, command=command, limit=limit, before_id=before_id
        )

    async def get(
        self, guild_id: int | None, request_id: int, *, user_id: int | None = None
    ) -> RequestRecord | None:
        """A creation of this server (in DMs: of this member, so ``user_id`` is needed)."""
        if guild_id is None and user_id is None:
            return None
        return await self._requests.get(
            guild_id, request_id, user_id=user_id if guild_id is None else None
        )

    async def toggle_favourite(
        self, guild_id: int | None, request_id: int, user_id: int
    ) -> tuple[bool, int]:
        """Star or unstar: (starred by this member now, total stars)."""
        if guild_id is None:
            raise UserFacingError(
                "Favourites belong to a server's anthology, so creations in direct "
                "messages can't be starred."
            )
        record = await self._requests.get(guild_id, request_id)
        if record is None:
            raise not_found(request_id)
        if record.status is not RequestStatus.DONE:
            raise UserFacingError("Only finished creations can be favourited.")
        result = await self._favourites.toggle(guild_id, request_id, user_id)
        if result is None:  # deleted between the two reads
            raise not_found(request_id)
        return result

    async def stars(self, guild_id: int | None, request_id: int) -> int:
        if guild_id is None:
            return 0
        return await self._favourites.stars(guild_id, request_id)

    async def starred_by(self, guild_id: int | None, request_id: int, user_id: int) -> bool:
        if guild_id is None:
            return False
        return await self._favourites.starred_by(guild_id, request_id, user_id)

    async def anthology(
        self,
        guild_id: int,
        *,
        author_id: int | None = None,
        command: str | None = None,
        before: tuple[str, int] | None = None,
        limit: int = 10,
    ) -> list[FavouriteEntry]:
        """Starred creations, newest star first. For the next page pass ``before`` =
        ``anthology_cursor(last entry)``."""
        _check_page(limit, command)
        return await self._favourites.anthology(
            guild_id, author_id=author_id, command=command, before=before, limit=limit
        )

    async def hall_of_fame(
        self, guild_id: int, *, command: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[FavouriteEntry]:
        """The most-starred creations, ties newest first."""
        _check_page(limit, command, offset)
        return await self._favourites.hall_of_fame(
            guild_id, command=command, limit=limit, offset=offset
        )

    async def export(
        self,
        guild_id: int,
        *,
        author_id: int | None = None,
        command: str | None = None,
        names: Mapping[int, str] | None = None,
    ) -> list[tuple[str, bytes]]:
        """The anthology as files: ``anthology.md``, plus ``scripts.fountain`` when it
        holds scenes. ``names`` maps member ids to display names for the credits
        (plain text; anyone missing is "member <id>"). ``UserFacingError`` if empty."""
        _check_page(1, command)
        entries: list[FavouriteEntry] = []
        before: tuple[str, int] | None = None
        while len(entries) < EXPORT_MAX_ENTRIES:
            page = await self._favourites.anthology(
                guild_id,
                author_id=author_id,
                command=command,
                before=before,
                limit=min(PAGE_MAX * 4, EXPORT_MAX_ENTRIES - len(entries)),
            )
            if not page:
                break
            entries.extend(page)
            before = anthology_cursor(page[-1])
        if not entries:
            whose = "this member's" if author_id is not None else "this server's"
            raise UserFacingError(
                f"There is nothing in {whose} anthology yet: star a creation with ⭐ first."
            )
        names = names or {}
        files = [(ANTHOLOGY_FILE, self._markdown(entries, names, author_id).encode("utf-8"))]
        scripts = [e for e in entries if e.request.command == "script" and e.request.output]
        if scripts:
            files.append((SCRIPTS_FILE, _fountain(scripts, names).encode("utf-8")))
        return files

    def _markdown(
        self, entries: list[FavouriteEntry], names: Mapping[int, str], author_id: int | None
    ) -> str:
        heading = "# Favourites anthology"
        if author_id is not None:
            heading += f": {_credit(author_id, names)}"
        lines = [
            heading,
            "",
            f"{len(entries)} creations, exported {self._clock():%Y-%m-%d %H:%M} UTC, "
            "newest favourite first.",
        ]
        if len(entries) >= EXPORT_MAX_ENTRIES:
            lines.append(f"Only the {EXPORT_MAX_ENTRIES} most recently starred are included.")
        for entry in entries:
            lines.extend(["", *_markdown_entry(entry, names)])
        return "\n".join(lines) + "\n"

    async def delete(
        self, guild_id: int | None, request_id: int, *, user_id: int, moderator: bool
    ) -> bool:
        """Delete a creation (its favourites go with it). Only its member or a
        moderator may; ``UserFacingError`` otherwise, or if it is not here."""
        record = await self.get(guild_id, request_id, user_id=user_id)
        if record is None:
            raise not_found(request_id)
        if record.user_id != user_id and not moderator:
            raise UserFacingError(
                "Only the member who asked for this creation, or a moderator, can delete it."
            )
        if not record.is_finished:
            # Its job would still be writing into a row that no longer exists.
            raise UserFacingError("This creation is still being written: cancel it first.")
        deleted = await self._requests.delete(
            guild_id, request_id, user_id=user_id if guild_id is None else None
        )
        if not deleted:
            raise not_found(request_id)
        log.info("guild %s: creation %s deleted by %s", guild_id, request_id, user_id)
        return True

    async def forget_member(self, guild_id: int | None, user_id: int) -> tuple[int, int]:
        """Delete a member's data in one server: their requests (stars others gave
        them go too), their stars on others' creations, their preferences.
        Returns (requests deleted, stars removed)."""
        stars = 0
        if guild_id is not None:
            stars = await self._favourites.forget_member(guild_id, user_id)
            await self._settings.forget_member(guild_id, user_id)
        requests = await self._requests.forget_member(guild_id, user_id)
        log.info("guild %s: forgot a member (%d requests, %d stars)", guild_id, requests, stars)
        return requests, stars

    async def purge_departed(self, older_than_days: int) -> int:
        """Delete everything of servers the bot left more than that many days ago."""
        if older_than_days < 0:
            raise ValueError("older_than_days must not be negative")
        return await self._guilds.purge_left_before(self._clock() - timedelta(days=older_than_days))


def anthology_cursor(entry: FavouriteEntry) -> tuple[str, int]:
    """The keyset cursor after ``entry``: (last starred as stored text, request id)."""
    return (to_db_time(entry.last_starred_at), entry.request.id)


def _credit(user_id: int, names: Mapping[int, str]) -> str:
    name = names.get(user_id)
    # Display names are member-chosen: one plain line, nothing that looks like a mention.
    return defuse_mentions(" ".join(name.split())) if name else f"member {user_id}"


def _plain(text: str) -> str:
    return defuse_mentions(" ".join(text.split()))


def _badge(record: RequestRecord) -> str:
    title = _COMMAND_TITLES.get(record.command, record.command.title())
    parts = [title]
    for key in ("form", "genre", "focus"):
        value = record.inputs.get(key)
        if isinstance(value, str) and value:
            parts.append(value)
    style = record.inputs.get("style")
    if isinstance(style, str) and style:
        parts.append(f"style: {style}")
    if record.inputs.get("continue_of") is not None:
        parts.append("continued")
    return " · ".join(parts)


def _subject(record: RequestRecord) -> str | None:
    key = _SUBJECT_INPUTS.get(record.command)
    value = record.inputs.get(key) if key else None
    return _plain(value) if isinstance(value, str) and value.strip() else None


def _markdown_entry(entry: FavouriteEntry, names: Mapping[int, str]) -> list[str]:
    record = entry.request
    subject = _subject(record)
    title = f"## #{record.id} · {_badge(record)}"
    if subject:
        title += f" — {subject}"
    stars = "star" if entry.stars == 1 else "stars"
    text = (record.output or "").strip()
    # A fence longer than any run of backticks in the text can't be closed by it.
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [
        title,
        "",
        f"By {_credit(record.user_id, names)} · ⭐ {entry.stars} {stars} · "
        f"{record.created_at:%Y-%m-%d}",
        "",
        f"{fence}text",
        text,
        fence,
    ]


def _fountain(entries: list[FavouriteEntry], names: Mapping[int, str]) -> str:
    """Every starred scene in one Fountain document, separated by page breaks."""
    authors = dict.fromkeys(_credit(e.request.user_id, names) for e in entries)
    parts = [title_page("Favourite scenes", ", ".join(authors)).rstrip("\n")]
    for entry in entries:
        record = entry.request
        subject = _subject(record) or "untitled"
        # A Fountain section names the scene and its credit without being printed.
        parts.append(
            f"# #{record.id}: {subject} ({_credit(record.user_id, names)}, ⭐ {entry.stars})"
        )
        setting = record.inputs.get("setting")
        parts.append(
            to_fountain(record.output or "", setting=setting if isinstance(setting, str) else None)
        )
        parts.append("===")
    return "\n\n".join(parts[:-1]) + "\n"
