"""A server's rules for creative requests: where, how often, how long, which words.

``check`` runs before a request is stored and refuses it with a message the member can
act on. The server's settings live in SQLite (``SettingsRepository``); direct messages
get the defaults a new server starts with.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from bot.domain import GuildSettings, Style, utcnow
from bot.errors import InvalidInput, LimitReached
from bot.text import normalize

if TYPE_CHECKING:
    from datetime import datetime

    from bot.config import Settings
    from bot.services.creations import Requester
    from bot.storage.library import SettingsRepository
    from bot.storage.repositories import RequestRepository

log = logging.getLogger(__name__)

MASK = "■■■"

# What a member typed, by input key, with the name a refusal uses. Everything else in
# stored inputs is a choice from a list, an id, or the bot's own earlier output (a
# Continue's "previous"), none of which the member wrote just now.
FREE_TEXT_INPUTS: dict[str, str] = {
    "theme": "theme",
    "premise": "premise",
    "characters": "list of characters",
    "setting": "setting",
    "text": "text",
}
# Critique reads whole pieces of writing: its own, larger cap (Settings.critique_max_chars).
LONG_TEXT_INPUTS = frozenset({"text"})

BLOCKED_WORD_MAX_CHARS = 50
BLOCKED_WORDS_MAX = 200
ALLOWED_CHANNELS_MAX = 100

_ID = re.compile(r"\d{15,21}")


@dataclass(frozen=True, slots=True)
class _IntRange:
    low: int
    high: int
    unit: str = ""


# Sane bounds: wide enough for any community, narrow enough that a typo cannot lock
# members out for a day or let one member fill the queue.
_INT_SETTINGS: dict[str, _IntRange] = {
    "cooldown_s": _IntRange(0, 3600, " seconds"),
    "max_in_flight": _IntRange(1, 10),
    "max_queued": _IntRange(1, 10),
    "max_input_chars": _IntRange(20, 4000, " characters"),
}
_BOOL_SETTINGS = frozenset({"mature_only_in_age_restricted", "critique_opt_in", "community_taste"})
_TRUE = frozenset({"true", "yes", "on", "1", "enable", "enabled"})
_FALSE = frozenset({"false", "no", "off", "0", "disable", "disabled"})
SETTING_NAMES = tuple(f.name for f in fields(GuildSettings))


@lru_cache(maxsize=256)
def _blocked_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for a server's blocked words: whole words (or phrases), any case."""
    parts = sorted({_fold(w) for w in words if w.strip()}, key=len, reverse=True)
    if not parts:
        return None
    # A phrase matches across any run of spaces; (?<!\w)/(?!\w) keep "ass" out of "class".
    alternatives = "|".join(r"\s+".join(map(re.escape, part.split())) for part in parts)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _fold(text: str) -> str:
    """What a blocked word is compared on: NFKC (full-width and styled letters become
    plain ones) and case-folded, after dropping zero-width tricks."""
    return unicodedata.normalize("NFKC", normalize(text)).casefold()


def contains_blocked_word(text: str, words: tuple[str, ...]) -> bool:
    pattern = _blocked_pattern(words)
    return pattern is not None and pattern.search(_fold(text)) is not None


