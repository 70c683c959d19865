"""/script: a screenplay scene from a premise, in Fountain form.

Short scenes are shown in the message; long ones are attached whole as a ``.fountain``
file (any screenwriting app opens it) with a readable excerpt in the message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.fountain import excerpt, to_fountain
from bot.prompts import DEFAULTS, SCRIPT_GENRES, SCRIPT_LENGTHS
from bot.text import clean_member_text
from cogs.presenter import Body, CreationModal, Look, clip, create, register, style_choices

if TYPE_CHECKING:
    from bot.client import AtelierBot

PREMISE_MAX_CHARS = 4000
"""A premise may be a long paragraph (typed in the modal); the server's own input limit,
checked when the request is submitted, may be lower."""

SCENE_INLINE_CHARS = 1700
"""A scene up to this long is shown whole: with the header it fits in one message."""

EXCERPT_CHARS = 1200

_HEADING = re.compile(r"^(\.(?=\w)|(INT|EXT|EST|INT\./EXT|INT/EXT|I/E)[. ])", re.IGNORECASE)
_TRANSITION = re.compile(r"^[A-Z ]+TO:$")


def script_title(inputs: Mapping[str, Any]) -> str:
    genre = str(inputs.get("genre") or DEFAULTS["genre"])
    premise = discord.utils.escape_markdown(clip(str(inputs.get("premise", "")), 80))
    return f"**{genre.capitalize()} scene** · *{premise}*"


def scene_markdown(scene: str) -> str:
    """A Fountain scene made easy to read in Discord: headings and speakers in bold,
    parentheticals and transitions in italics, everything else escaped as written.
    Fountain's forcing marks ("." heading, "@" speaker, "!" action, ">" transition)
    are not shown."""
    lines = scene.split("\n")
    out: list[str] = []
    for index, line in enumerate(lines):
        text = line.strip()
        if not text:
            out.append("")
            continue
        after_blank = index == 0 or not lines[index - 1].strip()
        before_text = index + 1 < len(lines) and bool(lines[index + 1].strip())
        if text.startswith("!"):
            out.append(escape(text[1:]))
        elif _HEADING.match(text):
            out.append(f"**{escape(text.removeprefix('.'))}**")
        elif (text.startswith(">") and not text.endswith("<")) or _TRANSITION.match(text):
            out.append(f"*{escape(text.removeprefix('>').strip())}*")
        elif after_blank and before_text and (text.startswith("@") or _is_cue(text)):
            out.append(f"**{escape(text.removeprefix('@'))}**")
        elif text.startswith("(") and text.endswith(")"):
            out.append(f"*{escape(text)}*")
        else:
            out.append(escape(text))
    return "\n".join(out)


def escape(text: str) -> str:
    return discord.utils.escape_markdown(text)


def _is_cue(text: str) -> bool:
    """A speaker's name in capitals (with any "(V.O.)"), as Fountain marks it."""
    return text.upper() == text and any(c.isalpha() for c in text)


