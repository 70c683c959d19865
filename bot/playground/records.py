"""What the emulator remembers: the world (guilds, channels, members) and every message
and interaction, with monotonic timestamps so tests can assert on timing.

Records are plain mutable dataclasses owned by the emulator; tests read them and wait on
them (``InteractionRecord.wait_for``), only the emulator writes them.
"""

# Waiting helpers take a `timeout` argument on purpose: tests read better with it.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

DISCORD_EPOCH_MS = 1_420_070_400_000
INTERACTION_TOKEN_TTL = 15 * 60.0  # Discord keeps interaction webhooks alive for 15 minutes

# Message flags the emulator cares about (https://discord.com/developers/docs/resources/message)
EPHEMERAL = 1 << 6
LOADING = 1 << 7
IS_COMPONENTS_V2 = 1 << 15

T = TypeVar("T")


class EmulatorError(Exception):
    """The driving API was misused, or Discord itself would refuse the action."""


class CommandUnavailable(EmulatorError):
    """Discord would not offer this command to this member here (permissions, NSFW)."""


class ApiError(Exception):
    """A REST failure shaped like Discord's: HTTP status plus a JSON error code."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            data["errors"] = self.errors
        return data


def unknown_channel() -> ApiError:
    return ApiError(404, 10003, "Unknown Channel")


def unknown_message() -> ApiError:
    return ApiError(404, 10008, "Unknown Message")


class Snowflakes:
    """Discord-shaped ids: milliseconds since the Discord epoch, then a counter."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._counter) & 0x3FFFFF)


class Notifier:
    """Wakes everyone waiting on emulator state whenever anything changes."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(
        self, check: Callable[[], T | None], timeout: float, describe: Callable[[], str]
    ) -> T:
        """Return the first truthy ``check()``; raise TimeoutError saying what was seen."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout:.1f}s; {describe()}")
            event = self._event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)


# ---------------------------------------------------------------------------- the world


@dataclass
class UserRecord:
    id: int
    username: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": None if self.bot else self.username,
            "discriminator": "0000" if self.bot else "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass
class RoleRecord:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "hoist": False,
            "managed": self.managed,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }


@dataclass
class ChannelRecord:
    id: int
    guild_id: int
    name: str
    nsfw: bool = False
    position: int = 0
    type: int = 0  # GUILD_TEXT
    deleted: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "nsfw": self.nsfw,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }


@dataclass
class MemberRecord:
    user: UserRecord
    guild_id: int
    roles: tuple[int, ...] = ()
    joined_at: str = "2024-01-01T00:00:00+00:00"

    def payload(self, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": self.user.payload(),
            "roles": [str(r) for r in self.roles],
            "joined_at": self.joined_at,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
        }
        if permissions is not None:  # only interaction payloads carry computed permissions
            data["permissions"] = str(permissions)
        return data


@dataclass
class GuildRecord:
    id: int
    name: str
    owner_id: int
    roles: dict[int, RoleRecord] = field(default_factory=dict)
    channels: dict[int, ChannelRecord] = field(default_factory=dict)
    members: dict[int, MemberRecord] = field(default_factory=dict)


# ------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Attachment:
    id: int
    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ComponentRef:
    """An interactive component found anywhere in a message's component tree."""

    type: int  # 2 button, 3/5/6/7/8 selects
    custom_id: str | None
    label: str | None
    emoji: str | None
    style: int | None
    disabled: bool
    url: str | None
    raw: Mapping[str, Any]

    @property
    def display(self) -> str:
        """How a member sees the button: emoji then label."""
        return " ".join(part for part in (self.emoji, self.label) if part) or (
            self.custom_id or "?"
        )


def walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component in a tree: action rows, sections, containers and labels nest."""
    for component in components:
        yield component
        children = list(component.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(component.get(key), dict):
                children.append(component[key])
        yield from walk_components(children)


def _emoji_text(emoji: Any) -> str | None:
    if not isinstance(emoji, dict):
        return None
    if emoji.get("id"):
        return f":{emoji.get('name') or 'emoji'}:"
    name = emoji.get("name")
    return str(name) if name else None


@dataclass(frozen=True)
class Revision:
    """One state of a message: the first is how it was created, later ones are edits."""

    at: float
    content: str
    embeds: tuple[dict[str, Any], ...]
    components: tuple[dict[str, Any], ...]
    attachments: tuple[Attachment, ...]
    flags: int
    allowed_mentions: dict[str, Any] | None


@dataclass
class Message:
    id: int
    channel_id: int
    guild_id: int
    author_id: int
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    interaction_id: int | None = None
    interaction_user_id: int | None = None  # who may see it when ephemeral
    webhook_id: int | None = None
    created_at: float = field(default_factory=time.monotonic)
    timestamp: str = ""  # ISO 8601, what Discord reports
    edited_timestamp: str | None = None
    deleted_at: float | None = None
    revisions: list[Revision] = field(default_factory=list)
    reactions: list[str] = field(default_factory=list)  # emoji the bot reacted with
    raw_payloads: list[dict[str, Any]] = field(default_factory=list)  # bodies the bot sent

    def snapshot(self, at: float) -> None:
        self.revisions.append(
            Revision(
                at=at,
                content=self.content,
                embeds=tuple(self.embeds),
                components=tuple(self.components),
                attachments=tuple(self.attachments),
                flags=self.flags,
                allowed_mentions=self.allowed_mentions,
            )
        )

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred ("is thinking…") response not yet filled in."""
        return bool(self.flags & LOADING)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def edited_at(self) -> float | None:
        return self.revisions[-1].at if len(self.revisions) > 1 else None

    @property
    def last_change(self) -> float:
        times = [self.created_at, *(r.at for r in self.revisions)]
        if self.deleted_at is not None:
            times.append(self.deleted_at)
        return max(times)

    @property
    def history(self) -> list[str]:
        """The content of every revision, oldest first."""
        return [r.content for r in self.revisions]

    @property
    def interactive(self) -> list[ComponentRef]:
        found = []
        for c in walk_components(self.components):
            if c.get("type") in (2, 3, 5, 6, 7, 8):
                found.append(
                    ComponentRef(
                        type=c["type"],
                        custom_id=c.get("custom_id"),
                        label=c.get("label") or c.get("placeholder"),
                        emoji=_emoji_text(c.get("emoji")),
                        style=c.get("style"),
                        disabled=bool(c.get("disabled")),
                        url=c.get("url"),
                        raw=c,
                    )
                )
        return found

    @property
    def buttons(self) -> list[ComponentRef]:
        return [c for c in self.interactive if c.type == 2]

    @property
    def button_labels(self) -> list[str]:
        return [b.display for b in self.buttons]

    @property
    def custom_ids(self) -> list[str]:
        return [c.custom_id for c in self.interactive if c.custom_id]

    @property
    def text_displays(self) -> list[str]:
        """Text of components-v2 TextDisplay items (type 10)."""
        return [
            str(c.get("content", ""))
            for c in walk_components(self.components)
            if c.get("type") == 10
        ]

    def visible_to(self, user_id: int) -> bool:
        return not self.ephemeral or self.interaction_user_id == user_id

    @property
    def pings_everyone(self) -> bool:
        """Would ``@everyone``/``@here`` in the content notify anyone, given allowed_mentions?"""
        if "@everyone" not in self.content and "@here" not in self.content:
            return False
        return self.allowed_mentions is None or "everyone" in self.allowed_mentions.get("parse", [])

    @property
    def pinged_user_ids(self) -> list[int]:
        """Users mentioned in the content whom Discord would actually notify."""
        mentioned = [int(m) for m in re.findall(r"<@!?(\d+)>", self.content)]
        allowed = self.allowed_mentions
        if allowed is None or "users" in allowed.get("parse", []):
            return mentioned
        explicit = {int(u) for u in allowed.get("users", [])}
        return [u for u in mentioned if u in explicit]


