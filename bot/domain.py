"""Records the bot stores, as frozen dataclasses.

Storage hands these out instead of rows, so nothing above ``bot.storage`` knows a column
name. Datetimes are always timezone-aware UTC; Discord ids are plain ``int`` snowflakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the only kind storage accepts)."""
    return datetime.now(UTC)


class RequestStatus(StrEnum):
    """Where a generation request is in its life. The values are stored as text."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_finished(self) -> bool:
        """True for the terminal states: the job will not run (again)."""
        return self not in (RequestStatus.QUEUED, RequestStatus.RUNNING)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewRequest:
    """A request as a command accepts it, before storage gives it an id."""

    guild_id: int | None  # None for a direct message
    channel_id: int
    user_id: int
    command: str  # "poem", "script", "critique", ...
    inputs: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable options
    application_id: int | None = None
    # A credential (valid 15 minutes) that lets anyone holding it answer as the bot:
    # kept out of repr so a logged record never leaks it.
    interaction_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("a request needs a command name")
        if not isinstance(self.inputs, Mapping):
            raise TypeError("inputs must be a mapping of option name to value")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """One stored generation request: the 'creation' that later features point at."""

    id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    command: str
    # Frozen is shallow: treat this dict as read-only. Left out of the hash so a record
    # stays hashable (equal records still hash equal: the hash uses a subset of fields).
    inputs: dict[str, Any] = field(hash=False)
    status: RequestStatus
    output: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    generated_tokens: int
    first_token_ms: int | None
    application_id: int | None
    interaction_token: str | None = field(repr=False)
    message_id: int | None
    delivered_at: datetime | None

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    @property
    def is_delivered(self) -> bool:
        return self.delivered_at is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuildRecord:
    """A server the bot is (or was) in; ``left_at`` starts the clock for purging."""

    id: int
    joined_at: datetime
    left_at: datetime | None

    @property
    def is_member(self) -> bool:
        return self.left_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Style:
    """A named voice a request can be written in: built in (``guild_id`` None, from
    ``config/styles.toml``) or a server's own. A server row with a built-in's name
    overrides it; ``disabled`` hides it there.

    ``instructions`` and ``example`` are moderator-written text: prompts quote them as
    data, never splice them into the system instructions.
    """

    guild_id: int | None
    name: str  # slug: lowercase letters, digits, '-', 1..32 chars; unique per server
    description: str
    instructions: str
    example: str | None = None
    commands: frozenset[str] = frozenset()  # empty: every creative command
    mature: bool = False  # only in age-restricted channels when the server says so
    disabled: bool = False
    updated_by: int | None = None
    updated_at: datetime | None = None

    @property
    def builtin(self) -> bool:
        return self.guild_id is None

    def applies_to(self, command: str) -> bool:
        return not self.commands or command in self.commands


@dataclass(frozen=True, slots=True, kw_only=True)
class GuildSettings:
    """What a server's moderators configured; the defaults are what a new server gets."""

    allowed_channel_ids: frozenset[int] = frozenset()  # empty: every channel
    cooldown_s: int = 0  # per member, between creative requests
    max_in_flight: int = 2  # a member's requests queued or running at once
    max_queued: int = 2  # a member's requests waiting (not yet running) at once
    max_input_chars: int = 1000  # themes, premises, style text (critique has its own cap)
    blocked_words: tuple[str, ...] = ()  # refused in input, masked in output
    mature_only_in_age_restricted: bool = True
    critique_opt_in: bool = True  # critiquing someone else's message needs their opt-in
    community_taste: bool = False  # favourites become examples for the model
    moderator_role_id: int | None = None  # besides Manage Server


@dataclass(frozen=True, slots=True, kw_only=True)
class FavouriteEntry:
    """A creation in the server's anthology, with how many members starred it."""

    request: RequestRecord
    stars: int
    last_starred_at: datetime
