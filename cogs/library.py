"""A server's library in Discord: /history, /show, /favourites, /hall-of-fame, /forget-me,
and the bookkeeping of which servers the bot is in (so departed ones can be purged).

Pages are ephemeral messages with ◀ ▶ buttons. Each button is a ``DynamicItem`` whose
custom_id carries the filters and the cursor of the page it leads to, so paging needs no
memory in the bot and keeps working after a restart. Pages are keyset-paged (never an
offset over the whole history): ▶ asks for what is older than the page's last entry;
◀ walks down from the newest to the entries just above the page's first one, which
costs one indexed query per 25 newer entries and needs nothing the services don't offer.

Everything is scoped by the server the interaction comes from; members appear as
mentions, and every message is sent with ``AllowedMentions.none()``, so nobody is pinged.
"""

from __future__ import annotations

import io
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.client import send_error
from bot.domain import FavouriteEntry, RequestRecord, RequestStatus
from bot.errors import UserFacingError
from bot.services.library import PAGE_MAX, not_found
from bot.services.styles import CREATIVE_COMMANDS
from bot.storage.repositories import to_db_time
from bot.text import defuse_mentions
from cogs.presenter import (
    NO_PINGS,
    Outcome,
    Part,
    channel_nsfw,
    clip,
    creation_view,
    masker,
    render_final,
)

if TYPE_CHECKING:
    from bot.client import AtelierBot

log = logging.getLogger(__name__)

Interaction = discord.Interaction["AtelierBot"]

PAGE_SIZE = 10
SUBJECT_CHARS = 60
PURGE_EVERY_HOURS = 6