# --------------------------------------------------------------------- interactions


class InteractionKind(IntEnum):
    APPLICATION_COMMAND = 2
    COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType(IntEnum):
    PONG = 1
    CHANNEL_MESSAGE = 4
    DEFERRED_CHANNEL_MESSAGE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9


@dataclass
class InteractionRecord:
    id: int
    token: str
    kind: InteractionKind
    name: str  # command name (with subcommand path) or component/modal custom_id
    user_id: int
    guild_id: int
    channel_id: int
    payload: dict[str, Any]  # exactly what went out over the gateway
    notifier: Notifier = field(repr=False)
    created_at: float = field(default_factory=time.monotonic)
    callback_type: CallbackType | None = None
    callback_at: float | None = None
    callback_data: dict[str, Any] | None = None
    source_message: Message | None = None  # the message whose component was used
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    expired: bool = False

    # -- reading

    @property
    def responded(self) -> bool:
        return self.callback_type is not None

    @property
    def response_latency(self) -> float | None:
        """Seconds from dispatch to the bot's first callback (Discord allows 3)."""
        return None if self.callback_at is None else self.callback_at - self.created_at

    @property
    def deferred(self) -> bool:
        return self.callback_type in (
            CallbackType.DEFERRED_CHANNEL_MESSAGE,
            CallbackType.DEFERRED_UPDATE_MESSAGE,
        )

    @property
    def modal(self) -> dict[str, Any] | None:
        if self.callback_type is CallbackType.MODAL:
            return self.callback_data
        return None

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        if self.callback_type is CallbackType.AUTOCOMPLETE_RESULT and self.callback_data:
            return list(self.callback_data.get("choices", []))
        return None

    @property
    def messages(self) -> list[Message]:
        """Messages this interaction produced (original first), deleted ones left out."""
        found = [self.original] if self.original is not None else []
        return [m for m in [*found, *self.followups] if not m.deleted]

    @property
    def token_valid(self) -> bool:
        return not self.expired and time.monotonic() - self.created_at < INTERACTION_TOKEN_TTL

    def describe(self) -> str:
        original = self.original
        state = (
            "no original"
            if original is None
            else f"original content={original.content!r} loading={original.loading}"
        )
        return (
            f"interaction {self.name!r}: callback={self.callback_type!r} "
            f"{state}, {len(self.followups)} followup(s)"
        )

    # -- waiting

    async def wait_for(
        self, predicate: Callable[[InteractionRecord], object], timeout: float = 10.0
    ) -> InteractionRecord:
        """Wait until ``predicate(self)`` holds; TimeoutError describes the last state."""
        return await self.notifier.wait_until(
            lambda: self if predicate(self) else None, timeout, self.describe
        )

    async def wait_for_response(self, timeout: float = 5.0) -> InteractionRecord:
        return await self.wait_for(lambda r: r.responded, timeout)

    async def wait_for_original(
        self, predicate: Callable[[Message], object] | None = None, timeout: float = 10.0
    ) -> Message:
        """The original response once it is filled in (not loading) and ``predicate`` holds."""

        def ready(r: InteractionRecord) -> bool:
            m = r.original
            if m is None or m.loading:
                return False
            return bool(predicate(m)) if predicate is not None else True

        await self.wait_for(ready, timeout)
        assert self.original is not None
        return self.original

    async def wait_for_followups(self, count: int = 1, timeout: float = 10.0) -> list[Message]:
        await self.wait_for(lambda r: len(r.followups) >= count, timeout)
        return list(self.followups)


@dataclass(frozen=True)
class RequestRecord:
    """One REST call the bot made, for debugging and 'no call to X' assertions."""

    at: float
    method: str
    path: str
    status: int
    body: Any