def slug(text: str, fallback: str = "scene") -> str:
    """A file name from a premise: lowercase words joined by hyphens."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    name = ""
    for word in words:
        if len(name) + len(word) + 1 > 40:
            break
        name = f"{name}-{word}" if name else word
    return name or fallback


def opening(scene: str) -> str:
    """The excerpt shown with an attached scene: whole paragraphs, unless a long one
    comes right after the heading; then that one is cut at a line or word, marked "…"."""
    shown = excerpt(scene, EXCERPT_CHARS)
    if len(shown) >= EXCERPT_CHARS // 2:
        return shown
    rest = scene[len(shown) :].lstrip()
    return f"{shown}\n\n{excerpt(rest, EXCERPT_CHARS - len(shown) - 3)}…"


def script_body(inputs: Mapping[str, Any], text: str) -> Body:
    setting = inputs.get("setting")
    scene = to_fountain(text, setting=setting if isinstance(setting, str) else None)
    if len(scene) <= SCENE_INLINE_CHARS:
        return Body(scene_markdown(scene))
    filename = f"{slug(str(inputs.get('premise', '')))}.fountain"
    shown = scene_markdown(opening(scene))
    note = f"📎 *The whole scene is attached as `{filename}` (Fountain screenplay format).*"
    return Body(f"{shown}\n\n{note}", (filename, scene.encode("utf-8")))


class Script(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(name="script")
    @app_commands.describe(
        premise="What happens in the scene (leave empty to write a long premise in a form)",
        characters="Who is in it, e.g. Mara, a tired detective; Jo, her nephew",
        genre="The kind of story (default: drama)",
        setting="Where and when, e.g. a night bus in winter",
        length="How long a scene (default: medium)",
        style="A house style of this server (start typing to see them)",
    )
    @app_commands.choices(
        genre=[app_commands.Choice(name=key.title(), value=key) for key in SCRIPT_GENRES],
        length=[app_commands.Choice(name=key.title(), value=key) for key in SCRIPT_LENGTHS],
    )
    async def script(
        self,
        interaction: discord.Interaction[AtelierBot],
        premise: str | None = None,
        characters: str | None = None,
        genre: str | None = None,
        setting: str | None = None,
        length: str = DEFAULTS["length"],
        style: str | None = None,
    ) -> None:
        """Write a screenplay scene from a premise."""
        if premise is None or not premise.strip():
            limit = await self.premise_limit(interaction.guild_id)
            modal = ScriptModal(self, limit, characters, genre, setting, length, style)
            await interaction.response.send_modal(modal)
            return
        await self.write(interaction, premise, characters, genre, setting, length, style)

    @script.autocomplete("style")
    async def script_style(
        self, interaction: discord.Interaction[AtelierBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await style_choices(interaction, current, "script")

    async def premise_limit(self, guild_id: int | None) -> int:
        """The modal offers no more than the server accepts."""
        settings = await self.bot.runtime.policy.settings(guild_id)
        return max(1, min(PREMISE_MAX_CHARS, settings.max_input_chars))

    async def write(
        self,
        interaction: discord.Interaction[AtelierBot],
        premise: str,
        characters: str | None,
        genre: str | None,
        setting: str | None,
        length: str,
        style: str | None,
    ) -> None:
        short = self.bot.settings.theme_max_chars
        inputs: dict[str, Any] = {
            "premise": clean_member_text(premise, field="premise", max_chars=PREMISE_MAX_CHARS),
            "length": length,
        }
        if characters and characters.strip():
            inputs["characters"] = clean_member_text(
                characters, field="characters", max_chars=short
            )
        if genre:
            inputs["genre"] = genre
        if setting and setting.strip():
            inputs["setting"] = clean_member_text(setting, field="setting", max_chars=short)
        if style and style.strip():
            inputs["style"] = style.strip().lower()
        await create(interaction, "script", inputs)


def _options(table: Mapping[str, Any], chosen: str | None) -> list[discord.SelectOption]:
    return [
        discord.SelectOption(label=key.title(), value=key, default=key == chosen) for key in table
    ]


class ScriptModal(CreationModal, title="Write a scene"):
    """/script without a premise: room for a long one, with the other options."""

    def __init__(
        self,
        cog: Script,
        premise_limit: int,
        characters: str | None,
        genre: str | None,
        setting: str | None,
        length: str,
        style: str | None,
    ) -> None:
        super().__init__()
        self.cog = cog
        # What the command's options said: an untouched select may submit no value.
        self.chosen_genre, self.chosen_length, self.style = genre, length, style
        self.premise = discord.ui.TextInput[ScriptModal](
            custom_id="premise",
            style=discord.TextStyle.paragraph,
            placeholder="What happens, to whom, and what is at stake…",
            max_length=premise_limit,
        )
        self.characters = discord.ui.TextInput[ScriptModal](
            custom_id="characters", default=characters, required=False, max_length=200
        )
        self.setting = discord.ui.TextInput[ScriptModal](
            custom_id="setting", default=setting, required=False, max_length=200
        )
        self.genre = discord.ui.Select[ScriptModal](
            custom_id="genre",
            options=_options(SCRIPT_GENRES, genre or DEFAULTS["genre"]),
            required=False,
            min_values=0,
        )
        self.length = discord.ui.Select[ScriptModal](
            custom_id="length",
            options=_options(SCRIPT_LENGTHS, length),
            required=False,
            min_values=0,
        )
        self.add_item(discord.ui.Label(text="Premise", component=self.premise))
        self.add_item(discord.ui.Label(text="Characters", component=self.characters))
        self.add_item(discord.ui.Label(text="Setting", component=self.setting))
        self.add_item(discord.ui.Label(text="Genre", component=self.genre))
        self.add_item(discord.ui.Label(text="Length", component=self.length))

    async def on_submit(self, interaction: discord.Interaction[AtelierBot]) -> None:  # type: ignore[override]
        await self.cog.write(
            interaction,
            self.premise.value,
            self.characters.value or None,
            self.genre.values[0] if self.genre.values else self.chosen_genre,
            self.setting.value or None,
            self.length.values[0] if self.length.values else self.chosen_length,
            self.style,
        )


async def setup(bot: AtelierBot) -> None:
    register("script", Look(title=script_title, body=script_body))
    await bot.add_cog(Script(bot))