COMMAND_CHOICES = [app_commands.Choice(name=f"/{c}", value=c) for c in CREATIVE_COMMANDS]
COMMAND_LABELS = {"poem": "Poem", "script": "Scene", "critique": "Critique"}
# The member's own words that say what a creation is about, by command.
SUBJECT_INPUTS = {"poem": "theme", "script": "premise", "critique": "text"}
STATUS_ICONS = {
    RequestStatus.QUEUED: "⏳",
    RequestStatus.RUNNING: "✍️",
    RequestStatus.DONE: "✅",
    RequestStatus.FAILED: "⚠️",
    RequestStatus.CANCELLED: "✖️",
    RequestStatus.TIMED_OUT: "⌛",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Discord ids and request ids fit SQLite's 64-bit integers in 19 digits; a longer one
# is forged and matches no template.
_ID = r"[0-9]{1,19}"
_MICROS = r"[0-9]{1,17}"  # microseconds since 1970: up to the year 5138
_COMMAND = r"[a-z]{1,12}|\*"


# ------------------------------------------------------------------------ paging


class Ordered(Protocol):
    def __gt__(self, other: Any, /) -> bool: ...


T = TypeVar("T")
K = TypeVar("K", bound=Ordered)  # a cursor: larger is newer
# Entries strictly older than the cursor (None: from the newest), newest first.
Fetch = Callable[[K | None, int], Awaitable[list[T]]]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_newer: bool
    has_older: bool


@dataclass(frozen=True, slots=True)
class Keyset(Generic[K, T]):
    """A newest-first list read in keyset pages."""

    fetch: Fetch[K, T]
    key: Callable[[T], K]  # an entry's cursor

    async def older(self, cursor: K | None = None, size: int = PAGE_SIZE) -> Page[T]:
        """The page after ``cursor`` (one extra entry says whether there is more)."""
        items = await self.fetch(cursor, size + 1)
        return Page(items[:size], has_newer=cursor is not None, has_older=len(items) > size)

    async def newer(self, anchor: K, size: int = PAGE_SIZE) -> Page[T]:
        """The ``size`` entries just newer than ``anchor``, found by walking down from
        the newest in chunks (keyset pages only go one way). Near the top: the first
        page."""
        window: deque[T] = deque(maxlen=size + 1)  # +1: is there anything newer still?
        cursor: K | None = None
        while True:
            chunk = await self.fetch(cursor, PAGE_MAX)
            newer = [item for item in chunk if self.key(item) > anchor]
            window.extend(newer)
            if len(newer) < len(chunk) or len(chunk) < PAGE_MAX:
                break
            cursor = self.key(chunk[-1])
        if len(window) <= size:
            return await self.older(size=size)
        return Page(list(window)[1:], has_newer=True, has_older=True)

    async def page(self, way: str, anchor: K | None) -> Page[T]:
        """◀ (``way`` "n": newer than anchor) or ▶ ("o": older; None: the first page)."""
        if way == "n" and anchor is not None:
            return await self.newer(anchor)
        return await self.older(anchor)


@dataclass(frozen=True, slots=True)
class Filters:
    """Whose creations, and of which command; encoded into a button's custom_id."""

    user_id: int | None = None
    command: str | None = None

    @property
    def encoded(self) -> str:
        return f"{self.user_id or 0}:{self.command or '*'}"

    @classmethod
    def decode(cls, user: str, command: str) -> Filters:
        return cls(int(user) or None, None if command == "*" else command)

    def describe(self) -> str:
        parts = []
        if self.user_id is not None:
            parts.append(f"by <@{self.user_id}>")
        if self.command is not None:
            parts.append(f"/{self.command} only")
        return "".join(f" · {p}" for p in parts)


def pager_buttons(
    item: Callable[[str, str, bool], discord.ui.Item[Any]],
    *,
    newer: str,
    older: str,
    page: Page[Any],
) -> discord.ui.View:
    """◀ and ▶ from the ``item`` factory (way, anchor, disabled)."""
    view = discord.ui.View(timeout=None)
    view.add_item(item("n", newer, not page.has_newer))
    view.add_item(item("o", older, not page.has_older))
    return view


def arrow(
    way: str, custom_id: str, disabled: bool, labels: tuple[str, str] = ("Newer", "Older")
) -> discord.ui.Button[discord.ui.View]:
    """◀ (``way`` "n") or ▶ ("o"), labelled (◀ label, ▶ label)."""
    return discord.ui.Button(
        emoji="◀️" if way == "n" else "▶️",
        label=labels[0] if way == "n" else labels[1],
        style=discord.ButtonStyle.secondary,
        custom_id=custom_id,
        disabled=disabled,
    )


async def turn_page(
    interaction: Interaction, render: Callable[[], Awaitable[tuple[str, discord.ui.View]]]
) -> None:
    """Answer a ◀ ▶ click by editing the page in place; refusals reach the clicker."""
    try:
        content, view = await render()
    except UserFacingError as refusal:
        await send_error(interaction, refusal.message)
        return
    await interaction.response.edit_message(content=content, view=view, allowed_mentions=NO_PINGS)


# ---------------------------------------------------------------- how lines look


def subject_of(record: RequestRecord) -> str | None:
    key = SUBJECT_INPUTS.get(record.command)
    value = record.inputs.get(key) if key else None
    if not isinstance(value, str) or not value.strip():
        return None
    return discord.utils.escape_markdown(defuse_mentions(clip(value, SUBJECT_CHARS)))


def summary(record: RequestRecord) -> str:
    """One line about a creation: number, kind, badges, subject, and who asked."""
    parts = [f"**{COMMAND_LABELS.get(record.command, record.command.title())}**"]
    for key in ("form", "genre", "focus"):
        value = record.inputs.get(key)
        if isinstance(value, str) and value:
            parts.append(discord.utils.escape_markdown(value))
    style = record.inputs.get("style")
    if isinstance(style, str) and style:
        parts.append(f"🎨 {discord.utils.escape_markdown(style)}")
    if record.inputs.get("continue_of") is not None:
        parts.append("➕")
    subject = subject_of(record)
    if subject:
        parts.append(f"*{subject}*")
    return f"`#{record.id}` {' · '.join(parts)} — <@{record.user_id}>"


def relative_time(moment: datetime) -> str:
    return f"<t:{int(moment.timestamp())}:R>"


def favourite_line(entry: FavouriteEntry) -> str:
    return f"{summary(entry.request)} · ⭐ {entry.stars}"


# ---------------------------------------------------------------------- /history


def history_fetch(bot: AtelierBot, guild_id: int, filters: Filters) -> Fetch[int, RequestRecord]:
    async def fetch(before_id: int | None, limit: int) -> list[RequestRecord]:
        return await bot.runtime.library.history(
            guild_id,
            user_id=filters.user_id,
            command=filters.command,
            before_id=before_id,
            limit=limit,
        )

    return fetch


def record_key(record: RequestRecord) -> int:
    return record.id


async def history_message(
    interaction: Interaction, filters: Filters, way: str = "o", anchor: int | None = None
) -> tuple[str, discord.ui.View]:
    assert interaction.guild_id is not None  # guild_only
    fetch = history_fetch(interaction.client, interaction.guild_id, filters)
    page = await Keyset(fetch, record_key).page(way, anchor)
    lines = [f"📜 **History** of this server{filters.describe()}", ""]
    if page.items:
        lines += [
            f"{STATUS_ICONS[r.status]} {summary(r)} · {relative_time(r.created_at)}"
            for r in page.items
        ]
        lines += ["", "`/show id:<number>` posts a creation again, with its buttons."]
    else:
        lines.append("Nothing here yet." if not page.has_newer else "Nothing older.")
    first = page.items[0].id if page.items else 0
    last = page.items[-1].id if page.items else 0

    def item(way: str, anchor: str, disabled: bool) -> HistoryButton:
        return HistoryButton(filters, way, int(anchor), disabled=disabled)

    view = pager_buttons(item, newer=str(first), older=str(last), page=page)
    return "\n".join(lines), view


class HistoryButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"atelier:hist:(?P<user>{_ID}):(?P<command>{_COMMAND}):(?P<way>[on])(?P<anchor>{_ID})",
):
    def __init__(self, filters: Filters, way: str, anchor: int, *, disabled: bool = False) -> None:
        custom_id = f"atelier:hist:{filters.encoded}:{way}{anchor}"
        super().__init__(arrow(way, custom_id, disabled))
        self.filters, self.way, self.anchor = filters, way, anchor

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        filters = Filters.decode(match["user"], match["command"])
        return cls(filters, match["way"], int(match["anchor"]))

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        await turn_page(
            interaction, lambda: history_message(interaction, self.filters, self.way, self.anchor)
        )


