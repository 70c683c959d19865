"""Styles: the named voices members write in, built in or a server's own.

Built-ins come from ``config/styles.toml`` and are the same everywhere. A server's row
with a built-in's name overrides it there; removing a built-in stores a disabled row, so
the file never has to change and another server is never affected. Everything a
moderator writes is validated here, with messages that say what to change.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import PROJECT_ROOT
from bot.domain import GuildSettings, Style, utcnow
from bot.errors import ConfigError, InvalidInput
from bot.text import normalize

if TYPE_CHECKING:
    from bot.storage.library import SettingsRepository, StyleRepository

log = logging.getLogger(__name__)

BUILTIN_STYLES_FILE = PROJECT_ROOT / "config" / "styles.toml"

CREATIVE_COMMANDS = ("poem", "script", "critique")
"""The commands a style can apply to (the ``command`` column of a request)."""

NAME_MAX_CHARS = 32
DESCRIPTION_MAX_CHARS = 100
EXAMPLE_MAX_CHARS = 1000

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def clean_style_name(name: str) -> str:
    """The slug a member or moderator meant: 'Film Noir' -> 'film-noir'.

    Raises ``InvalidInput`` when nothing usable is left.
    """
    slug = "-".join(normalize(name).strip().lower().split())
    if not slug:
        raise InvalidInput("A style needs a name, for example `film-noir`.")
    if len(slug) > NAME_MAX_CHARS:
        raise InvalidInput(
            f"The style name is {len(slug)} characters long; the limit is {NAME_MAX_CHARS}."
        )
    if not _NAME.fullmatch(slug) or "--" in slug:
        raise InvalidInput(
            f"`{slug[:NAME_MAX_CHARS]}` can't be a style name: use lowercase letters, "
            "digits and single hyphens, starting and ending with a letter or digit "
            "(for example `film-noir`)."
        )
    return slug


def _clean_text(value: str | None, *, field: str, max_chars: int, required: bool) -> str | None:
    text = normalize(value or "").strip()
    if not text:
        if required:
            raise InvalidInput(f"The style's {field} is empty. Write a few words.")
        return None
    if len(text) > max_chars:
        raise InvalidInput(
            f"The style's {field} is {len(text)} characters long; the limit is {max_chars}."
        )
    return text


def clean_commands(commands: Iterable[str] | None) -> frozenset[str]:
    """The commands a style applies to; empty means every creative command."""
    chosen = frozenset(c.strip().lower() for c in commands or () if c.strip())
    unknown = sorted(chosen - set(CREATIVE_COMMANDS))
    if unknown:
        raise InvalidInput(
            f"A style can apply to {', '.join(CREATIVE_COMMANDS)}; not to {', '.join(unknown)}."
        )
    # All of them is the same as none named: stored empty so new commands are included.
    return frozenset() if chosen == set(CREATIVE_COMMANDS) else chosen


def validated_style(
    *,
    guild_id: int | None,
    name: str,
    description: str | None,
    instructions: str | None,
    example: str | None,
    commands: Iterable[str] | None,
    mature: bool,
    max_instructions_chars: int,
    updated_by: int | None = None,
) -> Style:
    """A ``Style`` from raw fields, or ``InvalidInput`` naming the first problem."""
    description_text = _clean_text(
        description, field="description", max_chars=DESCRIPTION_MAX_CHARS, required=True
    )
    instructions_text = _clean_text(
        instructions, field="instructions", max_chars=max_instructions_chars, required=True
    )
    assert description_text is not None and instructions_text is not None
    return Style(
        guild_id=guild_id,
        name=clean_style_name(name),
        description=" ".join(description_text.split()),  # one line in autocomplete
        instructions=instructions_text,
        example=_clean_text(example, field="example", max_chars=EXAMPLE_MAX_CHARS, required=False),
        commands=clean_commands(commands),
        mature=bool(mature),
        updated_by=updated_by,
        updated_at=None if guild_id is None else utcnow(),
    )


def load_builtin_styles(path: Path | None = None) -> list[Style]:
    """Read the built-in styles (``config/styles.toml`` by default).

    Raises ``ConfigError`` naming the style and the problem: a broken file is the
    operator's to fix, so it stops the bot at start rather than hiding a style.
    """
    path = path or BUILTIN_STYLES_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read built-in styles from {path}: {exc}") from None
    entries = data.get("style", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path.name}: styles must be [[style]] tables")
    styles: dict[str, Style] = {}
    for index, entry in enumerate(entries, start=1):
        label = f"{path.name}, style {entry.get('name', index)!r}"
        try:
            style = _builtin_from_table(entry)
        except (InvalidInput, TypeError, ValueError) as exc:
            reason = exc.message if isinstance(exc, InvalidInput) else str(exc)
            raise ConfigError(f"{label}: {reason}") from None
        if style.name in styles:
            raise ConfigError(f"{label}: the name is used twice")
        styles[style.name] = style
    return list(styles.values())


def _builtin_from_table(entry: Mapping[str, Any]) -> Style:
    known = {"name", "description", "instructions", "example", "commands", "mature"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"unknown keys {', '.join(unknown)}")
    commands = entry.get("commands", [])
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise TypeError("commands must be a list of command names")
    mature = entry.get("mature", False)
    if not isinstance(mature, bool):
        raise TypeError("mature must be true or false")
    for key in ("name", "description", "instructions", "example"):
        if key in entry and not isinstance(entry[key], str):
            raise TypeError(f"{key} must be text")
    name = entry.get("name", "")
    if clean_style_name(name) != name:
        raise ValueError(f"the name must be written as the slug {clean_style_name(name)!r}")
    return validated_style(
        guild_id=None,
        name=name,
        description=entry.get("description"),
        instructions=entry.get("instructions"),
        example=entry.get("example"),
        commands=commands,
        mature=mature,
        # Built-ins are ours, not a member's input: the widest limit a server can choose.
        max_instructions_chars=EXAMPLE_MAX_CHARS,
    )


class StyleService:
    """The styles a server can use, and the moderator actions that shape them."""

    def __init__(
        self,
        styles: StyleRepository,
        builtins: Sequence[Style],
        *,
        settings: SettingsRepository | None = None,
    ) -> None:
        self._styles = styles
        self._builtins = {style.name: style for style in builtins}
        # The server's maximum input length bounds style instructions too: they go into
        # the same prompt as a member's theme. Without it, a new server's default applies.
        self._settings = settings

    @property
    def builtins(self) -> list[Style]:
        return list(self._builtins.values())

    async def _merged(self, guild_id: int | None) -> dict[str, Style]:
        """Every style name this server knows, disabled ones included."""
        merged = dict(self._builtins)
        if guild_id is not None:
            merged.update((style.name, style) for style in await self._styles.list(guild_id))
        return merged

    async def available(self, guild_id: int | None, command: str) -> list[Style]:
        """The styles a member may pick for ``command`` here, by name."""
        merged = await self._merged(guild_id)
        return sorted(
            (s for s in merged.values() if not s.disabled and s.applies_to(command)),
            key=lambda s: s.name,
        )

    async def get(self, guild_id: int | None, name: str) -> Style | None:
        """The style of that name as this server sees it (None if unknown or disabled)."""
        try:
            slug = clean_style_name(name)
        except InvalidInput:
            return None
        style = (await self._merged(guild_id)).get(slug)
        return None if style is None or style.disabled else style

    async def resolve(
        self, guild_id: int | None, channel_id: int, command: str, name: str | None
    ) -> Style | None:
        """The style a request is written in.

        An explicit name must exist here and apply to the command (``InvalidInput``
        otherwise); without one, the channel's default, then the server's, then none.
        """
        if name is not None and name.strip():
            style = await self.get(guild_id, name)
            if style is None:
                raise InvalidInput(
                    f"There is no style called `{_shown(name)}` here. "
                    "Pick one from the suggestions, or see /style list."
                )
            if not style.applies_to(command):
                raise InvalidInput(
                    f"The style `{style.name}` is for {', '.join(sorted(style.commands))}, "
                    f"not /{command}."
                )
            return style
        if guild_id is None:
            return None
        defaults = await self._styles.defaults(guild_id)
        for scope in (channel_id, None):
            default = defaults.get((command, scope))
            if default is None:
                continue
            style = await self.get(guild_id, default)
            if style is not None and style.applies_to(command):
                return style
            # The member did not choose it, so a stale default is skipped, not an error.
            log.info("guild %s: default style %r for %s is gone", guild_id, default, command)
        return None

    async def save(
        self,
        guild_id: int,
        name: str,
        *,
        description: str | None,
        instructions: str | None,
        example: str | None,
        commands: Iterable[str] | None,
        mature: bool,
        by_user: int,
        create: bool,
    ) -> Style:
        """Add (``create``) or edit a server's style; editing a built-in overrides it."""
        limits = await self._guild_settings(guild_id)
        style = validated_style(
            guild_id=guild_id,
            name=name,
            description=description,
            instructions=instructions,
            example=example,
            commands=commands,
            mature=mature,
            max_instructions_chars=limits.max_input_chars,
            updated_by=by_user,
        )
        existing = await self.get(guild_id, style.name)
        if create and existing is not None:
            raise InvalidInput(
                f"A style called `{style.name}` already exists here. "
                "Use /style edit to change it, or pick another name."
            )
        if not create and existing is None:
            raise InvalidInput(
                f"There is no style called `{style.name}` here to edit. Use /style add."
            )
        return await self._styles.upsert(style)

    async def remove(self, guild_id: int, name: str) -> bool:
        """Remove a server's style, or disable a built-in here. False if there was none.

        Defaults naming it are cleared, so /style default never points at nothing.
        """
        style = await self.get(guild_id, name)
        if style is None:
            return False
        builtin = self._builtins.get(style.name)
        if builtin is not None:
            await self._styles.upsert(
                replace(builtin, guild_id=guild_id, disabled=True, updated_at=utcnow())
            )
        else:
            await self._styles.remove(guild_id, style.name)
        for (command, channel_id), default in (await self._styles.defaults(guild_id)).items():
            if default == style.name:
                await self._styles.set_default(guild_id, command, channel_id, None)
        return True

    async def set_default(
        self, guild_id: int, command: str, channel_id: int | None, name: str | None
    ) -> Style | None:
        """Set (or with ``name`` None, clear) the default style for a command, in one
        channel or (``channel_id`` None) the whole server. Returns the style set."""
        if command not in CREATIVE_COMMANDS:
            raise InvalidInput(f"Styles apply to {', '.join(CREATIVE_COMMANDS)}, not {command}.")
        style = None
        if name is not None and name.strip():
            style = await self.resolve(guild_id, channel_id or 0, command, name)
        await self._styles.set_default(
            guild_id, command, channel_id, None if style is None else style.name
        )
        return style

    async def defaults(self, guild_id: int) -> dict[tuple[str, int | None], str]:
        """The server's defaults: (command, channel id or None for server-wide) -> name."""
        return await self._styles.defaults(guild_id)

    async def _guild_settings(self, guild_id: int) -> GuildSettings:
        if self._settings is None:
            return GuildSettings()
        return await self._settings.get(guild_id)


def _shown(name: str) -> str:
    """A name echoed back in a message: short and unable to break the code span."""
    return normalize(name).replace("`", "'").strip()[:NAME_MAX_CHARS]