class PolicyService:
    def __init__(
        self,
        settings: SettingsRepository,
        requests: RequestRepository,
        config: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._requests = requests
        self._long_text_max = 4000 if config is None else config.critique_max_chars
        self._clock = clock

    async def settings(self, guild_id: int | None) -> GuildSettings:
        if guild_id is None:
            return GuildSettings()
        return await self._settings.get(guild_id)

    async def check(
        self,
        requester: Requester,
        command: str,
        inputs: Mapping[str, Any],
        *,
        style: Style | None,
        channel_nsfw: bool,
    ) -> GuildSettings:
        """Refuse the request (``InvalidInput``/``LimitReached``) or return the settings
        it runs under. Cheap checks the member can fix come before the limits."""
        settings = await self.settings(requester.guild_id)
        allowed = settings.allowed_channel_ids
        if allowed and requester.channel_id not in allowed:
            shown = " ".join(f"<#{c}>" for c in sorted(allowed)[:5])
            raise InvalidInput(
                f"Creative commands are not open in this channel. Try {shown}"
                + (" or another allowed channel." if len(allowed) > 5 else ".")
            )
        for key, label in FREE_TEXT_INPUTS.items():
            value = inputs.get(key)
            if not isinstance(value, str):
                continue
            limit = self._long_text_max if key in LONG_TEXT_INPUTS else settings.max_input_chars
            length = len(normalize(value).strip())
            if length > limit:
                raise InvalidInput(
                    f"The {label} is {length} characters long; the limit here is {limit}. "
                    "Try a shorter one."
                )
            if contains_blocked_word(value, settings.blocked_words):
                # Never echo the word: the message may be seen over a shoulder or quoted.
                raise InvalidInput(
                    f"The {label} contains a word this server has blocked. Please rephrase it."
                )
        if (
            style is not None
            and style.mature
            and settings.mature_only_in_age_restricted
            and not channel_nsfw
        ):
            raise InvalidInput(
                f"The style `{style.name}` is for age-restricted channels only here. "
                "Use it in one, or pick another style."
            )
        await self._check_rate(requester, settings)
        return settings

    async def _check_rate(self, requester: Requester, settings: GuildSettings) -> None:
        guild_id, user_id = requester.guild_id, requester.user_id
        if settings.cooldown_s > 0:
            last = await self._requests.last_created_at(guild_id, user_id)
            if last is not None:
                wait = settings.cooldown_s - (self._clock() - last).total_seconds()
                if wait > 0:
                    seconds = max(1, math.ceil(wait))
                    raise LimitReached(
                        f"Slow down a little: you can ask again in {seconds} s "
                        f"(this server's cooldown is {settings.cooldown_s} s)."
                    )
        queued, running = await self._requests.pending_counts(guild_id, user_id)
        if queued + running >= settings.max_in_flight:
            raise LimitReached(
                f"You already have {queued + running} requests in progress; the limit here "
                f"is {settings.max_in_flight}. Wait for one to finish, then ask again."
            )
        if queued >= settings.max_queued:
            raise LimitReached(
                f"You already have {queued} requests waiting in the queue; the limit here "
                f"is {settings.max_queued}. Wait for one to start, then ask again."
            )

    def mask(self, text: str, settings: GuildSettings) -> str:
        """Blocked words in the model's output, replaced by ■■■."""
        pattern = _blocked_pattern(settings.blocked_words)
        if pattern is None:
            return text
        # Matched on the normalised text (zero-width characters can't split a word);
        # case-insensitive matching keeps offsets, unlike case-folding the text.
        return pattern.sub(MASK, normalize(text))

    async def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings; every value is checked (``InvalidInput``) before any
        is saved. Values may be typed (ints, bools, collections) or the text a
        moderator typed ("on", "30", "#general #poetry", "word1, word2")."""
        current = await self._settings.get(guild_id)
        cleaned = {key: _clean_setting(key, value) for key, value in changes.items()}
        updated = replace(current, **cleaned)
        if updated != current:
            await self._settings.save(guild_id, updated)
            log.info("guild %s settings changed: %s", guild_id, ", ".join(sorted(cleaned)))
        return updated

    async def is_moderator(
        self, guild_id: int | None, *, manage_guild: bool, role_ids: Collection[int]
    ) -> bool:
        """Manage Server, or the server's moderator role. Nobody moderates DMs."""
        if guild_id is None:
            return False
        if manage_guild:
            return True
        role = (await self.settings(guild_id)).moderator_role_id
        return role is not None and role in set(role_ids)


def _clean_setting(key: str, value: Any) -> Any:
    if key in _INT_SETTINGS:
        return _clean_int(key, value, _INT_SETTINGS[key])
    if key in _BOOL_SETTINGS:
        return _clean_bool(key, value)
    if key == "allowed_channel_ids":
        return frozenset(_clean_ids(key, value, most=ALLOWED_CHANNELS_MAX))
    if key == "moderator_role_id":
        ids = _clean_ids(key, value, most=1)
        return ids[0] if ids else None
    if key == "blocked_words":
        return _clean_words(value)
    raise InvalidInput(
        f"There is no setting called `{str(key)[:40]}`. The settings are: "
        + ", ".join(SETTING_NAMES)
        + "."
    )


def _clean_int(key: str, value: Any, bounds: _IntRange) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    if number is None or not bounds.low <= number <= bounds.high:
        raise InvalidInput(
            f"`{key}` must be a whole number from {bounds.low} to {bounds.high}{bounds.unit}."
        )
    return number


def _clean_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InvalidInput(f"`{key}` is on or off (true/false).")


def _clean_ids(key: str, value: Any, *, most: int) -> list[int]:
    """Discord ids from ints, or from text with ids or mentions (<#id>, <@&id>)."""
    if value is None:
        return []
    items: Iterable[Any]
    if isinstance(value, str):
        if value.strip().lower() in {"", "none", "all", "any", "clear"}:
            return []
        items = value.replace(",", " ").split()
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, Iterable):
        items = value
    else:
        raise InvalidInput(f"`{key}` takes channel or role ids.")
    ids: list[int] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and item > 0:
            ids.append(item)
            continue
        match = _ID.search(str(item))
        if match is None:
            raise InvalidInput(
                f"`{key}`: `{str(item)[:40]}` is not a channel or role (pick one, or paste its id)."
            )
        ids.append(int(match.group()))
    ids = list(dict.fromkeys(ids))
    if len(ids) > most:
        raise InvalidInput(f"`{key}` takes at most {most}.")
    return ids


def _clean_words(value: Any) -> tuple[str, ...]:
    """Blocked words from a list, or from text separated by commas or new lines."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[Any] = re.split(r"[,\n]", value)
    elif isinstance(value, Iterable):
        items = value
    else:
        raise InvalidInput("`blocked_words` takes a list of words, separated by commas.")
    words: dict[str, None] = {}
    for item in items:
        word = " ".join(_fold(str(item)).split())
        if not word:
            continue
        if len(word) > BLOCKED_WORD_MAX_CHARS:
            raise InvalidInput(
                f"A blocked word or phrase can be at most {BLOCKED_WORD_MAX_CHARS} characters."
            )
        words[word] = None
    if len(words) > BLOCKED_WORDS_MAX:
        raise InvalidInput(f"A server can block at most {BLOCKED_WORDS_MAX} words.")
    return tuple(words)
