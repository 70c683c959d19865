"""/poem: a poem on a member's theme, in a chosen form, style, language and mood."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.prompts import DEFAULTS, LANGUAGES, POEM_FORMS, POEM_LENGTHS, WILDNESS
from bot.text import clean_member_text
from cogs.presenter import Look, create, register, style_choices

if TYPE_CHECKING:
    from bot.client import AtelierBot


def poem_title(inputs: Mapping[str, Any]) -> str:
    """The reply's title; built from stored inputs so a restart shows the same."""
    form = POEM_FORMS.get(str(inputs.get("form") or DEFAULTS["form"]))
    label = form.label if form is not None else "Poem"
    shown_theme = discord.utils.escape_markdown(str(inputs.get("theme", "")))
    title = f"**{label}** · *{shown_theme}*"
    language = inputs.get("language")
    if language and language != "auto" and language in LANGUAGES:
        title += f" · {LANGUAGES[language]}"
    return title


class Poem(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(name="poem")
    @app_commands.describe(
        theme="What the poem is about, e.g. rain on a tin roof",
        form="The shape of the poem (default: free verse)",
        style="A house style of this server (start typing to see them)",
        language="Which language to write in (default: the theme's)",
        length="How long (default: medium; fixed forms keep their own length)",
        wildness="How adventurous the wording is (default: balanced)",
    )
    @app_commands.choices(
        form=[app_commands.Choice(name=f.label, value=key) for key, f in POEM_FORMS.items()],
        language=[app_commands.Choice(name=name, value=code) for code, name in LANGUAGES.items()],
        length=[app_commands.Choice(name=name.title(), value=name) for name in POEM_LENGTHS],
        wildness=[app_commands.Choice(name=name.title(), value=name) for name in WILDNESS],
    )
    async def poem(
        self,
        interaction: discord.Interaction[AtelierBot],
        theme: str,
        form: str = DEFAULTS["form"],
        style: str | None = None,
        language: str | None = None,
        length: str = DEFAULTS["length"],
        wildness: str | None = None,
    ) -> None:
        """Write a poem on a theme."""
        cleaned = clean_member_text(
            theme, field="theme", max_chars=self.bot.settings.theme_max_chars
        )
        # Stored as the member chose them: a default left unset stays unset.
        inputs: dict[str, Any] = {"theme": cleaned, "form": form, "length": length}
        if style and style.strip():
            inputs["style"] = style.strip().lower()
        if language is not None:
            inputs["language"] = language
        if wildness is not None:
            inputs["wildness"] = wildness
        await create(interaction, "poem", inputs)

    @poem.autocomplete("style")
    async def poem_style(
        self, interaction: discord.Interaction[AtelierBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await style_choices(interaction, current, "poem")


async def setup(bot: AtelierBot) -> None:
    register("poem", Look(title=poem_title))
    await bot.add_cog(Poem(bot))
