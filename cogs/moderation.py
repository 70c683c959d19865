"""Moderator commands: /style (add, edit, remove, list, preview, default) and /settings
(show, set).

Both groups carry ``default_permissions`` = Manage Server so Discord hides them from
members, but a server's admins can change who sees a command, so every command and
every modal submission checks ``require_moderator`` on the bot's side as well. Answers
are ephemeral (a preview is a real creation, posted like any other); nothing pings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.domain import GuildSettings, Style
from bot.errors import UserFacingError
from bot.prompts import DEFAULTS
from bot.services.styles import (
    CREATIVE_COMMANDS,
    DESCRIPTION_MAX_CHARS,
    EXAMPLE_MAX_CHARS,
    NAME_MAX_CHARS,
)
from bot.text import clean_member_text, split_message
from cogs.permissions import MODERATOR_PERMISSIONS, require_moderator
from cogs.presenter import NO_PINGS, CreationModal, clip, create

if TYPE_CHECKING:
    from bot.client import AtelierBot

log = logging.getLogger(__name__)

Interaction = discord.Interaction["AtelierBot"]

COMMAND_CHOICES = [app_commands.Choice(name=f"/{c}", value=c) for c in CREATIVE_COMMANDS]
NO_STYLE = "none"
INSTRUCTIONS_MAX_CHARS = 4000  # Discord's cap on a text input; the server's limit applies
MODAL_TITLE_MAX = 45
# What a preview writes about when the moderator gives no theme, by command.
PREVIEW_SUBJECTS = {
    "poem": "the first light of morning",
    "script": "two strangers share an umbrella at a bus stop",
    "critique": (
        "The kettle sings its one thin note,\n"
        "the window fogs, the morning waits;\n"
        "I write your name on glass, and watch\n"
        "it fade before the day arrives."
    ),
}


def plain(name: str) -> str:
    """A name inside a code span: nothing that could close it."""
    return name.replace("`", "'")


def on_off(value: bool) -> str:
    return "on" if value else "off"


async def answer(interaction: Interaction, text: str) -> None:
    """An ephemeral answer of any length (split into messages Discord accepts)."""
    first, *rest = split_message(text)
    if interaction.response.is_done():
        await interaction.followup.send(first, ephemeral=True, allowed_mentions=NO_PINGS)
    else:
        await interaction.response.send_message(first, ephemeral=True, allowed_mentions=NO_PINGS)
    for chunk in rest:
        await interaction.followup.send(chunk, ephemeral=True, allowed_mentions=NO_PINGS)


# ------------------------------------------------------------------------ styles


def parse_commands(text: str | None) -> list[str]:
    """'poem, /script' -> ['poem', 'script']; the service says what is wrong with them."""
    return [part.lstrip("/") for part in re.split(r"[,\s]+", text or "") if part.strip("/ ")]


async def all_styles(interaction: Interaction) -> list[Style]:
    """Every style members can pick here, for any command, by name."""
    found: dict[str, Style] = {}
    for command in CREATIVE_COMMANDS:
        for style in await interaction.client.runtime.styles.available(
            interaction.guild_id, command
        ):
            found.setdefault(style.name, style)
    return sorted(found.values(), key=lambda s: s.name)


async def known_style(interaction: Interaction, name: str) -> Style:
    style = await interaction.client.runtime.styles.get(interaction.guild_id, name)
    if style is None:
        raise UserFacingError(
            f"There is no style called `{plain(clip(name, NAME_MAX_CHARS))}` here. See /style list."
        )
    return style


def style_choice(style: Style) -> app_commands.Choice[str]:
    return app_commands.Choice(
        name=clip(f"{style.name} — {style.description}", 100), value=style.name
    )


def matches(style: Style, needle: str) -> bool:
    return not needle or needle in style.name or needle in style.description.lower()


def style_line(style: Style, *, builtin_names: set[str]) -> str:
    if style.builtin:
        origin = "built in"
    elif style.name in builtin_names:
        origin = "built in, changed here"
    else:
        origin = "this server's"
    applies = ", ".join(f"/{c}" for c in sorted(style.commands)) or "every command"
    mature = " · 🔞 mature" if style.mature else ""
    description = discord.utils.escape_markdown(style.description)
    return f"• `{style.name}` — {description} ({origin}; {applies}{mature})"


class StyleModal(CreationModal):
    """The fields of a style. Without a style: a new one (with a name field); with
    one: its fields prefilled, its name fixed."""

    def __init__(self, *, style: Style | None, mature: bool, instructions_max: int) -> None:
        title = "New style" if style is None else f"Edit style {style.name}"
        super().__init__(title=title[:MODAL_TITLE_MAX], timeout=15 * 60)
        self.style = style
        self.mature = mature
        self.name_input: discord.ui.TextInput[StyleModal] | None = None
        if style is None:
            self.name_input = discord.ui.TextInput(
                label="Name",
                custom_id="name",
                placeholder="film-noir (lowercase letters, digits and hyphens)",
                max_length=NAME_MAX_CHARS,
            )
            self.add_item(self.name_input)
        self.description: discord.ui.TextInput[StyleModal] = discord.ui.TextInput(
            label="Description",
            custom_id="description",
            placeholder="One line members see when they pick it",
            max_length=DESCRIPTION_MAX_CHARS,
            default=None if style is None else style.description,
        )
        self.instructions: discord.ui.TextInput[StyleModal] = discord.ui.TextInput(
            label="Instructions to the model",
            custom_id="instructions",
            style=discord.TextStyle.paragraph,
            placeholder="A sentence or two about the voice: the model is small",
            max_length=min(instructions_max, INSTRUCTIONS_MAX_CHARS),
            default=None if style is None else style.instructions,
        )
        self.example: discord.ui.TextInput[StyleModal] = discord.ui.TextInput(
            label="Example (optional)",
            custom_id="example",
            style=discord.TextStyle.paragraph,
            placeholder="A few lines written in this style",
            required=False,
            max_length=EXAMPLE_MAX_CHARS,
            default=None if style is None else style.example,
        )
        self.commands: discord.ui.TextInput[StyleModal] = discord.ui.TextInput(
            label="Commands (empty: all)",
            custom_id="commands",
            placeholder="poem, script, critique",
            required=False,
            max_length=100,
            default=None if style is None else ", ".join(sorted(style.commands)),
        )
        for item in (self.description, self.instructions, self.example, self.commands):
            self.add_item(item)

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        # Checked again: the member's roles may have changed while the form was open.
        await require_moderator(interaction)
        assert interaction.guild_id is not None  # moderators exist only in servers
        creating = self.style is None
        if self.name_input is not None:
            name = self.name_input.value
        else:
            assert self.style is not None  # editing: the name is fixed
            name = self.style.name
        saved = await interaction.client.runtime.styles.save(
            interaction.guild_id,
            name,
            description=self.description.value,
            instructions=self.instructions.value,
            example=self.example.value,
            commands=parse_commands(self.commands.value),
            mature=self.mature,
            by_user=interaction.user.id,
            create=creating,
        )
        log.info(
            "guild %s: style %r saved by %s", interaction.guild_id, saved.name, interaction.user.id
        )
        done = "added" if creating else "saved"
        await answer(
            interaction,
            f"🎨 Style `{saved.name}` {done}. Members can pick it in the style option; "
            f"`/style preview name:{saved.name}` writes a sample.",
        )


# ---------------------------------------------------------------------- settings


def settings_text(settings: GuildSettings) -> str:
    """The server's settings, each with the /settings set option that changes it."""
    channels = (
        " ".join(f"<#{c}>" for c in sorted(settings.allowed_channel_ids))
        if settings.allowed_channel_ids
        else "every channel"
    )
    # Spoilers: a moderator checking the list need not have the words read over a shoulder.
    words = (
        ", ".join(f"||{discord.utils.escape_markdown(w)}||" for w in settings.blocked_words)
        if settings.blocked_words
        else "none"
    )
    role = (
        f"<@&{settings.moderator_role_id}> (and Manage Server)"
        if settings.moderator_role_id is not None
        else "none (members with Manage Server moderate)"
    )
    cooldown = f"{settings.cooldown_s} s" if settings.cooldown_s else "none"
    return "\n".join(
        [
            "⚙️ **Settings of this server** (change them with `/settings set`)",
            f"• Creative channels (`allow_channel`, `disallow_channel`, "
            f"`allow_all_channels`): {channels}",
            f"• Cooldown per member (`cooldown_seconds`): {cooldown}",
            f"• Requests in progress per member (`max_in_flight`): {settings.max_in_flight}",
            f"• Requests waiting per member (`max_queued`): {settings.max_queued}",
            f"• Longest theme, premise or style text (`max_input_chars`): "
            f"{settings.max_input_chars} characters",
            f"• Blocked words, refused in requests and masked in replies (`blocked_words`): "
            f"{words}",
            f"• Mature styles only in age-restricted channels "
            f"(`mature_only_in_age_restricted`): {on_off(settings.mature_only_in_age_restricted)}",
            f"• Critiquing someone's message needs their opt-in (`critique_opt_in`): "
            f"{on_off(settings.critique_opt_in)}",
            f"• Community taste, favourites guide the model (`community_taste`): "
            f"{on_off(settings.community_taste)}",
            f"• Moderator role (`moderator_role`): {role}",
        ]
    )