# -------------------------------------------------------------------- favourites


def stamp_of(entry: FavouriteEntry) -> tuple[int, int]:
    """An anthology cursor as integers (microseconds since 1970, request id): short
    enough for a custom_id, and ordered like the anthology."""
    return ((entry.last_starred_at - _EPOCH) // timedelta(microseconds=1), entry.request.id)


def favourites_fetch(
    bot: AtelierBot, guild_id: int, filters: Filters
) -> Fetch[tuple[int, int], FavouriteEntry]:
    async def fetch(cursor: tuple[int, int] | None, limit: int) -> list[FavouriteEntry]:
        before = None
        if cursor is not None:
            micros, request_id = cursor
            before = (to_db_time(_EPOCH + timedelta(microseconds=micros)), request_id)
        return await bot.runtime.library.anthology(
            guild_id,
            author_id=filters.user_id,
            command=filters.command,
            before=before,
            limit=limit,
        )

    return fetch


async def favourites_message(
    interaction: Interaction,
    filters: Filters,
    way: str = "o",
    anchor: tuple[int, int] | None = None,
) -> tuple[str, discord.ui.View]:
    assert interaction.guild_id is not None  # guild_only
    fetch = favourites_fetch(interaction.client, interaction.guild_id, filters)
    page = await Keyset(fetch, stamp_of).page(way, anchor)
    lines = [f"⭐ **Favourites** of this server{filters.describe()}, newest star first", ""]
    if page.items:
        lines += [favourite_line(entry) for entry in page.items]
        lines += ["", "`/show id:<number>` posts one again; `/favourites export` saves them."]
    elif page.has_newer:
        lines.append("Nothing older.")
    else:
        lines.append("No favourites yet: press ⭐ on a creation you love.")
    first = stamp_of(page.items[0]) if page.items else (0, 0)
    last = stamp_of(page.items[-1]) if page.items else (0, 0)

    def item(way: str, anchor: str, disabled: bool) -> FavouritesButton:
        micros, request_id = anchor.split(".")
        return FavouritesButton(filters, way, (int(micros), int(request_id)), disabled=disabled)

    view = pager_buttons(
        item, newer=f"{first[0]}.{first[1]}", older=f"{last[0]}.{last[1]}", page=page
    )
    return "\n".join(lines), view


class FavouritesButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=(
        rf"atelier:favs:(?P<user>{_ID}):(?P<command>{_COMMAND}):"
        rf"(?P<way>[on])(?P<micros>{_MICROS})\.(?P<anchor>{_ID})"
    ),
):
    def __init__(
        self, filters: Filters, way: str, anchor: tuple[int, int], *, disabled: bool = False
    ) -> None:
        custom_id = f"atelier:favs:{filters.encoded}:{way}{anchor[0]}.{anchor[1]}"
        super().__init__(arrow(way, custom_id, disabled))
        self.filters, self.way, self.anchor = filters, way, anchor

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        filters = Filters.decode(match["user"], match["command"])
        return cls(filters, match["way"], (int(match["micros"]), int(match["anchor"])))

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        await turn_page(
            interaction,
            lambda: favourites_message(interaction, self.filters, self.way, self.anchor),
        )