def channel_changes(
    current: frozenset[int],
    *,
    allow: int | None,
    disallow: int | None,
    allow_all: bool | None,
) -> frozenset[int] | None:
    """The allowed channels after the options (None: not asked to change them)."""
    if allow is None and disallow is None and not allow_all:
        return None
    channels = set() if allow_all else set(current)
    if allow is not None:
        channels.add(allow)
    if disallow is not None:
        if not channels:
            raise UserFacingError(
                "Every channel is open now, so there is nothing to close. Choose the "
                "channels that should stay open with `allow_channel` instead."
            )
        channels.discard(disallow)
        if not channels:
            # An empty list means "every channel": closing the last one would open all.
            raise UserFacingError(
                "That is the only creative channel: closing it would open every channel. "
                "Allow another one first, or use `allow_all_channels`."
            )
    return frozenset(channels)


# --------------------------------------------------------------------------- cog


class Moderation(commands.Cog):
    style = app_commands.Group(
        name="style",
        description="Moderators: the styles members can write in",
        guild_only=True,
        default_permissions=MODERATOR_PERMISSIONS,
    )
    settings_group = app_commands.Group(
        name="settings",
        description="Moderators: this server's rules for creative commands",
        guild_only=True,
        default_permissions=MODERATOR_PERMISSIONS,
    )

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    # ---------------------------------------------------------------- /style

    @style.command(name="add")
    @app_commands.describe(mature="Only in age-restricted channels (when the server says so)")
    async def style_add(self, interaction: Interaction, mature: bool = False) -> None:
        """Add a style (opens a form)."""
        await require_moderator(interaction)
        settings = await self.bot.runtime.policy.settings(interaction.guild_id)
        await interaction.response.send_modal(
            StyleModal(style=None, mature=mature, instructions_max=settings.max_input_chars)
        )

    @style.command(name="edit")
    @app_commands.describe(
        name="The style to change", mature="Only in age-restricted channels (default: as it is)"
    )
    async def style_edit(
        self, interaction: Interaction, name: str, mature: bool | None = None
    ) -> None:
        """Change a style (opens its form, filled in); a built-in one is changed here only."""
        await require_moderator(interaction)
        style = await known_style(interaction, name)
        settings = await self.bot.runtime.policy.settings(interaction.guild_id)
        await interaction.response.send_modal(
            StyleModal(
                style=style,
                mature=style.mature if mature is None else mature,
                instructions_max=max(settings.max_input_chars, len(style.instructions)),
            )
        )

    @style.command(name="remove")
    @app_commands.describe(name="The style to remove (a built-in one is hidden here)")
    async def style_remove(self, interaction: Interaction, name: str) -> None:
        """Remove a style of this server, or hide a built-in one here."""
        await require_moderator(interaction)
        assert interaction.guild_id is not None  # guild_only
        style = await known_style(interaction, name)
        styles = self.bot.runtime.styles
        await styles.remove(interaction.guild_id, style.name)
        if style.name in {b.name for b in styles.builtins}:
            note = (
                f"🙈 The built-in style `{style.name}` is hidden in this server. "
                f"`/style add` with the name `{style.name}` brings back a version of your own."
            )
        else:
            note = f"🗑️ Style `{style.name}` removed."
        await answer(interaction, note + " Defaults that used it were cleared.")

    @style.command(name="list")
    async def style_list(self, interaction: Interaction) -> None:
        """The styles members can pick here, hidden built-ins, and the defaults."""
        await require_moderator(interaction)
        assert interaction.guild_id is not None  # guild_only
        styles = self.bot.runtime.styles
        builtin_names = {b.name for b in styles.builtins}
        available = await all_styles(interaction)
        lines = ["🎨 **Styles in this server**"]
        lines += [style_line(s, builtin_names=builtin_names) for s in available] or ["• none"]
        hidden = sorted(builtin_names - {s.name for s in available})
        if hidden:
            lines.append("Hidden built-ins: " + ", ".join(f"`{n}`" for n in hidden))
        defaults = await styles.defaults(interaction.guild_id)
        if defaults:
            lines.append("**Defaults**")
            for (command, channel_id), name in sorted(
                defaults.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)
            ):
                where = "the whole server" if not channel_id else f"<#{channel_id}>"
                lines.append(f"• /{command} in {where}: `{name}`")
        await answer(interaction, "\n".join(lines))

    @style.command(name="preview")
    @app_commands.describe(
        name="The style to try", theme="What the sample is about (default: a sample subject)"
    )
    async def style_preview(
        self, interaction: Interaction, name: str, theme: str | None = None
    ) -> None:
        """Write a sample with a style (posted like any creation)."""
        await require_moderator(interaction)
        style = await known_style(interaction, name)
        command = next(c for c in CREATIVE_COMMANDS if style.applies_to(c))
        subject = PREVIEW_SUBJECTS[command]
        if theme is not None and theme.strip():
            limit = (
                self.bot.settings.critique_max_chars
                if command == "critique"
                else self.bot.settings.theme_max_chars
            )
            subject = clean_member_text(theme, field="theme", max_chars=limit)
        inputs: dict[str, Any]
        if command == "poem":
            inputs = {"theme": subject, "form": DEFAULTS["form"], "length": "short"}
        elif command == "script":
            inputs = {"premise": subject, "length": "short"}
        else:
            inputs = {
                "text": subject,
                "focus": DEFAULTS["focus"],
                "tone": DEFAULTS["tone"],
                "source": "modal",
            }
        inputs["style"] = style.name
        await create(interaction, command, inputs)

    @style.command(name="default")
    @app_commands.describe(
        command="Which command the default is for",
        style="The style, or 'none' to clear the default",
        channel="Only in this channel (default: the whole server)",
    )
    @app_commands.choices(command=COMMAND_CHOICES)
    async def style_default(
        self,
        interaction: Interaction,
        command: str,
        style: str,
        channel: discord.TextChannel | None = None,
    ) -> None:
        """Set the style a command uses when members pick none."""
        await require_moderator(interaction)
        assert interaction.guild_id is not None  # guild_only
        name = None if style.strip().lower() in (NO_STYLE, "") else style
        chosen = await self.bot.runtime.styles.set_default(
            interaction.guild_id, command, None if channel is None else channel.id, name
        )
        where = "in this server" if channel is None else f"in <#{channel.id}>"
        if chosen is None:
            text = f"/{command} has no default style {where} now."
            if channel is not None:
                text += " The server's default, if any, applies there."
        else:
            text = (
                f"🎨 /{command} {where} is written in `{chosen.name}` unless members pick another."
            )
        await answer(interaction, text)

    @style_edit.autocomplete("name")
    @style_remove.autocomplete("name")
    @style_preview.autocomplete("name")
    async def style_names(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        needle = current.strip().lower()
        return [style_choice(s) for s in await all_styles(interaction) if matches(s, needle)][:25]

    @style_default.autocomplete("style")
    async def default_style_names(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        needle = current.strip().lower()
        command = getattr(interaction.namespace, "command", None)
        if command in CREATIVE_COMMANDS:
            styles: Iterable[Style] = await self.bot.runtime.styles.available(
                interaction.guild_id, command
            )
        else:
            styles = await all_styles(interaction)
        choices = [app_commands.Choice(name="none — no default style", value=NO_STYLE)]
        choices += [style_choice(s) for s in styles if matches(s, needle)]
        return choices[:25]

    # ------------------------------------------------------------- /settings

    @settings_group.command(name="show")
    async def settings_show(self, interaction: Interaction) -> None:
        """This server's settings."""
        await require_moderator(interaction)
        settings = await self.bot.runtime.policy.settings(interaction.guild_id)
        await answer(interaction, settings_text(settings))

    @settings_group.command(name="set")
    @app_commands.describe(
        allow_channel="Open creative commands in this channel (then only in the allowed ones)",
        disallow_channel="Close creative commands in this channel",
        allow_all_channels="Open creative commands in every channel",
        cooldown_seconds="Seconds a member waits between requests (0: none; at most 3600)",
        max_in_flight="Requests a member may have in progress at once (1-10)",
        max_queued="Requests a member may have waiting at once (1-10)",
        max_input_chars="Longest theme, premise or style text (20-4000 characters)",
        blocked_words="Words refused in requests and masked in replies, comma-separated "
        "(replaces the list; '-' clears it)",
        mature_only_in_age_restricted="Keep mature styles to age-restricted channels",
        critique_opt_in="Critiquing someone's message needs their opt-in",
        community_taste="Give the model the server's favourites as examples",
        moderator_role="Members with this role moderate too (besides Manage Server)",
        clear_moderator_role="Remove the moderator role (only Manage Server moderates)",
    )
    async def settings_set(
        self,
        interaction: Interaction,
        allow_channel: discord.TextChannel | None = None,
        disallow_channel: discord.TextChannel | None = None,
        allow_all_channels: bool | None = None,
        cooldown_seconds: int | None = None,
        max_in_flight: int | None = None,
        max_queued: int | None = None,
        max_input_chars: int | None = None,
        blocked_words: str | None = None,
        mature_only_in_age_restricted: bool | None = None,
        critique_opt_in: bool | None = None,
        community_taste: bool | None = None,
        moderator_role: discord.Role | None = None,
        clear_moderator_role: bool | None = None,
    ) -> None:
        """Change this server's settings (only the options you fill in)."""
        await require_moderator(interaction)
        assert interaction.guild_id is not None  # guild_only
        policy = self.bot.runtime.policy
        current = await policy.settings(interaction.guild_id)
        changes: dict[str, Any] = {}
        channels = channel_changes(
            current.allowed_channel_ids,
            allow=None if allow_channel is None else allow_channel.id,
            disallow=None if disallow_channel is None else disallow_channel.id,
            allow_all=allow_all_channels,
        )
        if channels is not None:
            changes["allowed_channel_ids"] = channels
        numbers = {
            "cooldown_s": cooldown_seconds,
            "max_in_flight": max_in_flight,
            "max_queued": max_queued,
            "max_input_chars": max_input_chars,
        }
        changes.update({key: value for key, value in numbers.items() if value is not None})
        if blocked_words is not None:
            changes["blocked_words"] = () if blocked_words.strip() == "-" else blocked_words
        switches = {
            "mature_only_in_age_restricted": mature_only_in_age_restricted,
            "critique_opt_in": critique_opt_in,
            "community_taste": community_taste,
        }
        changes.update({key: value for key, value in switches.items() if value is not None})
        if moderator_role is not None and clear_moderator_role:
            raise UserFacingError("Pick a moderator role or clear it, not both.")
        if moderator_role is not None:
            if moderator_role.is_default():
                raise UserFacingError(
                    "@everyone can't be the moderator role: every member would be a moderator."
                )
            changes["moderator_role_id"] = moderator_role.id
        elif clear_moderator_role:
            changes["moderator_role_id"] = None
        if not changes:
            raise UserFacingError(
                "Fill in at least one option to change. `/settings show` lists them all."
            )
        updated = await policy.update(interaction.guild_id, **changes)
        log.info(
            "guild %s: settings %s changed by %s",
            interaction.guild_id,
            ", ".join(sorted(changes)),
            interaction.user.id,
        )
        await answer(interaction, "✅ Saved.\n\n" + settings_text(updated))


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Moderation(bot))