# ------------------------------------------------------------------ hall of fame


async def hall_message(
    interaction: Interaction, command: str | None, offset: int = 0
) -> tuple[str, discord.ui.View]:
    assert interaction.guild_id is not None  # guild_only
    entries = await interaction.client.runtime.library.hall_of_fame(
        interaction.guild_id, command=command, limit=PAGE_SIZE + 1, offset=offset
    )
    page = Page(entries[:PAGE_SIZE], has_newer=offset > 0, has_older=len(entries) > PAGE_SIZE)
    shown = f" · /{command} only" if command else ""
    lines = [f"🏆 **Hall of fame** of this server{shown}: the most-starred creations", ""]
    if page.items:
        lines += [
            f"{offset + rank}. {favourite_line(entry)}"
            for rank, entry in enumerate(page.items, start=1)
        ]
    else:
        lines.append("Nothing starred yet: press ⭐ on a creation you love.")

    def item(way: str, target: str, disabled: bool) -> HallButton:
        return HallButton(command, int(target), way, disabled=disabled)

    view = pager_buttons(
        item,
        newer=str(max(offset - PAGE_SIZE, 0)),
        older=str(offset + PAGE_SIZE),
        page=page,
    )
    return "\n".join(lines), view


class HallButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"atelier:hof:(?P<command>{_COMMAND}):(?P<offset>[0-9]{{1,7}})",
):
    """◀ ▶ of the hall of fame: ranked, so paged by offset (◀ and ▶ never share one)."""

    def __init__(
        self, command: str | None, offset: int, way: str = "o", *, disabled: bool = False
    ) -> None:
        custom_id = f"atelier:hof:{command or '*'}:{offset}"
        super().__init__(arrow(way, custom_id, disabled, labels=("Previous", "Next")))
        self.command, self.offset = command, offset

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        command = None if match["command"] == "*" else match["command"]
        return cls(command, int(match["offset"]))

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        await turn_page(interaction, lambda: hall_message(interaction, self.command, self.offset))


# -------------------------------------------------------------------------- /show


async def creation_parts(bot: AtelierBot, record: RequestRecord) -> list[Part]:
    """A stored creation as its final reply looked, with live buttons and its stars."""
    parts = render_final(record, Outcome.of_record(record), await masker(bot, record.guild_id))
    first, *rest = parts
    if first.view is not None:
        stars = await bot.runtime.library.stars(record.guild_id, record.id)
        first = replace(first, view=creation_view(record, stars))
    return [first, *rest]


async def check_may_post(interaction: Interaction, record: RequestRecord) -> None:
    """A re-post follows the server's rules for where creations may appear."""
    runtime = interaction.client.runtime
    settings = await runtime.policy.settings(interaction.guild_id)
    allowed = settings.allowed_channel_ids
    if allowed and interaction.channel_id not in allowed:
        shown = " ".join(f"<#{c}>" for c in sorted(allowed)[:5])
        raise UserFacingError(
            f"Creations are shown only in this server's creative channels: {shown}"
        )
    style_name = record.inputs.get("style")
    if not isinstance(style_name, str) or not settings.mature_only_in_age_restricted:
        return
    style = await runtime.styles.get(interaction.guild_id, style_name)
    if style is not None and style.mature and not channel_nsfw(interaction):
        raise UserFacingError(
            f"Creation #{record.id} is in the style `{style.name}`, which this server keeps "
            "to age-restricted channels. Show it in one of those."
        )


# --------------------------------------------------------------------- /forget-me


class ForgetButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"atelier:forget:(?P<user>{_ID}):(?P<answer>yes|no)",
):
    """Confirm / Keep my data under /forget-me. The clicker is the one forgotten: the id
    in the custom_id only has to agree with them (it always does on an ephemeral
    message, but a copied custom_id must never forget someone else)."""

    def __init__(self, user_id: int, answer: str) -> None:
        confirm = answer == "yes"
        super().__init__(
            discord.ui.Button(
                label="Confirm: delete my data" if confirm else "Keep my data",
                emoji="🧹" if confirm else None,
                style=discord.ButtonStyle.danger if confirm else discord.ButtonStyle.secondary,
                custom_id=f"atelier:forget:{user_id}:{answer}",
            )
        )
        self.user_id, self.answer = user_id, answer

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(int(match["user"]), match["answer"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        if interaction.user.id != self.user_id:
            await send_error(interaction, "This confirmation is someone else's: use /forget-me.")
            return
        if self.answer == "no":
            await interaction.response.edit_message(
                content="👍 Nothing was deleted. Your creations and stars stay as they are.",
                view=None,
                allowed_mentions=NO_PINGS,
            )
            return
        requests, stars = await interaction.client.runtime.library.forget_member(
            interaction.guild_id, interaction.user.id
        )
        where = "this server" if interaction.guild_id is not None else "our direct messages"
        await interaction.response.edit_message(
            content=(
                f"🧹 Done. I deleted what I kept about you in {where}: "
                f"{plural(requests, 'creation')} and {plural(stars, 'star')} you gave. "
                "Messages already posted stay in their channels; delete them in Discord "
                "if you like (their buttons no longer work)."
            ),
            view=None,
            allowed_mentions=NO_PINGS,
        )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def forget_view(user_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton(user_id, "yes"))
    view.add_item(ForgetButton(user_id, "no"))
    return view


# --------------------------------------------------------------------------- cog


def display_names(guild: discord.Guild | None) -> Mapping[int, str]:
    """Names for an export's credits, from the members the bot has seen (no lookups)."""
    return {} if guild is None else {m.id: m.display_name for m in guild.members}


class Library(commands.Cog):
    favourites = app_commands.Group(
        name="favourites",
        description="This server's anthology: the creations members starred",
        guild_only=True,
    )

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.purge.start()

    async def cog_unload(self) -> None:
        self.purge.cancel()

    # ------------------------------------------------------------ commands

    @app_commands.command(name="history")
    @app_commands.guild_only()
    @app_commands.describe(
        member="Only this member's requests", command="Only requests of this command"
    )
    @app_commands.choices(command=COMMAND_CHOICES)
    async def history(
        self,
        interaction: Interaction,
        member: discord.User | None = None,
        command: str | None = None,
    ) -> None:
        """Page through this server's recent requests."""
        filters = Filters(None if member is None else member.id, command)
        content, view = await history_message(interaction, filters)
        await interaction.response.send_message(
            content, view=view, ephemeral=True, allowed_mentions=NO_PINGS
        )

    @app_commands.command(name="show")
    @app_commands.guild_only()
    @app_commands.describe(id="The creation's number (the #… in its reply or in /history)")
    async def show(
        self,
        interaction: Interaction,
        id: app_commands.Range[int, 1, 2**53],
    ) -> None:
        """Post a creation of this server again, with its buttons."""
        record = await self.bot.runtime.library.get(
            interaction.guild_id, id, user_id=interaction.user.id
        )
        if record is None:
            raise not_found(id)
        if record.status is not RequestStatus.DONE:
            raise UserFacingError(
                f"Creation #{id} did not finish ({record.status.value.replace('_', ' ')}), "
                "so there is nothing to show."
            )
        await check_may_post(interaction, record)
        first, *rest = await creation_parts(self.bot, record)
        await interaction.response.send_message(**first.send_kwargs())
        for part in rest:
            await interaction.followup.send(**part.send_kwargs())

    @favourites.command(name="list")
    @app_commands.describe(
        member="Only creations by this member", command="Only creations of this command"
    )
    @app_commands.choices(command=COMMAND_CHOICES)
    async def favourites_list(
        self,
        interaction: Interaction,
        member: discord.User | None = None,
        command: str | None = None,
    ) -> None:
        """Page through the server's starred creations, newest star first."""
        filters = Filters(None if member is None else member.id, command)
        content, view = await favourites_message(interaction, filters)
        await interaction.response.send_message(
            content, view=view, ephemeral=True, allowed_mentions=NO_PINGS
        )

    @favourites.command(name="export")
    @app_commands.describe(
        member="Only creations by this member", command="Only creations of this command"
    )
    @app_commands.choices(command=COMMAND_CHOICES)
    async def favourites_export(
        self,
        interaction: Interaction,
        member: discord.User | None = None,
        command: str | None = None,
    ) -> None:
        """Download the anthology as Markdown (and scenes as Fountain)."""
        assert interaction.guild_id is not None  # guild_only
        await interaction.response.defer(ephemeral=True, thinking=True)
        files = await self.bot.runtime.library.export(
            interaction.guild_id,
            author_id=None if member is None else member.id,
            command=command,
            names=display_names(interaction.guild),
        )
        whose = "this server's" if member is None else f"<@{member.id}>'s"
        only = f" (/{command} only)" if command else ""
        await interaction.edit_original_response(
            content=f"📚 {whose} anthology{only}: {', '.join(name for name, _ in files)}.",
            attachments=[discord.File(io.BytesIO(data), filename=name) for name, data in files],
            allowed_mentions=NO_PINGS,
        )

    @app_commands.command(name="hall-of-fame")
    @app_commands.guild_only()
    @app_commands.describe(command="Only creations of this command")
    @app_commands.choices(command=COMMAND_CHOICES)
    async def hall_of_fame(self, interaction: Interaction, command: str | None = None) -> None:
        """The server's most-starred creations."""
        content, view = await hall_message(interaction, command)
        await interaction.response.send_message(
            content, view=view, ephemeral=True, allowed_mentions=NO_PINGS
        )

    @app_commands.command(name="forget-me")
    async def forget_me(self, interaction: Interaction) -> None:
        """Delete your requests and favourites in this server (asks first)."""
        where = "this server" if interaction.guild_id is not None else "our direct messages"
        await interaction.response.send_message(
            f"🧹 This deletes everything I keep about you in {where}: your requests and "
            "creations (with the stars others gave them) and the stars you gave. "
            "It cannot be undone. Are you sure?",
            view=forget_view(interaction.user.id),
            ephemeral=True,
            allowed_mentions=NO_PINGS,
        )

    # ------------------------------------------------- servers come and go

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.bot.runtime.guilds.joined(guild.id)

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        # Proof of membership too: discord.py reports a GUILD_CREATE that says
        # "unavailable": false as available rather than joined, even for a new server.
        await self.bot.runtime.guilds.joined(guild.id)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        # Starts the clock: its data is purged settings.purge_after_days later.
        await self.bot.runtime.guilds.left(guild.id)
        log.info("left guild %s; its data is purged after %d days", guild.id, self.days)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        # Joins and departures while the bot was offline produce no events.
        await self.bot.runtime.guilds.sync([guild.id for guild in self.bot.guilds])

    @property
    def days(self) -> int:
        return self.bot.settings.purge_after_days

    @tasks.loop(hours=PURGE_EVERY_HOURS)
    async def purge(self) -> None:
        """Delete the data of servers left more than ``purge_after_days`` ago; at start,
        then every few hours."""
        try:
            await self.bot.runtime.library.purge_departed(self.days)
        except Exception:
            # A failed run must not end the loop: the next one tries again.
            log.exception("purging departed servers failed")


async def setup(bot: AtelierBot) -> None:
    # Persistent: buttons on pages sent before a restart still reach us.
    bot.add_dynamic_items(HistoryButton, FavouritesButton, HallButton, ForgetButton)
    await bot.add_cog(Library(bot))


async def teardown(bot: AtelierBot) -> None:
    bot.remove_dynamic_items(HistoryButton, FavouritesButton, HallButton, ForgetButton)
